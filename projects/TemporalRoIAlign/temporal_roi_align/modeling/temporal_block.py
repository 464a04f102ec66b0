"""A temporal block on the RoI heads' input maps of a frame group: the TAM of Liu et al. (ICCV 2021)
as a residual unit, before RoI pooling."""

from typing import Dict, List

import torch
from torch import nn

from ..layers import TemporalAdaptiveModule
from .frame_group import SupportFrames

__all__ = ["TemporalAdaptiveBlock"]


class TemporalAdaptiveBlock(nn.Module):
    """
    ``x + TAM(x)`` over the frames of each group in time order: the ``num_supports // 2``
    supports before the target, the target, the supports after it — the group the "stride"
    support rule gives (``INPUT.SUPPORT.{TRAIN,TEST}_MODE: stride``, the target's nearest frames).
    The target's and the supports' maps are both replaced by the block's output, so RoI pooling
    (and TRoI's search over the supports) sees temporally mixed features. Residual, as TAM sits in
    a residual unit in TANet, so that a detector trained without it starts from its own features.

    Args:
        in_features: the feature names the block transforms (the RoI heads' inputs), each with
            its own TAM.
        channels: their channels.
        num_supports: supports per target; the group has ``num_supports + 1`` frames.
        kernel_size: K, TAM's adaptive temporal kernel.
    """

    def __init__(self, in_features: List[str], channels: int, num_supports: int, kernel_size: int = 3):
        super().__init__()
        if num_supports < 1:
            raise ValueError("MODEL.TAM needs support frames: INPUT.SUPPORT.NUM_TRAIN/NUM_TEST >= 1")
        self.num_supports = num_supports
        self.target_slot = num_supports // 2
        self.tams = nn.ModuleDict(
            {name: TemporalAdaptiveModule(channels, num_supports + 1, kernel_size) for name in in_features}
        )

    def forward(self, features: Dict[str, torch.Tensor], supports: SupportFrames):
        """``features``: name -> ``[N, C, H, W]`` target maps; ``supports``: the groups' supports.
        Returns both with the names of ``in_features`` transformed."""
        counts = {len(next(iter(f.values()))) for f in supports.features} if supports.features else set()
        if counts != {self.num_supports}:
            raise ValueError(
                f"MODEL.TAM groups have {self.num_supports} supports per target (INPUT.SUPPORT.NUM_TRAIN/NUM_TEST), "
                f"got {sorted(counts)}"
            )
        features, support_features = dict(features), [dict(f) for f in supports.features]
        slot = self.target_slot
        for name, tam in self.tams.items():
            groups = torch.stack(
                [
                    torch.cat([f[name][:slot], target[None], f[name][slot:]])
                    for target, f in zip(features[name], supports.features)
                ]
            )  # [N, T+1, C, H, W], time order
            mixed = (groups + tam(groups.flatten(0, 1)).view_as(groups)).unbind(0)
            features[name] = torch.stack([group[slot] for group in mixed])
            for f, group in zip(support_features, mixed):
                f[name] = torch.cat([group[:slot], group[slot + 1 :]])
        return features, SupportFrames(support_features, supports.proposals)
