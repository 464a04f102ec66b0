"""Temporal Attentional Feature Aggregation (Temporal RoI Align, Gong et al., AAAI 2021, Eq. 5-8)."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CHOICES
from .roi_align_sampling import RoIAlignSampling

__all__ = ["TemporalAttentionalAggregation", "projections_are_cheaper"]

# Time of the projection path in multiply-adds of the 3x3 conv, measured on the 2-core CPU
# development machine with `benchmarks/bench_vis_inference.py --sweep` (docs/temporal_roi_align.md):
# per multiply-add of the projections (per tap, a [cells, C/N] x [C/N, C/G] matmul per block),
# and per support value read by their products with the supports (batches of tiny
# [N/G, C/G] x [C/G, T] matmuls, whose time goes into reading the supports).
PROJECTION_COST = 3
PRODUCT_COST = 40
# One tap's projections computed at once by the projection path (whole RoI rows, at least one).
_PROJECTION_CHUNK_BYTES = 2**20


def projections_are_cheaper(group_channels: int, num_supports: int) -> bool:
    """
    Whether TAFA without gradient is expected to be faster through projections of the target's
    embedding than by embedding every support with the conv. Per RoI cell, with ``C/G`` the
    conv's input channels per group (``group_channels``): embedding the supports costs
    ``9 C (C/G) T`` multiply-adds; the projections ``9 C (C/G)`` at ``PROJECTION_COST`` each,
    and their products read ``9 C T`` support values at ``PRODUCT_COST`` each. Both paths need
    the target's embedding.
    """
    return group_channels * (num_supports - PROJECTION_COST) > PRODUCT_COST * num_supports


class TemporalAttentionalAggregation(nn.Module):
    """
    Aggregates the target RoI features with the most similar RoI features of the supports.

    Every frame (target first) is embedded by a 3x3 conv; the channels are split into
    ``num_blocks`` groups; in each group and RoI cell, the frame's weight is the softmax over
    frames of ``<embed(frame), embed(target)> / sqrt(channels / num_blocks)``, and the output
    is the weighted sum of the frames' (un-embedded) features.

    Args:
        channels: C, channels of the RoI features.
        num_blocks: N, attention blocks; 0 averages the frames instead (no parameters).
        embed: "shared": one ``Conv2d(C, C, 3)`` embeds all channels before the split;
            "grouped": block ``n`` has its own ``Conv2d(C/N, C/N, 3)`` on its channel group,
            as in the paper's text (stored as one ``Conv2d(C, C, 3, groups=N)``).
    """

    def __init__(self, channels: int, num_blocks: int, embed: str = "shared"):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        if num_blocks > 0 and channels % num_blocks != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_blocks ({num_blocks})")
        if embed not in CHOICES["MODEL.TEMPORAL_ROI_ALIGN.EMBED"]:
            raise ValueError(f"embed must be one of {CHOICES['MODEL.TEMPORAL_ROI_ALIGN.EMBED']}, got {embed!r}")
        self.channels = channels
        self.num_blocks = num_blocks
        if num_blocks == 0:
            self.embed = None
        else:
            groups = 1 if embed == "shared" else num_blocks
            self.embed = nn.Conv2d(channels, channels, 3, padding=1, groups=groups)

    def forward(
        self,
        target_roi_feats: torch.Tensor,
        support_roi_feats: torch.Tensor,
        target_embedding: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            target_roi_feats: ``[R, C, h, w]``.
            support_roi_feats: ``[T, R, C, h, w]`` (T may be 0).
            target_embedding: optional ``[R, C, h, w]`` embedding of ``target_roi_feats``
                (``self.embed(target_roi_feats)``, e.g. from :meth:`embed_pooled`), used when no
                gradient is needed instead of embedding the target here.

        Returns:
            ``[R, C, h, w]`` temporal RoI features, in the dtype of ``target_roi_feats``.

        When gradients are needed every frame is embedded by ``self.embed``. Otherwise, in at
        least float32 with autocast disabled, the supports' logits come from the cheaper of two
        computations with the same numbers (:func:`projections_are_cheaper`): the conv of every
        support, or projections of the target's embedding (:meth:`_aggregate_by_projections`;
        not while tracing, ``torch.jit.trace`` or ONNX export).
        """
        self._check_target(target_roi_feats)
        if support_roi_feats.dim() != 5 or support_roi_feats.shape[1:] != target_roi_feats.shape:
            raise ValueError(
                f"support_roi_feats must be [T, {', '.join(map(str, target_roi_feats.shape))}], "
                f"got shape {tuple(support_roi_feats.shape)}"
            )
        if self.embed is None:
            frames = torch.cat([target_roi_feats.unsqueeze(0), support_roi_feats.to(target_roi_feats.dtype)])
            return frames.to(_accumulate_dtype(frames.dtype)).mean(dim=0).to(target_roi_feats.dtype)
        needs_grad = torch.is_grad_enabled() and (
            target_roi_feats.requires_grad
            or support_roi_feats.requires_grad
            or any(p.requires_grad for p in self.embed.parameters())
        )
        if needs_grad:
            frames = torch.cat([target_roi_feats.unsqueeze(0), support_roi_feats.to(target_roi_feats.dtype)])
            embeddings = self.embed(frames.flatten(0, 1)).view_as(frames)
            return self._aggregate_embedded(frames, embeddings).to(target_roi_feats.dtype)
        if target_embedding is not None and target_embedding.shape != target_roi_feats.shape:
            raise ValueError(
                f"target_embedding must have the shape of target_roi_feats {tuple(target_roi_feats.shape)}, "
                f"got {tuple(target_embedding.shape)}"
            )
        dtype = torch.promote_types(_accumulate_dtype(target_roi_feats.dtype), self.embed.weight.dtype)
        with torch.autocast(target_roi_feats.device.type, enabled=False):
            target, supports = target_roi_feats.to(dtype), support_roi_feats.to(dtype)
            weight, bias = self.embed.weight.to(dtype), self.embed.bias.to(dtype)
            if target_embedding is None:
                target_embedding = F.conv2d(target, weight, bias, padding=1, groups=self.embed.groups)
            target_embedding = target_embedding.to(dtype)
            # The projections' chunks of RoIs are Python values: a trace would keep them.
            if not torch.jit.is_tracing() and projections_are_cheaper(
                self.channels // self.embed.groups, len(supports)
            ):
                aggregated = self._aggregate_by_projections(target, supports, target_embedding)
            else:
                aggregated = self._aggregate_by_support_embeddings(target, supports, target_embedding)
        return aggregated.to(target_roi_feats.dtype)

    def attention_weights(self, target_roi_feats: torch.Tensor, support_roi_feats: torch.Tensor) -> torch.Tensor:
        """The weights of Eq. 7 that :meth:`forward` gives each frame (target first), per block
        and cell: ``[T + 1, R, N, h, w]``, summing to 1 over frames (``1 / (T + 1)`` when
        averaging, N = 0, with one block). For inspection; computed like the training path."""
        self._check_target(target_roi_feats)
        frames = torch.cat([target_roi_feats.unsqueeze(0), support_roi_feats.to(target_roi_feats.dtype)])
        if self.embed is None:
            return frames.new_full((frames.shape[0], frames.shape[1], 1, *frames.shape[3:]), 1.0 / frames.shape[0])
        embeddings = self.embed(frames.flatten(0, 1)).view_as(frames)
        return self._attention_logits(embeddings, embeddings[0]).softmax(dim=0).squeeze(3)

    def _aggregate_embedded(self, frames: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Eq. 6-8 for the frames ``[T + 1, R, C, h, w]`` (target first) and their embeddings."""
        weights = self._attention_logits(embeddings, embeddings[0]).softmax(dim=0)  # Eq. 6-7
        return (weights * self._split_blocks(frames.to(_accumulate_dtype(frames.dtype)))).sum(dim=0).flatten(1, 2)

    def _aggregate_by_support_embeddings(
        self, target: torch.Tensor, supports: torch.Tensor, target_embedding: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` without gradient, every support embedded by the conv."""
        weight, bias = self.embed.weight.to(target.dtype), self.embed.bias.to(target.dtype)
        support_embeddings = F.conv2d(supports.flatten(0, 1), weight, bias, padding=1, groups=self.embed.groups)
        frames = torch.cat([target.unsqueeze(0), supports])
        embeddings = torch.cat([target_embedding.unsqueeze(0), support_embeddings.view_as(supports)])
        return self._aggregate_embedded(frames, embeddings)

    def _aggregate_by_projections(
        self, target: torch.Tensor, supports: torch.Tensor, target_embedding: torch.Tensor
    ) -> torch.Tensor:
        """
        :meth:`forward` without gradient and without embedding the supports. The embedding
        ``psi(X) = b + sum_d W_d X(. + d)`` (3x3 taps ``d``, zero outside the RoI's grid) is
        linear, so Eq. 6 for a support ``X_s`` at cell ``m`` is

            <psi(X_s)^n(m), psi(X_t)^n(m)> = <b^n, psi(X_t)^n(m)> + sum_d <(W_d^n)^T psi(X_t)^n(m), X_s(m + d)>

        The projections ``(W_d^n)^T psi(X_t)^n(m)`` cost one more embedding, of the target, and
        serve every support, which then costs ``9 N C / G`` multiply-adds per cell (``G`` the
        conv's groups) instead of an embedding's ``9 C^2 / G``. Cells are taken in (RoI, y, x)
        order, so the neighbour at tap ``d`` of cell ``i`` is cell ``i + dy w + dx``: per tap,
        the projections of a chunk of cells (``_PROJECTION_CHUNK_BYTES`` of whole RoI rows) are
        one batched matmul, set to zero where the neighbour is outside the RoI's grid, and their
        products with the supports one more, with a shifted view of the supports (so a
        non-finite support value also reaches, through a zero, the logits of edge cells that the
        conv's padding keeps from it). Returns a channels-last view.
        """
        num_rois, channels, roi_h, roi_w = target.shape
        num_supports, num_cells = len(supports), num_rois * roi_h * roi_w
        num_blocks, block_channels = self.num_blocks, channels // self.num_blocks
        groups = self.embed.groups
        group_channels, group_blocks = channels // groups, num_blocks // groups
        weight, bias = self.embed.weight.to(target.dtype), self.embed.bias.to(target.dtype)
        taps = weight.view(num_blocks, block_channels, group_channels, 9).permute(3, 0, 1, 2).contiguous()  # W_d^n
        # psi(X_t) per cell and block, [cells, N, C/N]; the supports per cell, [T, cells, C].
        embedding_cells = target_embedding.permute(0, 2, 3, 1).reshape(num_cells, num_blocks, block_channels)
        support_cells = supports.permute(0, 1, 3, 4, 2).reshape(num_supports, num_cells, channels)

        logits = embedding_cells.new_empty(num_cells, num_blocks, 1 + num_supports)  # target first
        logits[..., 0] = embedding_cells.square().sum(dim=2)
        logits[..., 1:] = (embedding_cells * bias.view(num_blocks, block_channels)).sum(dim=2, keepdim=True)
        row_bytes = roi_w * num_blocks * group_channels * target.element_size()
        rows_per_chunk = max(1, _PROJECTION_CHUNK_BYTES // row_bytes)
        for first_row in range(0, num_rois * roi_h, rows_per_chunk):
            last_row = min(first_row + rows_per_chunk, num_rois * roi_h)
            first, last = first_row * roi_w, last_row * roi_w
            chunk_blocks = embedding_cells[first:last].transpose(0, 1)  # [N, cells, C/N]
            for tap in range(9):
                dy, dx = tap // 3 - 1, tap % 3 - 1
                shift = dy * roi_w + dx
                # The cells outside [start, stop) have no neighbour index: they are on the edge.
                start, stop = max(first, -shift), min(last, num_cells - shift)
                if start >= stop:
                    continue
                projections = torch.bmm(chunk_blocks, taps[tap])  # [N, cells, C/G]
                rows = projections.view(num_blocks, last_row - first_row, roi_w, group_channels)
                if dy != 0:  # the RoIs' first (dy = -1) or last (dy = 1) rows have no neighbour there
                    rows[:, (-first_row - (dy > 0)) % roi_h :: roi_h] = 0
                if dx != 0:
                    rows[:, :, 0 if dx < 0 else roi_w - 1] = 0
                projections = projections.view(groups, group_blocks, last - first, group_channels)
                for group in range(groups):
                    in_channels = slice(group * group_channels, (group + 1) * group_channels)
                    logits[start:stop, group * group_blocks : (group + 1) * group_blocks, 1:] += torch.bmm(
                        projections[group, :, start - first : stop - first].transpose(0, 1),  # [cells, N/G, C/G]
                        support_cells[:, start + shift : stop + shift, in_channels].permute(1, 2, 0),  # [cells, C/G, T]
                    )
        weights = logits.div_(math.sqrt(block_channels)).softmax(dim=2)  # Eq. 6-7

        # Eq. 8 as one batched [1, T] x [T, C/N] product per cell and block.
        cells_and_blocks = num_cells * num_blocks
        aggregated = torch.bmm(
            weights[..., 1:].reshape(cells_and_blocks, 1, num_supports),
            support_cells.reshape(num_supports, cells_and_blocks, block_channels).transpose(0, 1),
        ).view(num_cells, channels)
        target_blocks = target.permute(0, 2, 3, 1).reshape(num_cells, num_blocks, block_channels)
        aggregated += (weights[..., :1] * target_blocks).flatten(1)
        return aggregated.view(num_rois, roi_h, roi_w, channels).permute(0, 3, 1, 2)

    @torch.no_grad()
    def embed_pooled(
        self, target_map: torch.Tensor, sampling: RoIAlignSampling, roi_size: Tuple[int, int]
    ) -> torch.Tensor:
        """
        ``self.embed`` of RoI features pooled from ``target_map`` (``[C, H, W]``) by ROIAlign
        (``sampling``, :func:`roi_align_sampling` of their boxes), ``[R, C, h, w]``, without
        pooling or convolving the RoIs: the embedding is linear, so at cell ``m`` it is

            psi(X)(m) = b + sum_d W_d X(m + d) = b + sum_d P[m + d] (W_d F)^T

        over the 3x3 taps ``d`` whose neighbour ``m + d`` is in the RoI's grid (the conv's zero
        padding), ``P[m + d]`` the sampling weights of that neighbour. The 9 tap products
        ``W_d F`` (``9 C^2 H W`` multiply-adds, once per map) serve every RoI, which then costs
        one sparse product (9 times a cell's sampled locations, about 50 per cell) instead of a
        ``9 C^2`` conv per cell: cheaper when the RoIs have several times more cells than the
        map has locations (``R h w >> H W``; 14700 against 2394 at the paper's scale). Equal to
        the conv of the pooled RoIs up to float rounding. Float32 (float64 for float64 maps),
        no gradient; for :meth:`forward`'s ``target_embedding``.
        """
        roi_h, roi_w = roi_size
        num_cells = len(sampling.offsets) - 1
        if self.embed is None:
            raise ValueError("embed_pooled needs an embedding (num_blocks > 0)")
        if (
            target_map.dim() != 3
            or target_map.shape[0] != self.channels
            or tuple(target_map.shape[1:]) != tuple(sampling.map_size)
        ):
            raise ValueError(
                f"target_map must be [{self.channels}, {sampling.map_size[0]}, {sampling.map_size[1]}] "
                f"(channels, the sampling's map size), got shape {tuple(target_map.shape)}"
            )
        if num_cells % (roi_h * roi_w) != 0:
            raise ValueError(f"sampling has {num_cells} cells, not a whole number of {roi_h}x{roi_w} RoIs")
        dtype = torch.promote_types(_accumulate_dtype(target_map.dtype), self.embed.weight.dtype)
        with torch.autocast(target_map.device.type, enabled=False):
            weight = self._dense_embed_weight().to(dtype)
            taps = weight.permute(2, 3, 0, 1).reshape(9 * self.channels, self.channels)  # [(tap, out), in]
            # Row location * 9 + tap holds W_tap F at that location: [H*W*9, C].
            tap_products = torch.mm(target_map.to(dtype).flatten(1).t(), taps.t()).view(-1, self.channels)
            locations, weights, offsets = _neighbour_bags(sampling, roi_h, roi_w)
            embedding = F.embedding_bag(
                locations,
                tap_products,
                offsets,
                mode="sum",
                per_sample_weights=weights.to(dtype),
                include_last_offset=True,
            )
            embedding += self.embed.bias.to(dtype)
        return embedding.view(-1, roi_h, roi_w, self.channels).permute(0, 3, 1, 2)

    def _dense_embed_weight(self) -> torch.Tensor:
        """The embedding's weight as ``[C, C, 3, 3]`` (block diagonal for "grouped")."""
        weight = self.embed.weight
        if self.embed.groups == 1:
            return weight
        dense = weight.new_zeros(self.channels, self.channels, 3, 3)
        group = self.channels // self.embed.groups
        for n in range(self.embed.groups):
            dense[n * group : (n + 1) * group, n * group : (n + 1) * group] = weight[n * group : (n + 1) * group]
        return dense

    def _split_blocks(self, feats: torch.Tensor) -> torch.Tensor:
        """``[..., C, h, w] -> [..., N, C/N, h, w]`` (Eq. 5)."""
        return feats.unflatten(-3, (self.num_blocks, self.channels // self.num_blocks))

    def _attention_logits(self, embedding: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
        """Per block and cell: scaled dot product of the embeddings (Eq. 6), ``[..., N, 1, h, w]``,
        in at least float32."""
        accumulate_dtype = _accumulate_dtype(embedding.dtype)
        products = self._split_blocks(embedding.to(accumulate_dtype)) * self._split_blocks(
            target_embedding.to(accumulate_dtype)
        )
        return products.sum(dim=-3, keepdim=True) / math.sqrt(self.channels // self.num_blocks)

    def _check_target(self, target_roi_feats: torch.Tensor) -> None:
        if target_roi_feats.dim() != 4 or target_roi_feats.shape[1] != self.channels:
            raise ValueError(
                f"target_roi_feats must be [R, {self.channels}, h, w], got shape {tuple(target_roi_feats.shape)}"
            )


def _neighbour_bags(sampling: RoIAlignSampling, roi_h: int, roi_w: int):
    """
    For every cell ``m`` (in (RoI, y, x) order) the bag of :meth:`TemporalAttentionalAggregation.embed_pooled`:
    the sampled locations of each 3x3 neighbour ``m + d`` inside the RoI's grid, as rows
    ``location * 9 + d`` of the tap-product table, with their weights. Returns CSR
    ``(locations, weights, offsets)``.
    """
    device = sampling.offsets.device
    num_cells = len(sampling.offsets) - 1
    counts = sampling.offsets.diff()
    cell = torch.arange(num_cells, device=device)
    roi, y, x = cell // (roi_h * roi_w), cell // roi_w % roi_h, cell % roi_w
    taps = torch.arange(9, device=device)
    neighbour_y, neighbour_x = y[:, None] + taps // 3 - 1, x[:, None] + taps % 3 - 1  # [cells, 9]
    inside = (neighbour_y >= 0) & (neighbour_y < roi_h) & (neighbour_x >= 0) & (neighbour_x < roi_w)
    pair_cell, pair_tap = inside.nonzero(as_tuple=True)  # ordered by cell, then tap
    pair_row = (roi[pair_cell] * roi_h + neighbour_y[pair_cell, pair_tap]) * roi_w + neighbour_x[pair_cell, pair_tap]
    lengths = counts[pair_row]
    # Entry e of pair q is entry sampling.offsets[row_q] + (e - start_q) of the sampling.
    starts = torch.cumsum(lengths, dim=0) - lengths
    entries = torch.repeat_interleave(sampling.offsets[pair_row] - starts, lengths)
    entries += torch.arange(len(entries), device=device)
    locations = sampling.locations[entries] * 9 + torch.repeat_interleave(pair_tap, lengths)
    per_cell = torch.zeros(num_cells, dtype=torch.int64, device=device).index_add_(0, pair_cell, lengths)
    offsets = torch.zeros(num_cells + 1, dtype=torch.int64, device=device)
    torch.cumsum(per_cell, dim=0, out=offsets[1:])
    return locations, sampling.weights[entries], offsets


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (autocast), the dtype itself for float32/float64."""
    return torch.promote_types(dtype, torch.float32)
