"""
Table 1: MS RoI Align with TAFA (N = 4 temporal attention blocks) against MS RoI Align with the
target and support RoI features simply averaged (N = 0), next to the single-frame detector.

The "MD RoI Align" rows (modulated deformable RoI Align instead of MS RoI Align: 68.5 with
averaging, 76.6 with TAFA) are left out: they need a compiled modulated deformable op, which
this Python-only Detectron2 install lacks and this project does not implement.
"""

from types import MappingProxyType

from .troi_R_101_DC5 import SINGLE_FRAME, dataloader, lr_multiplier, model, optimizer, train

GRID = [
    ("single_frame", SINGLE_FRAME),
    ("MS_averaging", ["model.roi_heads.box_pooler.num_attention_blocks=0"]),
    ("MS_TAFA", ["model.roi_heads.box_pooler.num_attention_blocks=4"]),
]

# mAP@0.5 (%) on ImageNet VID val.
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"single_frame": 74.0, "MS_averaging": 78.5, "MS_TAFA": 80.5})
