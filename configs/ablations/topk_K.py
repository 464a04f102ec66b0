"""
Table 3: K, the most similar locations kept per RoI cell and support frame in MS RoI Align,
K = 1..6 (default 4).
"""

from types import MappingProxyType

from .troi_R_101_DC5 import dataloader, lr_multiplier, model, optimizer, train

GRID = [(f"K={k}", [f"model.roi_heads.box_pooler.topk={k}"]) for k in range(1, 7)]

# mAP@0.5 (%) on ImageNet VID val.
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"K=1": 79.3, "K=2": 79.8, "K=3": 80.2, "K=4": 80.5, "K=5": 80.4, "K=6": 80.2})
