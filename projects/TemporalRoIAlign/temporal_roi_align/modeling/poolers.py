from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, nonzero_tuple
from detectron2.modeling.poolers import ROIPooler, assign_boxes_to_levels
from detectron2.structures import Boxes

from ..config import CHOICES
from ..layers import (
    TemporalAttentionalAggregation,
    iter_most_similar_roi_align_from_map,
    most_similar_roi_align,
    most_similar_roi_align_from_map,
    roi_align_sampling,
)

SIMILARITY_METHODS = CHOICES["MODEL.TEMPORAL_ROI_ALIGN.SIMILARITY"]

__all__ = ["TemporalROIPooler", "TemporalRoIAlignInspection"]


@dataclass
class TemporalRoIAlignInspection:
    """What :meth:`TemporalROIPooler.inspect` found for each RoI (``M`` RoIs, ``T`` supports,
    ``h x w`` cells, ``K`` locations).

    Attributes:
        levels: ``[M]`` the feature level of each RoI.
        locations: ``[M, T, h, w, K]`` the most similar locations of each cell in each support
            map of the RoI's image and level, flat indices ``y * W + x`` into that map,
            most similar first.
        similarities: ``[M, T, h, w, K]`` their cosine similarities (Eq. 2).
        attention: ``[M, T + 1, h, w]`` each frame's TAFA weight (Eq. 7; target first),
            averaged over the attention blocks.
        map_sizes: ``(H, W)`` of the support maps of each level.
    """

    levels: torch.Tensor
    locations: torch.Tensor
    similarities: torch.Tensor
    attention: torch.Tensor
    map_sizes: List[tuple]


class TemporalROIPooler(ROIPooler):
    """
    Temporal RoI Align (Gong et al., AAAI 2021): RoIs pooled from the target maps as by
    :class:`ROIPooler`, then, when support maps are given, enriched with the most similar
    features of each support map of the same image (:func:`most_similar_roi_align`, Eq. 2-4)
    and aggregated by temporal attention (``self.aggregation``, Eq. 5-8).

    Without support maps (or with T = 0) the output is exactly :class:`ROIPooler`'s.
    Each RoI uses the level :class:`ROIPooler` assigns it to, on the target and supports alike.

    Three paths, same numbers: when gradients are needed (grad mode on and a parameter or an
    input requires grad) all most similar features of a group of RoIs are built and kept for
    backward; otherwise RoIs are processed in chunks of ``chunk_size`` cells, so peak memory
    does not depend on the number of RoIs, and the supports are not embedded (see
    :class:`TemporalAttentionalAggregation`); while tracing (``torch.jit.trace``, ONNX export)
    all RoIs at once in tensor operations only, so that the trace holds for other inputs
    (docs/export.md).
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
        similarity: str = "auto",
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
            similarity: how Eq. 2's similarities are computed: "direct" (each RoI cell with each
                support location), "gram" (through the Gram matrix of the target map with each
                support map and ROIAlign's sampling weights; same selections), or "auto" (the
                cheaper of the two by a measured cost rule, see most_similar_roi_align_from_map).
        """
        if pooler_type not in ("ROIAlign", "ROIAlignV2"):
            raise ValueError(f"TemporalROIPooler pools with ROIAlign or ROIAlignV2, not {pooler_type!r}")
        if similarity not in SIMILARITY_METHODS:
            raise ValueError(f"similarity must be one of {SIMILARITY_METHODS}, got {similarity!r}")
        super().__init__(output_size, scales, sampling_ratio, pooler_type, canonical_box_size, canonical_level)
        self.similarity = similarity
        self.channels = channels
        self.topk = topk
        self.chunk_size = chunk_size
        self.aggregation = TemporalAttentionalAggregation(channels, num_attention_blocks, embed)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec], head: str = "ROI_BOX_HEAD"):
        """The pooler of ``cfg.MODEL.ROI_HEADS.IN_FEATURES`` with ``cfg.MODEL.<head>.POOLER_*``
        (as :class:`StandardROIHeads` builds it) and the ``MODEL.TEMPORAL_ROI_ALIGN`` keys."""
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"TemporalROIPooler needs the same channels on all levels, got {channels}")
        head_cfg, tra = cfg.MODEL[head], cfg.MODEL.TEMPORAL_ROI_ALIGN
        return {
            "output_size": head_cfg.POOLER_RESOLUTION,
            "scales": tuple(1.0 / input_shape[f].stride for f in in_features),
            "sampling_ratio": head_cfg.POOLER_SAMPLING_RATIO,
            "pooler_type": head_cfg.POOLER_TYPE,
            "channels": channels.pop(),
            "topk": tra.TOPK,
            "num_attention_blocks": tra.NUM_ATTENTION_BLOCKS,
            "embed": tra.EMBED,
            "chunk_size": tra.CHUNK_SIZE,
            "similarity": tra.SIMILARITY,
        }

    def forward(
        self,
        x: List[torch.Tensor],
        box_lists: List[Boxes],
        supports: Optional[List[List[torch.Tensor]]] = None,
    ) -> torch.Tensor:
        """
        Args:
            x, box_lists: as in :meth:`ROIPooler.forward`.
            supports: ``supports[level][image]`` is ``[T, C, H, W]``, the T support maps of
                image ``image`` at level ``level`` of ``x`` (see :meth:`SupportFrames.maps`).

        Returns:
            ``[M, C, output_size, output_size]``, RoIs in :class:`ROIPooler`'s order.
        """
        roi_feats = super().forward(x, box_lists)
        if supports is None:
            return roi_feats
        self._check_supports(x, supports)
        # A trace keeps Python values: it must not depend on how many RoIs (of a level) there are.
        tracing = torch.jit.is_tracing()
        if not tracing and roi_feats.shape[0] == 0:
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
            num_boxes = boxes.tensor.shape[0]  # while tracing a traced size; len() would be a constant
            image_levels = levels[first_roi : first_roi + num_boxes]
            for level, level_supports in enumerate(supports):
                indices = first_roi + nonzero_tuple(image_levels == level)[0]
                if (not tracing and len(indices) == 0) or len(level_supports[image]) == 0:
                    continue
                group_indices.append(indices)
                group_feats.append(
                    self._temporal_roi_feats(
                        # Boxes in the map's dtype, as ROIAlign pools them.
                        roi_feats[indices],
                        x[level][image],
                        boxes.tensor[indices - first_roi].to(x[level].dtype),
                        level,
                        level_supports[image],
                        track_grad,
                    )
                )
            first_roi = first_roi + num_boxes
        if not group_indices:
            return roi_feats
        return roi_feats.index_copy(0, torch.cat(group_indices), torch.cat(group_feats))

    @torch.no_grad()
    def inspect(
        self, x: List[torch.Tensor], box_lists: List[Boxes], supports: List[List[torch.Tensor]]
    ) -> TemporalRoIAlignInspection:
        """What the pooler chooses for ``box_lists`` (arguments as :meth:`forward`): the
        locations it takes from each support map and the attention each frame gets. An opt-in
        for inspection (tools/visualize_troi.py): :meth:`forward` is unchanged by it; this one
        computes the similarities of every cell with every support location directly, so it is
        meant for a few RoIs."""
        self._check_supports(x, supports)
        roi_feats = super().forward(x, box_lists)
        levels = (
            torch.zeros(len(roi_feats), dtype=torch.int64, device=roi_feats.device)
            if len(x) == 1
            else assign_boxes_to_levels(
                box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
            )
        )
        num_supports = len(supports[0][0]) if len(box_lists) else 0
        k = self.topk
        cells = roi_feats.shape[2:]
        locations = torch.zeros(len(roi_feats), num_supports, *cells, k, dtype=torch.int64)
        similarities = torch.zeros(len(roi_feats), num_supports, *cells, k)
        attention = torch.zeros(len(roi_feats), num_supports + 1, *cells)
        images = torch.cat([torch.full((len(b),), i) for i, b in enumerate(box_lists)]) if box_lists else torch.zeros(0)
        for r in range(len(roi_feats)):
            level, image = int(levels[r]), int(images[r])
            maps, roi = supports[level][image], roi_feats[r : r + 1]
            queries = F.normalize(roi.float(), dim=1).flatten(2)[0].t()  # [h*w, C]
            keys = F.normalize(maps.float().flatten(2), dim=1)  # [T, C, H*W]
            top = torch.matmul(queries, keys).topk(k, dim=2)  # [T, h*w, K]
            locations[r] = top.indices.view(num_supports, *cells, k).cpu()
            similarities[r] = top.values.view(num_supports, *cells, k).cpu()
            aligned = most_similar_roi_align(roi, maps, k)
            attention[r] = self.aggregation.attention_weights(roi, aligned)[:, 0].mean(dim=1).float().cpu()
        return TemporalRoIAlignInspection(
            levels.cpu(), locations, similarities, attention, [tuple(level[0].shape[-2:]) for level in supports]
        )

    def _temporal_roi_feats(
        self,
        roi_feats: torch.Tensor,
        target_map: torch.Tensor,
        boxes: torch.Tensor,
        level: int,
        supports: torch.Tensor,
        track_grad: bool,
    ) -> torch.Tensor:
        """``roi_feats`` [R, C, h, w] of one image and level, pooled from ``target_map`` [C, H, W]
        at ``boxes`` [R, 4]; ``supports`` its [T, C, H', W'] maps."""
        if torch.jit.is_tracing():  # tensor operations only (see most_similar_roi_align)
            return self.aggregation(roi_feats, most_similar_roi_align(roi_feats, supports, self.topk))
        pooler = self.level_poolers[level]
        geometry = dict(
            spatial_scale=pooler.spatial_scale, sampling_ratio=pooler.sampling_ratio, aligned=pooler.aligned
        )
        options = dict(chunk_size=self.chunk_size, method=self.similarity, **geometry)
        if track_grad:
            support_roi_feats = most_similar_roi_align_from_map(
                roi_feats, target_map, boxes, supports, self.topk, **options
            )
            return self.aggregation(roi_feats, support_roi_feats)
        # Without gradients: one chunk of RoIs at a time, with all its supports. TAFA's target
        # embedding comes from the map's tap products when that costs fewer multiply-adds: about
        # when the RoIs have more cells than the map has locations.
        target_embedding = None
        if self.aggregation.embed is not None and roi_feats[0, 0].numel() * len(roi_feats) > target_map[0].numel():
            sampling = roi_align_sampling(boxes, tuple(target_map.shape[1:]), self.output_size, **geometry)
            target_embedding = self.aggregation.embed_pooled(target_map, sampling, self.output_size)
        chunks = iter_most_similar_roi_align_from_map(roi_feats, target_map, boxes, supports, self.topk, **options)
        return torch.cat(
            [
                self.aggregation(roi_feats[rois], feats, None if target_embedding is None else target_embedding[rois])
                for rois, feats in chunks
            ]
        )

    @staticmethod
    def _check_supports(x: List[torch.Tensor], supports: List[List[torch.Tensor]]) -> None:
        if not isinstance(supports, (list, tuple)) or len(supports) != len(x):
            raise ValueError(
                f"supports must be a list with one entry per feature level ({len(x)}), got "
                + (f"{len(supports)} entries" if isinstance(supports, (list, tuple)) else type(supports).__name__)
            )
        for level, (target_map, per_image) in enumerate(zip(x, supports)):
            if len(per_image) != target_map.shape[0]:
                raise ValueError(
                    f"supports[{level}] must hold the supports of each of the {target_map.shape[0]} images, "
                    f"got {len(per_image)}"
                )
            for image, maps in enumerate(per_image):
                if maps.dim() != 4 or maps.shape[1] != target_map.shape[1]:
                    raise ValueError(
                        f"supports[{level}][{image}] must be [T, {target_map.shape[1]}, H, W] (channels of "
                        f"x[{level}]), got shape {tuple(maps.shape)}"
                    )
        counts = {tuple(len(maps) for maps in per_image) for per_image in supports}
        if len(counts) != 1:
            raise ValueError(f"every level needs the same number of supports per image, got {sorted(counts)}")
