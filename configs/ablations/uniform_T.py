"""
Fig. 5(c): T support frames spread uniformly over the whole video (the paper's default, T = 14),
T = 2..26. One trained model: T only changes the test supports.
"""

from types import MappingProxyType

from .troi_R_101_DC5 import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.mapper.support_selector.mode = "uniform"

# Fig. 5 is a plot: a regular grid through the values that the text discusses.
GRID = [(f"T={t}", [f"dataloader.test.mapper.support_selector.num={t}"]) for t in (2, 6, 10, 14, 18, 22, 26)]

# mAP@0.5 (%) on ImageNet VID val stated in the text; the other points are only plotted
# (T=6 matches Fig. 5(b)'s S=8).
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"T=2": 78.7, "T=14": 80.5})
