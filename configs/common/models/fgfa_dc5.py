"""
FGFA R-50-DC5 as mmtrack builds it: the same network as configs/ImageNetVID/fgfa_R_50_DC5.yaml
(tests/configs/test_lazy_configs.py compares them).

The single-frame DC5 detector of video_rcnn_dc5.py (ResNet-50 here, plain ROIAlign) whose RPN
and box head read FGFA's aggregated map: the supports' conv5 maps reduced to 512 channels,
warped to the target by FlowNetSimple's flow, weighted per location by FgfaAggregator (one 3x3
embedding conv). The support rules are the data loaders' (``SupportSelector("bilateral", 2,
frame_range=9)`` in training, ``SupportSelector("stride", 30)`` at test; docs/fgfa_dff.md).
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.poolers import ROIPooler

from temporal_roi_align.modeling import FgfaAggregator, FgfaRCNN, FlowNetSimple

from .video_rcnn_dc5 import model, resnet_stages

model._target_ = FgfaRCNN
model.backbone.bottom_up.stages = resnet_stages(50)
model.backbone.bottom_up.out_features = ["res5"]
# The RPN reads the aggregated map (mmtrack: the neck's output), not conv4.
model.proposal_generator.in_features = ["res5_reduced"]
model.proposal_generator.head.in_channels = "${...backbone.out_channels}"
model.roi_heads.batch_size_per_image = 256  # mmtrack's FGFA samples 256 RoIs per image
model.roi_heads.box_pooler = L(ROIPooler)(output_size=7, scales=(1.0 / 16,), sampling_ratio=2, pooler_type="ROIAlignV2")
model.flow_net = L(FlowNetSimple)(
    pixel_mean="${..pixel_mean}",
    pixel_std="${..pixel_std}",
    input_format="${..input_format}",
    input_scale=0.5,
    flow_scale=5.0,
)
model.warp_convention = "exact"  # "toolbox" for mmtrack's checkpoints
model.aggregator = L(FgfaAggregator)(channels="${..backbone.out_channels}", num_convs=1, kernel_size=3)
model.train_with_target = False
