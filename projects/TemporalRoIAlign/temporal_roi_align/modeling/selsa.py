from typing import List

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead
from torch import nn

from ..config import CHOICES

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


REFERENCE_MODES = CHOICES["MODEL.SELSA.REFERENCE_MODE"]


@ROI_BOX_HEAD_REGISTRY.register()
class SelsaBoxHead(FastRCNNConvFCHead):
    """
    FastRCNNConvFCHead with a SELSA aggregator after each of its first ``num_selsa_modules`` FC
    layers. ``reference_mode`` chooses which published semantics the head computes:

    - ``"mmtrack"`` (mmtracking's SelsaBBoxHead, with which the TRoI paper's SELSA and SELSA+TRoI
      numbers were produced): the target proposals attend to the support frames' proposals,
      which pass the same FC layers (and ReLUs) without aggregation:
      ``x = relu(fc(x) + selsa(fc(x), fc(refs)))``, ``refs = relu(fc(refs))``. The target frame's
      own proposals are references only when the target frame is among its supports (the
      support rule ``uniform_with_target`` of the converted checkpoints).
    - ``"all_frames"`` (the original SELSA code): the proposals of the target and of all its
      supports form one set; at each module every proposal attends to the whole set (itself
      included): ``z = relu(fc(z) + selsa(fc(z), fc(z)))``; the target's rows are the output.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        num_selsa_modules: int,
        num_attention_groups: int,
        reference_mode: str = "mmtrack",
        **kwargs,
    ):
        super().__init__(input_shape, **kwargs)
        if not 0 < num_selsa_modules <= len(self.fcs):
            raise ValueError(
                f"MODEL.SELSA.NUM_MODULES={num_selsa_modules} must be in 1..ROI_BOX_HEAD.NUM_FC={len(self.fcs)}"
            )
        if reference_mode not in REFERENCE_MODES:
            raise ValueError(f"MODEL.SELSA.REFERENCE_MODE must be one of {REFERENCE_MODES}, got {reference_mode!r}")
        self.aggregators = nn.ModuleList(
            SelsaAggregator(fc.out_features, num_attention_groups) for fc in self.fcs[:num_selsa_modules]
        )
        self.reference_mode = reference_mode

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            num_selsa_modules=cfg.MODEL.SELSA.NUM_MODULES,
            num_attention_groups=cfg.MODEL.SELSA.NUM_ATTENTION_GROUPS,
            reference_mode=cfg.MODEL.SELSA.REFERENCE_MODE,
        )
        return ret

    def forward(self, x, support_x=None, num_target: List[int] = None, num_support: List[int] = None):
        """
        Args:
            x: [R, ...] RoI features of the target proposals of all images.
            support_x: [S, ...] RoI features of the support proposals of all images.
            num_target, num_support: proposals per image in ``x`` and ``support_x``; the target
                proposals of image i see the proposals of image i only.

        Returns:
            [R, FC_DIM] features of the target proposals.
        """
        if support_x is None:
            raise ValueError("SelsaBoxHead needs the RoI features of the support proposals")
        for conv in self.conv_norm_relus:
            x, support_x = conv(x), conv(support_x)
        x, support_x = x.flatten(1), support_x.flatten(1)
        if self.reference_mode == "mmtrack":
            return self._forward_mmtrack(x, support_x, num_target, num_support)
        groups = [torch.cat([x_i, s_i]) for x_i, s_i in zip(x.split(num_target), support_x.split(num_support))]
        return torch.cat([self._forward_all_frames(z, n) for z, n in zip(groups, num_target)])

    def _forward_mmtrack(self, x, support_x, num_target, num_support):
        for k, fc in enumerate(self.fcs):
            x, support_x = fc(x), fc(support_x)
            if k < len(self.aggregators):
                x = x + torch.cat(
                    [
                        self.aggregators[k](x_i, s_i)
                        for x_i, s_i in zip(x.split(num_target), support_x.split(num_support))
                    ]
                )
            x, support_x = torch.relu(x), torch.relu(support_x)
        return x

    def _forward_all_frames(self, z, num_target: int):
        """One image: ``z`` holds its target proposals (first ``num_target`` rows), then its
        supports'. From the last module on, only the target rows are carried on."""
        for k, fc in enumerate(self.fcs):
            z = fc(z)
            if k < len(self.aggregators):
                queries = z if k + 1 < len(self.aggregators) else z[:num_target]
                z = queries + self.aggregators[k](queries, z)
            z = torch.relu(z)
        return z
