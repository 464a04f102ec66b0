"""
Table 4: N, the temporal attention blocks of TAFA (channel groups with their own attention
weights), N = 1..32 (default 4).
"""

from types import MappingProxyType

from .troi_R_101_DC5 import dataloader, lr_multiplier, model, optimizer, train

GRID = [(f"N={n}", [f"model.roi_heads.box_pooler.num_attention_blocks={n}"]) for n in (1, 2, 4, 8, 16, 32)]

# mAP@0.5 (%) on ImageNet VID val.
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"N=1": 79.5, "N=2": 80.1, "N=4": 80.5, "N=8": 80.5, "N=16": 80.4, "N=32": 80.3})
