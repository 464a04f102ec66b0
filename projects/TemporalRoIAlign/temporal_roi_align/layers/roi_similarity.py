"""
Similarities of RoI cells with support-map locations (Eq. 2 of Temporal RoI Align), two ways:
a matmul of the normalised cells with each normalised support map, or, when the RoIs were
pooled from a target map, through the Gram matrix of the target map with each support map
(in PyTorch, or fused with the top-k selection by the compiled operator).
"""

from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F

from . import compiled_ops
from .roi_align_sampling import RoIAlignSampling

__all__ = ["CompiledGramSimilarity", "DirectSimilarity", "GramSimilarity", "gram_is_cheaper"]

# Time of one multiply-add of GramSimilarity's sparse product (a gather) in units of one
# multiply-add of a dense float32 matmul, when one support's Gram matrix fits in
# GRAM_CACHE_BYTES and when it does not. Measured on the 2-core CPU development machine with
# `benchmarks/bench_temporal_roi_align.py --sweep` (about 5-12 for Gram matrices of up to 22 MB,
# 16-35 for 72-281 MB; docs/temporal_roi_align.md); not measured on CUDA.
GATHER_COST = 12
GATHER_COST_UNCACHED = 30
GRAM_CACHE_BYTES = 32 * 2**20
# The same for the compiled operator's fused sparse product and top-k (CompiledGramSimilarity),
# which reads blocks of 64 columns of a Gram row per tap: 6.8 at the paper's scale in one
# measurement (0.60 s of CPU time for 3.1 G gathered multiply-adds, against the Gram matmuls'
# 39.5 G in 1.13 s, on the loaded 2-core machine); the uncached cost is scaled as above.
# `--sweep` prints the measured value per configuration (its part 3b).
COMPILED_GATHER_COST = 6
COMPILED_GATHER_COST_UNCACHED = 15


def gram_is_cheaper(
    num_cells: int, num_used_locations: int, num_taps: int, channels: int, gram_bytes: int, compiled: bool = False
) -> bool:
    """
    Whether the Gram path is expected to be faster than the direct matmul (:class:`GramSimilarity`
    than :class:`DirectSimilarity`, or with ``compiled``, :class:`CompiledGramSimilarity` than the
    direct matmul with the compiled top-k). Per support location, the direct matmul costs
    ``num_cells * C`` multiply-adds; the Gram path ``num_used_locations * C`` (its Gram matrix)
    plus ``num_taps`` gathered multiply-adds (its sparse product), each costing ``GATHER_COST``
    matmul multiply-adds, or ``GATHER_COST_UNCACHED`` when one support's Gram matrix
    (``gram_bytes``) exceeds ``GRAM_CACHE_BYTES`` (``COMPILED_GATHER_COST`` and
    ``COMPILED_GATHER_COST_UNCACHED`` with ``compiled``).
    """
    cached = gram_bytes <= GRAM_CACHE_BYTES
    if compiled:
        gather_cost = COMPILED_GATHER_COST if cached else COMPILED_GATHER_COST_UNCACHED
    else:
        gather_cost = GATHER_COST if cached else GATHER_COST_UNCACHED
    return num_used_locations * channels + gather_cost * num_taps < num_cells * channels


class DirectSimilarity:
    """
    Cosine similarities ``q^ . k^`` of the normalised RoI cells ``queries`` (``[N, C]``) with the
    normalised locations of each support map (``supports``: ``[T, C, H, W]``), ``rows`` cells
    at a time (the matmul of Eq. 2). Rows are padded with -inf to ``padded_locations`` columns.
    """

    def __init__(self, queries: torch.Tensor, supports: torch.Tensor, rows: int, padded_locations: int):
        self.queries = queries
        self.supports = supports
        self.num_locations = supports.shape[2] * supports.shape[3]
        self.buffer = queries.new_full((min(rows, len(queries)), padded_locations), float("-inf"))

    def for_support(self, t: int) -> Callable[[int, int], torch.Tensor]:
        """Returns ``rows(start, stop)``: the ``[stop - start, padded_locations]`` similarities of
        cells ``start:stop`` with support ``t`` (a view of a buffer reused by the next call)."""
        keys = F.normalize(self.supports[t].flatten(1), dim=0)

        def rows(start: int, stop: int) -> torch.Tensor:
            similarity = self.buffer[: stop - start]
            torch.mm(self.queries[start:stop], keys, out=similarity[:, : self.num_locations])
            return similarity

        return rows

    def cosine(self, scores: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Cosine similarities from scores of rows ``start:stop`` (already cosines here)."""
        return scores


class GramSimilarity:
    """
    The same ranking as :class:`DirectSimilarity` without the ``[N, C] x [C, H*W]`` matmul,
    for RoI cells pooled from a target map ``F`` by ROIAlign. ROIAlign is linear in ``F``: cell
    ``i`` is ``x_i = sum_j P[i, j] F[:, j]`` with a few non-zero ``P[i, j]`` (``sampling``), the
    same for every support. So its dot products with the normalised support locations ``K^``
    are ``P[i] . G`` with ``G = F^T K^`` (``[used target locations, H*W]``, one matmul per
    support shared by all cells), and the cosine similarities are those divided by ``|x_i|``.
    Rows are ranked by the dot products (the same order as the cosines: ``|x_i| > 0``).

    Args:
        cell_norms: ``[N]`` norms ``|x_i|`` of the pooled RoI cells, clamped as in ``F.normalize``.
        sampling: ``P`` with ``locations`` indexing ``target_rows``.
        target_rows: ``[L, C]``, the target map's features at the ``L`` locations ``P`` uses.
        supports: ``[T, C, H, W]``.
        padded_locations: columns of the returned rows, ``>= H * W`` (padded with -inf).
    """

    def __init__(
        self,
        cell_norms: torch.Tensor,
        sampling: RoIAlignSampling,
        target_rows: torch.Tensor,
        supports: torch.Tensor,
        padded_locations: int,
    ):
        self.cell_norms = cell_norms
        self.sampling = sampling
        self.offsets: List[int] = sampling.offsets.tolist()  # host copy: slicing rows needs no sync
        self.target_rows = target_rows
        self.supports = supports
        self.num_locations = supports.shape[2] * supports.shape[3]
        self.padded_locations = padded_locations

    def for_support(self, t: int) -> Callable[[int, int], torch.Tensor]:
        """Returns ``rows(start, stop)``: ``[stop - start, padded_locations]`` dot products of the
        un-normalised cells ``start:stop`` with the normalised locations of support ``t``."""
        gram = self.gram(t)

        def rows(start: int, stop: int) -> torch.Tensor:
            first, last = self.offsets[start], self.offsets[stop]
            dots = F.embedding_bag(
                self.sampling.locations[first:last],
                gram,
                self.sampling.offsets[start : stop + 1] - first,
                mode="sum",
                per_sample_weights=self.sampling.weights[first:last],
                include_last_offset=True,
            )
            dots[:, self.num_locations :] = float("-inf")
            return dots

        return rows

    def gram(self, t: int) -> torch.Tensor:
        """``[L, padded_locations]`` dot products of the target rows with the normalised locations
        of support ``t``, zero in the padding (the normalised keys are freed on return)."""
        keys = self.supports.new_zeros(self.supports.shape[1], self.padded_locations)
        keys[:, : self.num_locations] = F.normalize(self.supports[t].flatten(1), dim=0)
        return torch.mm(self.target_rows, keys)

    def cosine(self, scores: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Cosine similarities from dot products of rows ``start:stop``."""
        return scores / self.cell_norms[start:stop, None]


class CompiledGramSimilarity(GramSimilarity):
    """
    :class:`GramSimilarity`'s selection by the compiled operator: per support, the Gram matrix
    ``G_t = F^T K^_t`` (a matmul, its rows padded to ``padded_locations`` columns as the GEMM
    runs faster), then for every cell the sparse product ``P[i] . G_t`` and its top k in one
    pass (:func:`compiled_ops.gram_top_k`), so the ``[cells, H*W]`` rows of ``P G_t`` are never
    stored. Arguments as :class:`GramSimilarity`.
    """

    def top_k(self, t: int, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``[cells, k]`` cosine similarities and locations of the k most similar locations
        of support ``t`` for every cell, most similar first."""
        gram = self.gram(t)[:, : self.num_locations]  # [L, H*W], rows padded
        sampling = self.sampling
        return compiled_ops.gram_top_k(gram, sampling.locations, sampling.weights, sampling.offsets, self.cell_norms, k)
