"""
Fig. 5(b): T = 26 support frames taken S frames apart (13 before and 13 after the target,
copying the first/last frame past the video's ends), S = 1..10. One trained model: S only
changes the test supports.
"""

from types import MappingProxyType

from .troi_R_101_DC5 import dataloader, lr_multiplier, model, optimizer, train

dataloader.test.mapper.support_selector.mode = "stride"
dataloader.test.mapper.support_selector.num = 26

GRID = [(f"S={s}", [f"dataloader.test.mapper.support_selector.stride={s}"]) for s in range(1, 11)]

# mAP@0.5 (%) on ImageNet VID val stated in the text; the other points are only plotted.
# A read-only mapping, not a dict, so that LazyConfig.load leaves it out of the config.
PAPER_MAP50 = MappingProxyType({"S=1": 78.0, "S=7": 79.5})
