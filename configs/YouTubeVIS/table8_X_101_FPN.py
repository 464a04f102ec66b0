"""
Table 8 of the Temporal RoI Align paper, X101-FPN rows: table8_R_50_FPN.py with a ResNeXt-101
64x4d backbone (the lazy twin of masktrack_troi_X_101_FPN_ytvis2019.yaml).
"""

from types import MappingProxyType

from ..common.models.video_rcnn_dc5 import resnet_stages
from .table8_R_50_FPN import GRID, MASKTRACK, dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages = resnet_stages(101, res5_dilation=1)
for stage in model.backbone.bottom_up.stages:
    # 64 groups of 4 channels in the first stage (bottleneck widths 256, 512, 1024, 2048).
    stage.num_groups = 64
    stage.bottleneck_channels *= 4

PAPER_MASK_AP = MappingProxyType(
    {
        "masktrack": MappingProxyType({"AP": 34.9, "AP50": 58.8, "AP75": 36.5}),
        "masktrack_troi": MappingProxyType({"AP": 38.0, "AP50": 63.3, "AP75": 40.3}),
    }
)
