"""
DFF R-50-DC5 as mmtrack builds it: the same network as configs/ImageNetVID/dff_R_50_DC5.yaml
(tests/configs/test_lazy_configs.py compares them).

The single-frame DC5 detector of video_rcnn_dc5.py (ResNet-50 here, plain ROIAlign) whose RPN
and box head read the key frame's conv5 map reduced to 512 channels and warped to the current
frame by FlowNetSimple's flow. The support rules are the data loaders'
(``SupportSelector("random_with_target", 1, frame_range=9)`` in training,
``SupportSelector("key_frame", 1, stride=10)`` at test; docs/fgfa_dff.md).
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.poolers import ROIPooler

from temporal_roi_align.modeling import DffRCNN, FlowNetSimple

from .video_rcnn_dc5 import model, resnet_stages

model._target_ = DffRCNN
model.backbone.bottom_up.stages = resnet_stages(50)
model.backbone.bottom_up.out_features = ["res5"]
model.proposal_generator.in_features = ["res5_reduced"]
model.proposal_generator.head.in_channels = "${...backbone.out_channels}"
model.proposal_generator.post_nms_topk = (1000, 300)  # mmtrack's DFF: 1000 proposals in training
model.roi_heads.box_pooler = L(ROIPooler)(output_size=7, scales=(1.0 / 16,), sampling_ratio=2, pooler_type="ROIAlignV2")
model.flow_net = L(FlowNetSimple)(
    pixel_mean="${..pixel_mean}",
    pixel_std="${..pixel_std}",
    input_format="${..input_format}",
    input_scale=0.5,
    flow_scale=5.0,
)
model.warp_convention = "exact"  # "toolbox" for mmtrack's checkpoints
