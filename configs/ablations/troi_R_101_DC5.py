"""
The paper's ablation model and default setting (80.5 mAP@0.5 on ImageNet VID val): Faster R-CNN
R-101 DC5 + Temporal RoI Align, K=4, N=4, T=14 supports uniform over the video at test; 6 epochs.
The lazy twin of configs/ImageNetVID/troi_R_101_DC5.yaml; every ablation file starts from it.
"""

from ..common.data.imagenet_vid import dataloader
from ..common.models.video_rcnn_dc5 import model
from ..common.optim import SGD as optimizer
from ..common.train import train
from ..common.vid_schedule import MAX_ITER_6E
from ..common.vid_schedule import lr_multiplier_6e as lr_multiplier

train.max_iter = MAX_ITER_6E

# Overrides that turn it into the single-frame detector: no supports in training or test, so
# the box features are plain RoIAlign's; N=0 (averaging, no parameters) as TAFA never runs.
SINGLE_FRAME = [
    "dataloader.train.mapper.support_selector.num=0",
    "dataloader.test.mapper.support_selector.num=0",
    "model.roi_heads.box_pooler.num_attention_blocks=0",
]
