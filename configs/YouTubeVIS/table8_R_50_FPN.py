"""
Table 8 of the Temporal RoI Align paper, R50-FPN rows: MaskTrack R-CNN with and without Temporal
RoI Align on YouTube-VIS 2019 (trained on train, mask AP on val from the evaluation server).
The lazy twin of configs/YouTubeVIS/masktrack_troi_R_50_FPN_ytvis2019.yaml; the GRID's
"masktrack" point is masktrack_R_50_FPN_ytvis2019.yaml (no support frame, RoIAlign).

    python tools/lazyconfig_train_net.py --config-file configs/YouTubeVIS/table8_R_50_FPN.py \\
        train.output_dir=output/table8/R_50_FPN/masktrack_troi
    python tools/lazyconfig_train_net.py --config-file configs/YouTubeVIS/table8_R_50_FPN.py \\
        train.output_dir=output/table8/R_50_FPN/masktrack  <the "masktrack" overrides below>

(tools/run_ablation.py reads ImageNet VID results only.) The paper gives no TRoI setting for VIS:
those of its VID models are used (K=4, N=4, 2 random supports in training, T=14 uniform at test),
on the box and the mask RoIs.
"""

from types import MappingProxyType

from ..common.data.youtube_vis import dataloader
from ..common.models.masktrack_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train
from ..common.vis_schedule import YTVIS_2019_EPOCH_ITERS, masktrack_schedule

train.max_iter = 12 * YTVIS_2019_EPOCH_ITERS
train.checkpointer.period = YTVIS_2019_EPOCH_ITERS
lr_multiplier = masktrack_schedule(YTVIS_2019_EPOCH_ITERS)
# mmtrack: SGD lr 0.00125 for 8 frames per iteration, momentum 0.9, weight decay 1e-4. (It also
# clips the gradients' global norm at 35, which this trainer does not.)
optimizer.lr = 0.00125

# MaskTrack R-CNN: no support frame, and N=0 (no attention parameters): the poolers are RoIAlign.
MASKTRACK = [
    "dataloader.train.mapper.support_selector.num=0",
    "dataloader.test.mapper.support_selector.num=0",
    "model.roi_heads.box_pooler.num_attention_blocks=0",
]
GRID = [
    ("masktrack", MASKTRACK),
    ("masktrack_troi", []),
]

# Table 8, mask AP (%) on YouTube-VIS 2019 val: AP, AP50, AP75.
# Read-only mappings, not dicts, so that LazyConfig.load leaves them out of the config.
PAPER_MASK_AP = MappingProxyType(
    {
        "masktrack": MappingProxyType({"AP": 30.3, "AP50": 51.1, "AP75": 32.6}),
        "masktrack_troi": MappingProxyType({"AP": 33.5, "AP50": 57.0, "AP75": 36.6}),
    }
)
