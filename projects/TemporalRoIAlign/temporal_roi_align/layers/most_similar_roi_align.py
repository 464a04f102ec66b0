"""Most Similar RoI Align (Temporal RoI Align, Gong et al., AAAI 2021, Eq. 2-4)."""

import contextlib
from numbers import Integral
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from ..config import CHOICES
from . import compiled_ops
from .roi_align_sampling import RoIAlignSampling, roi_align_sampling
from .roi_similarity import CompiledGramSimilarity, DirectSimilarity, GramSimilarity, gram_is_cheaper

__all__ = [
    "most_similar_roi_align",
    "iter_most_similar_roi_align",
    "most_similar_roi_align_from_map",
    "iter_most_similar_roi_align_from_map",
]

RoIChunks = Iterator[Tuple[slice, torch.Tensor]]


def most_similar_roi_align(
    roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int, chunk_size: int = 2048
) -> torch.Tensor:
    """
    For every cell of every RoI, the softmax-weighted sum of the ``k`` support-map locations
    most similar to it (cosine similarity), taken from each support frame separately.

    Args:
        roi_feats: ``[R, C, h, w]`` RoI features of the target-frame proposals.
        support_feats: ``[T, C, H, W]`` feature maps of the support frames.
        k: most similar locations per RoI cell and support frame; at most ``H * W``.
        chunk_size: RoI cells whose similarities to one support map are computed at once
            (rounded down to whole RoIs, at least one RoI). The similarity block holds about
            ``chunk_size * H * W`` values; the full ``[R*h*w, T*H*W]`` matrix never exists.

    Returns:
        ``[T, R, C, h, w]`` most similar RoI features, in the dtype of ``roi_feats``, laid out
        channels-last in memory (a permuted view of ``[T, R, h, w, C]``): the weighted sums are
        produced per RoI cell, and a contiguous copy would cost a transpose of the whole output.
        Similarities, softmax and weighted sums are computed in at least float32, with autocast
        disabled. The top-k locations are chosen without gradient; when gradients are needed,
        their scores are recomputed from the gathered support vectors, so backward keeps
        ``k`` support vectors per RoI cell and never a similarity matrix.

    The similarities are a matmul of the normalised RoI cells with each normalised support map;
    :func:`most_similar_roi_align_from_map` computes the same output for RoIs pooled from a
    target map at a fraction of that cost.

    While tracing (``torch.jit.trace``, ONNX export) all cells are taken at once, without
    ``chunk_size``, in tensor operations only, so that the trace holds for any number of RoIs.
    """
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    if torch.jit.is_tracing():
        return _traceable_all_supports(roi_feats, support_feats, k)
    return _all_supports(roi_feats, support_feats, k, chunk_size, None)


def iter_most_similar_roi_align(
    roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int, chunk_size: int = 2048
) -> RoIChunks:
    """
    :func:`most_similar_roi_align` one chunk of RoIs at a time (``chunk_size`` cells, rounded
    down to whole RoIs, at least one), for consumers that reduce each chunk right away and so
    never hold the whole ``[T, R, C, h, w]`` output. The k locations of all cells and supports
    are chosen first (``[T, R*h*w, k]`` locations and scores, ``12 k`` bytes per cell and support).

    Yields:
        ``(rois, feats)``: ``rois`` a slice of the RoIs, ``feats`` their ``[T, len(rois), C, h, w]``
        most similar features (channels-last in memory, dtype of ``roi_feats``).
    """
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    return _roi_chunks(roi_feats, support_feats, k, chunk_size, None)


def most_similar_roi_align_from_map(
    roi_feats: torch.Tensor,
    target_map: torch.Tensor,
    boxes: torch.Tensor,
    support_feats: torch.Tensor,
    k: int,
    *,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    chunk_size: int = 2048,
    method: str = "auto",
) -> torch.Tensor:
    """
    :func:`most_similar_roi_align` for RoIs pooled from ``target_map``: the same output, with the
    similarities computed through the Gram matrix of the target map with each support map
    where that is cheaper (:class:`GramSimilarity`).

    ``roi_feats`` must be ``torchvision.ops.roi_align(target_map[None], [boxes], (h, w),
    spatial_scale, sampling_ratio, aligned)`` (what Detectron2's ``ROIPooler`` computes for one
    image and level: "ROIAlignV2" is ``aligned=True``, "ROIAlign" ``aligned=False``); a cheap
    check on a few RoIs raises ``ValueError`` when they differ.

    Args:
        roi_feats: ``[R, C, h, w]``.
        target_map: ``[C, H, W]`` the map the RoIs were pooled from.
        boxes: ``[R, 4]`` the RoIs' boxes ``(x0, y0, x1, y1)`` in image coordinates.
        support_feats: ``[T, C, H', W']`` (any size).
        k, chunk_size: as in :func:`most_similar_roi_align`.
        spatial_scale, sampling_ratio, aligned: the ROIAlign parameters ``roi_feats`` were pooled with.
        method: "direct" (:func:`most_similar_roi_align`'s matmul), "gram", "compiled" (the
            compiled operator, :mod:`.compiled_ops`: a ``ValueError`` where it is not built for
            the device), or "auto": "compiled" where it is built, and otherwise "gram" when
            :func:`gram_is_cheaper` says so for these RoIs (many RoI cells per map location).
            "compiled" too takes the Gram path where :func:`gram_is_cheaper` says so for it.

    All methods choose the same locations, except between scores equal up to float rounding,
    and give the same gradients (selection is without gradient in all; the chosen scores are
    recomputed from ``roi_feats`` in PyTorch). ``target_map`` and ``boxes`` get no gradient.
    """
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    target = _TargetMap(roi_feats, target_map, boxes, spatial_scale, sampling_ratio, aligned, method)
    return _all_supports(roi_feats, support_feats, k, chunk_size, target)


def iter_most_similar_roi_align_from_map(
    roi_feats: torch.Tensor,
    target_map: torch.Tensor,
    boxes: torch.Tensor,
    support_feats: torch.Tensor,
    k: int,
    *,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    chunk_size: int = 2048,
    method: str = "auto",
) -> RoIChunks:
    """:func:`most_similar_roi_align_from_map` one chunk of RoIs at a time, as
    :func:`iter_most_similar_roi_align`."""
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    target = _TargetMap(roi_feats, target_map, boxes, spatial_scale, sampling_ratio, aligned, method)
    return _roi_chunks(roi_feats, support_feats, k, chunk_size, target)


class _TargetMap:
    """The arguments of the ``*_from_map`` functions, checked."""

    def __init__(self, roi_feats, target_map, boxes, spatial_scale, sampling_ratio, aligned, method):
        if method not in CHOICES["MODEL.TEMPORAL_ROI_ALIGN.SIMILARITY"]:
            raise ValueError(f"method must be one of {CHOICES['MODEL.TEMPORAL_ROI_ALIGN.SIMILARITY']}, got {method!r}")
        if target_map.dim() != 3 or target_map.shape[0] != roi_feats.shape[1]:
            raise ValueError(
                f"target_map must be [{roi_feats.shape[1]}, H, W] (channels of roi_feats), "
                f"got shape {tuple(target_map.shape)}"
            )
        if boxes.dim() != 2 or boxes.shape != (roi_feats.shape[0], 4):
            raise ValueError(
                f"boxes must be [{roi_feats.shape[0]}, 4] (one box per RoI of roi_feats), "
                f"got shape {tuple(boxes.shape)}"
            )
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, Integral) or sampling_ratio < 0:
            raise ValueError(f"sampling_ratio must be an int >= 0 (0: adaptive), got {sampling_ratio!r}")
        if not torch.isfinite(boxes).all():
            raise ValueError("boxes must be finite")
        self.map = target_map
        self.boxes = boxes
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.method = method
        self.compiled = method in ("auto", "compiled") and compiled_ops.available(roi_feats.device)
        if method == "compiled" and not self.compiled:
            raise ValueError(f"method='compiled' on {roi_feats.device.type}: {compiled_ops.status()}")


def _all_supports(roi_feats, support_feats, k, chunk_size, target: Optional[_TargetMap]) -> torch.Tensor:
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports = support_feats.shape[0]
    if num_rois == 0 or num_supports == 0:
        return roi_feats.new_zeros(num_supports, num_rois, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3)
    with _without_autocast(roi_feats):
        op = _Operator(roi_feats, support_feats, k, chunk_size, target)
        locations, scores = op.select()
        out = op.features(locations, scores, 0, op.num_cells).to(roi_feats.dtype)
    return out.view(num_supports, num_rois, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3)


def _traceable_all_supports(roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_all_supports` without Python values that depend on the number of RoIs (chunks,
    buffers, the pruned top-k): one ``[R*h*w, H*W]`` similarity matrix per support. Equal up to
    float rounding (and the choice among equal scores)."""
    num_supports = len(support_feats)  # fixed by the trace, as its inputs are
    if num_supports == 0:
        return roi_feats.unsqueeze(0)[:0]
    _, channels, roi_h, roi_w = roi_feats.shape
    dtype = torch.promote_types(torch.promote_types(roi_feats.dtype, support_feats.dtype), torch.float32)
    queries = F.normalize(roi_feats.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels), dim=1)
    per_support = []
    for t in range(num_supports):
        values = support_feats[t].to(dtype).flatten(1).t()  # [H*W, C]
        scores, locations = torch.mm(queries, F.normalize(values, dim=1).t()).topk(k, dim=1)  # Eq. 2
        weights = scores.softmax(dim=1)  # Eq. 3
        gathered = values.index_select(0, locations.flatten()).view(-1, k, channels)
        per_support.append((gathered * weights.unsqueeze(2)).sum(dim=1))  # Eq. 4
    out = torch.stack(per_support).to(roi_feats.dtype)
    return out.view(num_supports, -1, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3)


def _roi_chunks(roi_feats, support_feats, k, chunk_size, target: Optional[_TargetMap]) -> RoIChunks:
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports = support_feats.shape[0]
    if num_rois == 0 or num_supports == 0:
        return
    with _without_autocast(roi_feats):
        op = _Operator(roi_feats, support_feats, k, chunk_size, target)
        locations, scores = op.select()
    for first in range(0, op.num_cells, op.rows):
        last = min(first + op.rows, op.num_cells)
        with _without_autocast(roi_feats):
            feats = op.features(locations[:, first:last], scores[:, first:last], first, last)
            feats = feats.to(roi_feats.dtype).view(num_supports, -1, roi_h, roi_w, channels)
        rois = slice(first // op.cells_per_roi, last // op.cells_per_roi)
        yield rois, feats.permute(0, 1, 4, 2, 3)


class _Operator:
    """Eq. 2-4 for one set of RoIs and supports: :meth:`select` chooses the k locations of every
    cell in every support (Eq. 2, top k), :meth:`features` weighs them (Eq. 3-4)."""

    def __init__(self, roi_feats, support_feats, k, chunk_size, target: Optional[_TargetMap]):
        num_rois, channels, roi_h, roi_w = roi_feats.shape
        num_supports, _, height, width = support_feats.shape
        self.k = k
        self.num_supports = num_supports
        self.num_locations = height * width
        self.cells_per_roi = roi_h * roi_w
        self.num_cells = num_rois * self.cells_per_roi
        self.rows = max(1, chunk_size // self.cells_per_roi) * self.cells_per_roi
        self.track_grad = torch.is_grad_enabled() and (roi_feats.requires_grad or support_feats.requires_grad)
        self.compiled = target is not None and target.compiled
        dtype = torch.promote_types(torch.promote_types(roi_feats.dtype, support_feats.dtype), torch.float32)
        supports = support_feats.to(dtype)
        # Every support's un-normalised vectors (Eq. 4), one table: [T*H*W, C].
        self.values = supports.flatten(2).transpose(1, 2).reshape(-1, channels)
        padded_locations = -(-self.num_locations // _SEGMENT) * _SEGMENT  # for _top_k_locations
        # One RoI cell per row, cells in (RoI, y, x) order: [R*h*w, C].
        cells = roi_feats.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels)
        self.queries = F.normalize(cells, dim=1) if self.track_grad else None
        gram = None
        if target is not None:
            gram = _gram_inputs(cells.detach(), (roi_h, roi_w), target, dtype, padded_locations)
        # Similarities only select locations: no gradient.
        if gram is not None:
            sampling, target_rows = gram
            norms = torch.linalg.vector_norm(cells.detach(), dim=1).clamp_min(1e-12)  # as F.normalize
            similarity = CompiledGramSimilarity if self.compiled else GramSimilarity
            self.similarity = similarity(norms, sampling, target_rows, supports.detach(), padded_locations)
        else:
            queries = self.queries.detach() if self.queries is not None else F.normalize(cells.detach(), dim=1)
            self.similarity = DirectSimilarity(queries, supports.detach(), self.rows, padded_locations)

    @torch.no_grad()
    def select(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``[T, N, k]`` most similar locations of every cell in every support, and their
        cosine similarities; supports one after the other, ``self.rows`` cells at a time."""
        locations = torch.empty(self.num_supports, self.num_cells, self.k, dtype=torch.int64, device=self.values.device)
        scores = self.values.new_empty(self.num_supports, self.num_cells, self.k)
        for t in range(self.num_supports):
            if isinstance(self.similarity, CompiledGramSimilarity):
                scores[t], locations[t] = self.similarity.top_k(t, self.k)  # Eq. 2
                continue
            rows = self.similarity.for_support(t)
            for first in range(0, self.num_cells, self.rows):
                last = min(first + self.rows, self.num_cells)
                if self.compiled:
                    top_scores, top_locations = compiled_ops.rows_top_k(
                        rows(first, last)[:, : self.num_locations], self.k
                    )
                else:
                    top_scores, top_locations = _top_k_locations(rows(first, last), self.k)  # Eq. 2
                locations[t, first:last] = top_locations
                scores[t, first:last] = self.similarity.cosine(top_scores, first, last)
        return locations, scores

    def features(self, locations: torch.Tensor, scores: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """``[T * (last - first), C]`` most similar features of cells ``first:last`` in every
        support (support-major), given their ``[T, last - first, k]`` ``locations`` and
        ``scores`` from :meth:`select`."""
        # Locations in the table of all supports' vectors.
        rows = locations + torch.arange(self.num_supports, device=locations.device).view(-1, 1, 1) * self.num_locations
        if self.track_grad:
            scores = _cosine_similarity_at(self.queries[first:last], self.values, rows)
        weights = scores.softmax(dim=2)  # Eq. 3
        # Eq. 4 without materialising the [T, cells, k, C] gathered features.
        return F.embedding_bag(rows.flatten(0, 1), self.values, per_sample_weights=weights.flatten(0, 1), mode="sum")


def _gram_inputs(
    cells: torch.Tensor, roi_size: Tuple[int, int], target: _TargetMap, dtype: torch.dtype, padded_locations: int
) -> Optional[Tuple[RoIAlignSampling, torch.Tensor]]:
    """ROIAlign's sampling matrix (its locations renumbered to the target locations it uses) and
    the target map's features there, ``[L, C]``; None when the direct matmul is to be used."""
    if target.method == "direct":
        return None
    target_map = target.map.detach().to(device=cells.device, dtype=dtype)
    height, width = target_map.shape[1:]
    boxes = target.boxes.detach().to(device=cells.device, dtype=dtype)
    sampling = roi_align_sampling(
        boxes, (height, width), roi_size, target.spatial_scale, target.sampling_ratio, target.aligned
    )
    is_used = torch.zeros(height * width, dtype=torch.bool, device=cells.device)
    is_used[sampling.locations] = True
    used = is_used.nonzero().squeeze(1)
    num_cells, channels = cells.shape
    gram_bytes = len(used) * padded_locations * cells.element_size()
    if target.method != "gram" and not gram_is_cheaper(
        num_cells, len(used), len(sampling.locations), channels, gram_bytes, target.compiled
    ):
        return None
    renumbered = torch.cumsum(is_used, dim=0).sub_(1)[sampling.locations]
    sampling = sampling._replace(locations=renumbered)
    target_rows = target_map.flatten(1)[:, used].t().contiguous()
    _check_pooled(cells, sampling, target_rows, roi_size[0] * roi_size[1], target)
    return sampling, target_rows


def _check_pooled(
    cells: torch.Tensor, sampling: RoIAlignSampling, target_rows: torch.Tensor, cells_per_roi: int, target: _TargetMap
) -> None:
    """Raises ValueError unless the first RoIs' cells are ROIAlign of the target map at their boxes."""
    num_checked = min(len(cells), _CHECKED_ROIS * cells_per_roi)
    sampled = sampling.rows(0, num_checked)
    pooled = F.embedding_bag(
        sampled.locations,
        target_rows,
        sampled.offsets,
        mode="sum",
        per_sample_weights=sampled.weights,
        include_last_offset=True,
    )
    expected = cells[:num_checked]
    difference = (pooled - expected).abs().max().item()
    tolerance = _POOLED_TOLERANCE * (1.0 + expected.abs().max().item())
    if not difference <= tolerance:
        raise ValueError(
            f"roi_feats are not ROIAlign of target_map at boxes with spatial_scale={target.spatial_scale}, "
            f"sampling_ratio={target.sampling_ratio}, aligned={target.aligned} (max difference {difference:.3g} "
            f"over the first {num_checked // cells_per_roi} RoIs)"
        )


# RoIs whose pooled features _check_pooled compares, and its tolerance relative to their largest
# value: loose enough for half-precision roi_feats, far below a wrong scale's or offset's error.
_CHECKED_ROIS = 8
_POOLED_TOLERANCE = 1e-2


@contextlib.contextmanager
def _without_autocast(tensor: torch.Tensor):
    with torch.autocast(tensor.device.type, enabled=False):
        yield


def _check_inputs(roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int, chunk_size: int) -> None:
    if roi_feats.dim() != 4:
        raise ValueError(f"roi_feats must be [R, C, h, w], got shape {tuple(roi_feats.shape)}")
    if support_feats.dim() != 4:
        raise ValueError(f"support_feats must be [T, C, H, W], got shape {tuple(support_feats.shape)}")
    if roi_feats.shape[1] != support_feats.shape[1]:
        raise ValueError(f"roi_feats has {roi_feats.shape[1]} channels but support_feats has {support_feats.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    height, width = support_feats.shape[2:]
    if height * width < k:
        raise ValueError(
            f"k={k} most similar locations requested, but the support maps ({height}x{width}) "
            f"have only {height * width} locations"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


# Length of the row segments whose maxima prune the top-k search (a multiple of the SIMD width).
_SEGMENT = 64


def _top_k_locations(similarity: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    ``similarity.topk(k, dim=1)`` for ``[n, L]`` rows with ``L`` a multiple of ``_SEGMENT``
    (padded with -inf), searched in two stages: the k segments with the largest maxima, then
    the top k of their ``k * _SEGMENT`` values. Exact: a value outside those segments is at most
    the maximum of each of them, so k candidates are at least as large. Only among equal
    values may the chosen locations differ from ``torch.topk``.
    """
    num_rows, length = similarity.shape
    num_segments = length // _SEGMENT
    if num_segments <= k:
        return similarity.topk(k, dim=1)
    best_segments = similarity.view(num_rows, num_segments, _SEGMENT).amax(dim=2).topk(k, dim=1).indices
    offsets = torch.arange(_SEGMENT, device=similarity.device)
    candidates = (best_segments.unsqueeze(2) * _SEGMENT + offsets).flatten(1)  # [n, k * _SEGMENT] locations
    scores, best_candidates = similarity.gather(1, candidates).topk(k, dim=1)
    return scores, candidates.gather(1, best_candidates)


def _cosine_similarity_at(queries: torch.Tensor, values: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Differentiable cosine similarity of each unit-norm query ``[n, C]`` with the support
    vectors ``values[locations]`` (``locations``: ``[T, n, k]``); returns ``[T, n, k]``."""
    gathered = values[locations]  # [T, n, k, C]
    dots = torch.matmul(gathered, queries.unsqueeze(2)).squeeze(3)
    # Same epsilon as F.normalize, so these equal the scores used for selection.
    return dots / torch.linalg.vector_norm(gathered, dim=3).clamp_min(1e-12)
