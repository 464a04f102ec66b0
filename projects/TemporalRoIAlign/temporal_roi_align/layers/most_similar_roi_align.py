"""Most Similar RoI Align (Temporal RoI Align, Gong et al., AAAI 2021, Eq. 2-4)."""

import itertools
from numbers import Integral
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F

__all__ = ["most_similar_roi_align", "iter_most_similar_roi_align"]


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
    """
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports = support_feats.shape[0]
    if num_rois == 0 or num_supports == 0:
        return roi_feats.new_zeros(num_supports, num_rois, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3)
    if torch.is_grad_enabled() and (roi_feats.requires_grad or support_feats.requires_grad):
        chunks = iter_most_similar_roi_align(roi_feats, support_feats, k, chunk_size)
        return torch.cat([feats for _, feats in chunks], dim=1)
    # Each support's features go straight into the output, without a per-chunk stack.
    out = roi_feats.new_empty(num_supports, num_rois, roi_h, roi_w, channels)
    for rois, t, feats in _most_similar_per_support(roi_feats, support_feats, k, chunk_size, track_grad=False):
        out[t, rois] = feats
    return out.permute(0, 1, 4, 2, 3)


def iter_most_similar_roi_align(
    roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int, chunk_size: int = 2048
) -> Iterator[Tuple[slice, torch.Tensor]]:
    """
    :func:`most_similar_roi_align` one chunk of RoIs at a time (``chunk_size`` cells, rounded
    down to whole RoIs, at least one), for consumers that reduce each chunk right away and so
    never hold the whole ``[T, R, C, h, w]`` output.

    Yields:
        ``(rois, feats)``: ``rois`` a slice of the RoIs, ``feats`` their ``[T, len(rois), C, h, w]``
        most similar features (channels-last in memory, dtype of ``roi_feats``).
    """
    _check_inputs(roi_feats, support_feats, k, chunk_size)
    track_grad = torch.is_grad_enabled() and (roi_feats.requires_grad or support_feats.requires_grad)
    per_support = _most_similar_per_support(roi_feats, support_feats, k, chunk_size, track_grad)
    for rois, chunk in itertools.groupby(per_support, key=lambda item: item[0]):
        yield rois, torch.stack([feats for _, _, feats in chunk]).to(roi_feats.dtype).permute(0, 1, 4, 2, 3)


def _most_similar_per_support(
    roi_feats: torch.Tensor, support_feats: torch.Tensor, k: int, chunk_size: int, track_grad: bool
) -> Iterator[Tuple[slice, int, torch.Tensor]]:
    """Yields ``(rois, t, feats)`` chunk by chunk of RoIs, supports in order within a chunk:
    ``feats`` (``[len(rois), h, w, C]``, compute dtype) are the most similar features from
    support ``t`` for the RoIs in the slice ``rois``."""
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports, _, height, width = support_feats.shape
    cells_per_roi = roi_h * roi_w
    rois_per_chunk = max(1, chunk_size // cells_per_roi)
    compute_dtype = torch.promote_types(torch.promote_types(roi_feats.dtype, support_feats.dtype), torch.float32)
    if num_rois == 0 or num_supports == 0:
        return
    with torch.autocast(roi_feats.device.type, enabled=False):
        # One L2-normalised query per RoI cell, cells in (RoI, y, x) order: [R*h*w, C].
        queries = F.normalize(roi_feats.to(compute_dtype), dim=1).permute(0, 2, 3, 1).reshape(-1, channels)
        supports = support_feats.to(compute_dtype).flatten(2)  # [T, C, H*W]
        keys = F.normalize(supports.detach(), dim=1)  # used only to select locations
        values = supports.transpose(1, 2).contiguous()  # [T, H*W, C], un-normalised (Eq. 4)
        # Rows padded with -inf to whole segments for _top_k_locations; mm fills the rest.
        num_locations = height * width
        padded_locations = -(-num_locations // _SEGMENT) * _SEGMENT
        similarity_buffer = queries.new_full(
            (min(rois_per_chunk, num_rois) * cells_per_roi, padded_locations), float("-inf")
        )
        for first_roi in range(0, num_rois, rois_per_chunk):
            rois = slice(first_roi, min(first_roi + rois_per_chunk, num_rois))
            chunk_queries = queries[rois.start * cells_per_roi : rois.stop * cells_per_roi]
            for t in range(num_supports):
                with torch.no_grad():
                    similarity = similarity_buffer[: chunk_queries.shape[0]]
                    torch.mm(chunk_queries.detach(), keys[t], out=similarity[:, :num_locations])  # Eq. 2
                    top_scores, top_locations = _top_k_locations(similarity, k)
                if track_grad:
                    top_scores = _cosine_similarity_at(chunk_queries, values[t], top_locations)
                weights = top_scores.softmax(dim=1)  # Eq. 3
                # Eq. 4 without materialising the [cells, k, C] gathered features.
                feats = F.embedding_bag(top_locations, values[t], per_sample_weights=weights, mode="sum")
                yield rois, t, feats.view(-1, roi_h, roi_w, channels)


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
    vectors ``values[locations]`` (``locations``: ``[n, k]``); returns ``[n, k]``."""
    gathered = values[locations]  # [n, k, C]
    dots = torch.bmm(gathered, queries.unsqueeze(2)).squeeze(2)
    # Same epsilon as F.normalize, so these equal the scores used for selection.
    return dots / torch.linalg.vector_norm(gathered, dim=2).clamp_min(1e-12)
