"""
Fig. 5(a): T consecutive support frames (stride S = 1: T/2 before and T/2 after the target),
T = 0..30. T = 0 is the single-frame detector, trained and tested without supports; the other
points evaluate one TRoI model, trained with 2 random supports per frame.
"""

from types import MappingProxyType

from .troi_R_101_DC5 import SINGLE_FRAME, dataloader, lr_multiplier, model, optimizer, train

dataloader.test.mapper.support_selector.mode = "stride"
dataloader.test.mapper.support_selector.stride = 1

# Fig. 5 is a plot: a regular grid through the values that the text discusses.
GRID = [("T=0", SINGLE_FRAME)] + [
    (f"T={t}", [f"dataloader.test.mapper.support_selector.num={t}"]) for t in (2, 6, 10, 14, 18, 22, 26, 30)
]

# mAP@0.5 (%) on ImageNet VID val stated in the text; the other points are only plotted.
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"T=0": 74.0, "T=26": 78.0})
