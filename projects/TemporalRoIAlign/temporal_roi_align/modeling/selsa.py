from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead
from torch import nn

__all__ = ["SelsaAggregator", "SelsaBoxHead"]


class SelsaAggregator(nn.Module):
    """
    Proposal-level multi-head attention of SELSA (Wu et al., ICCV 2019).

    Every target proposal attends, in ``num_groups`` channel groups, to a set of reference
    proposals (those of the support frames, and of the target frame itself in the box head):
    ``out = fc(concat_g softmax(q_g k_g^T / sqrt(C/G)) v_g)`` with ``q = fc_embed(x)``,
    ``k = ref_fc_embed(ref)``, ``v = ref_fc(ref)``.
    """

    def __init__(self, channels: int, num_groups: int = 16):
        super().__init__()
        if channels % num_groups:
            raise ValueError(f"SELSA: {channels} channels do not split into {num_groups} attention groups")
        self.num_groups = num_groups
        self.fc_embed = nn.Linear(channels, channels)
        self.ref_fc_embed = nn.Linear(channels, channels)
        self.fc = nn.Linear(channels, channels)
        self.ref_fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """x: [R, C] target proposals, ref: [S, C] reference proposals -> [R, C]."""
        R, C = x.shape
        G, c = self.num_groups, C // self.num_groups
        if ref.shape[0] == 0:
            return self.fc(x.new_zeros(R, C))
        query = self.fc_embed(x).view(R, G, c).transpose(0, 1)
        key = self.ref_fc_embed(ref).view(-1, G, c).permute(1, 2, 0)
        value = self.ref_fc(ref).view(-1, G, c).transpose(0, 1)
        weights = (torch.bmm(query, key) / c**0.5).softmax(dim=2)
        return self.fc(torch.bmm(weights, value).transpose(0, 1).reshape(R, C))


@ROI_BOX_HEAD_REGISTRY.register()
class SelsaBoxHead(FastRCNNConvFCHead):
    """
    FastRCNNConvFCHead with a SELSA aggregator after each of its first ``num_selsa_modules`` FC
    layers: ``x = relu(fc(x) + selsa(fc(x), fc(refs)))``, refs passing the same FC layers.
    """

    @configurable
    def __init__(self, input_shape, *, num_selsa_modules: int, num_attention_groups: int,
                 include_target_proposals: bool = True, **kwargs):
        super().__init__(input_shape, **kwargs)
        if not 0 < num_selsa_modules <= len(self.fcs):
            raise ValueError(
                f"MODEL.SELSA.NUM_MODULES={num_selsa_modules} must be in 1..ROI_BOX_HEAD.NUM_FC={len(self.fcs)}"
            )
        self.aggregators = nn.ModuleList(
            SelsaAggregator(fc.out_features, num_attention_groups) for fc in self.fcs[:num_selsa_modules]
        )
        self.include_target_proposals = include_target_proposals

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            num_selsa_modules=cfg.MODEL.SELSA.NUM_MODULES,
            num_attention_groups=cfg.MODEL.SELSA.NUM_ATTENTION_GROUPS,
            include_target_proposals=cfg.MODEL.SELSA.INCLUDE_TARGET_PROPOSALS,
        )
        return ret

    def forward(self, x, support_x=None, num_target: List[int] = None, num_support: List[int] = None):
        """
        Args:
            x: [R, ...] RoI features of the target proposals of all images.
            support_x: [S, ...] RoI features of the support proposals of all images.
            num_target, num_support: proposals per image in ``x`` and ``support_x``; target
                proposals of image i attend to the references of image i only.
        """
        if support_x is None:
            raise ValueError("SelsaBoxHead needs the RoI features of the support proposals")
        for conv in self.conv_norm_relus:
            x, support_x = conv(x), conv(support_x)
        x, support_x = x.flatten(1), support_x.flatten(1)
        for k, fc in enumerate(self.fcs):
            x, support_x = fc(x), fc(support_x)
            if k < len(self.aggregators):
                x = x + self._aggregate(self.aggregators[k], x, support_x, num_target, num_support)
            x, support_x = torch.relu(x), torch.relu(support_x)
        return x

    def _aggregate(self, aggregator, x, support_x, num_target, num_support):
        out = []
        for x_i, s_i in zip(x.split(num_target), support_x.split(num_support)):
            refs = torch.cat([x_i, s_i]) if self.include_target_proposals else s_i
            out.append(aggregator(x_i, refs))
        return torch.cat(out)
