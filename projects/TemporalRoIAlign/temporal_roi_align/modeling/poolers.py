from typing import Dict, List, Optional, Sequence, Union

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, nonzero_tuple
from detectron2.modeling.poolers import ROIPooler, assign_boxes_to_levels
from detectron2.structures import Boxes

from ..layers import TemporalAttentionalAggregation, iter_most_similar_roi_align, most_similar_roi_align

__all__ = ["TemporalROIPooler"]

SupportMaps = Union[torch.Tensor, Sequence[torch.Tensor]]


class TemporalROIPooler(ROIPooler):
    """
    Temporal RoI Align (Gong et al., AAAI 2021): RoIs pooled from the target maps as by
    :class:`ROIPooler`, then, when support maps are given, enriched with the most similar
    features of each support map of the same image (:func:`most_similar_roi_align`, Eq. 2-4)
    and aggregated by temporal attention (``self.aggregation``, Eq. 5-8).

    Without support maps (or with T = 0) the output is exactly :class:`ROIPooler`'s.
    Each RoI uses the level :class:`ROIPooler` assigns it to, on the target and supports alike.

    Two paths, same numbers: when gradients are needed (grad mode on and a parameter or an
    input requires grad) all most similar features of a group of RoIs are built and kept for
    backward; otherwise RoIs are processed in chunks of ``chunk_size`` cells, so peak memory
    does not depend on the number of RoIs, and the supports are not embedded (see
    :class:`TemporalAttentionalAggregation`).
    """

    @configurable
    def __init__(
        self,
        output_size,
        scales,
        sampling_ratio,
        pooler_type,
        canonical_box_size=224,
        canonical_level=4,
        *,
        channels: int,
        topk: int = 4,
        num_attention_blocks: int = 4,
        embed: str = "shared",
        chunk_size: int = 2048,
    ):
        """
        Args:
            output_size, scales, sampling_ratio, pooler_type, canonical_box_size, canonical_level:
                as in :class:`ROIPooler`.
            channels: channels of the feature maps.
            topk: K, most similar locations per RoI cell and support frame.
            num_attention_blocks: N, temporal attention blocks (0: average the frames).
            embed: "shared" or "grouped", see :class:`TemporalAttentionalAggregation`.
            chunk_size: RoI cells whose similarities are computed at once.
        """
        super().__init__(output_size, scales, sampling_ratio, pooler_type, canonical_box_size, canonical_level)
        self.channels = channels
        self.topk = topk
        self.chunk_size = chunk_size
        self.aggregation = TemporalAttentionalAggregation(channels, num_attention_blocks, embed)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Box pooler of ``cfg.MODEL.ROI_HEADS.IN_FEATURES`` with the ``MODEL.TEMPORAL_ROI_ALIGN`` keys."""
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"TemporalROIPooler needs the same channels on all levels, got {channels}")
        tra = cfg.MODEL.TEMPORAL_ROI_ALIGN
        return {
            "output_size": cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
            "scales": tuple(1.0 / input_shape[f].stride for f in in_features),
            "sampling_ratio": cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            "pooler_type": cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
            "channels": channels.pop(),
            "topk": tra.TOPK,
            "num_attention_blocks": tra.NUM_ATTENTION_BLOCKS,
            "embed": tra.EMBED,
            "chunk_size": tra.CHUNK_SIZE,
        }

    def forward(
        self,
        x: List[torch.Tensor],
        box_lists: List[Boxes],
        support_features: Optional[List[SupportMaps]] = None,
    ) -> torch.Tensor:
        """
        Args:
            x, box_lists: as in :meth:`ROIPooler.forward`.
            support_features: one entry per level of ``x``: a tensor ``[N, T, C, H, W]`` or a
                sequence of T tensors ``[N, C, H, W]`` (the supports of each of the N images).

        Returns:
            ``[M, C, output_size, output_size]``, RoIs in :class:`ROIPooler`'s order.
        """
        roi_feats = super().forward(x, box_lists)
        if support_features is None:
            return roi_feats
        supports = self._support_maps_per_level(x, support_features)
        if len(supports[0]) == 0 or roi_feats.shape[0] == 0:
            return roi_feats

        track_grad = torch.is_grad_enabled() and (
            roi_feats.requires_grad
            or any(p.requires_grad for p in self.aggregation.parameters())
            or any(s.requires_grad for level in supports for s in level)
        )
        if len(x) == 1:
            levels = torch.zeros(roi_feats.shape[0], dtype=torch.int64, device=roi_feats.device)
        else:
            levels = assign_boxes_to_levels(
                box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
            )
        group_indices, group_feats = [], []
        first_roi = 0
        for image, boxes in enumerate(box_lists):
            image_levels = levels[first_roi : first_roi + len(boxes)]
            for level, level_supports in enumerate(supports):
                indices = first_roi + nonzero_tuple(image_levels == level)[0]
                if len(indices) == 0:
                    continue
                image_supports = [s[image] for s in level_supports]
                group_indices.append(indices)
                group_feats.append(self._temporal_roi_feats(roi_feats[indices], image_supports, track_grad))
            first_roi += len(boxes)
        return roi_feats.index_copy(0, torch.cat(group_indices), torch.cat(group_feats))

    def _temporal_roi_feats(
        self, roi_feats: torch.Tensor, supports: List[torch.Tensor], track_grad: bool
    ) -> torch.Tensor:
        """``roi_feats`` [R, C, h, w] of one image and level, ``supports``: T maps [C, H, W]."""
        if track_grad:
            support_roi_feats = most_similar_roi_align(roi_feats, torch.stack(supports), self.topk, self.chunk_size)
            return self.aggregation(roi_feats, support_roi_feats)
        # Without gradients: one chunk of RoIs at a time, with all its supports.
        chunks = iter_most_similar_roi_align(roi_feats, torch.stack(supports), self.topk, self.chunk_size)
        return torch.cat([self.aggregation(roi_feats[rois], feats) for rois, feats in chunks])

    def _support_maps_per_level(
        self, x: List[torch.Tensor], support_features: List[SupportMaps]
    ) -> List[List[torch.Tensor]]:
        """Checks ``support_features``; returns for each level its T support maps [N, C, H, W]."""
        if not isinstance(support_features, (list, tuple)) or len(support_features) != len(x):
            raise ValueError(
                f"support_features must be a list with one entry per feature level ({len(x)}), "
                f"got {type(support_features).__name__}"
                + (f" of length {len(support_features)}" if isinstance(support_features, (list, tuple)) else "")
            )
        supports = []
        for level, (target_map, entry) in enumerate(zip(x, support_features)):
            if isinstance(entry, torch.Tensor):
                if entry.dim() != 5:
                    raise ValueError(
                        f"support_features[{level}] must be [N, T, C, H, W], got shape {tuple(entry.shape)}"
                    )
                maps = list(entry.unbind(1))
            else:
                maps = list(entry)
            for t, support in enumerate(maps):
                if support.dim() != 4 or support.shape[:2] != target_map.shape[:2]:
                    raise ValueError(
                        f"support map {t} of level {level} must be [{target_map.shape[0]}, {target_map.shape[1]}, H, W]"
                        f" (images and channels of x[{level}]), got shape {tuple(support.shape)}"
                    )
            supports.append(maps)
        num_supports = {len(maps) for maps in supports}
        if len(num_supports) != 1:
            raise ValueError(f"every level needs the same number of supports, got {[len(m) for m in supports]}")
        return supports
