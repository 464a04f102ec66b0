"""ROIAlign as a sparse matrix: the sampling weights of torchvision's ``roi_align``."""

from typing import NamedTuple, Tuple

import torch

__all__ = ["RoIAlignSampling", "roi_align_sampling"]


class RoIAlignSampling(NamedTuple):
    """
    ROIAlign of one feature map as a sparse ``[R*h*w, H*W]`` matrix ``P`` in CSR form: the
    pooled feature of RoI cell ``i`` (cells in (RoI, y, x) order) is
    ``sum_j weights[j] * F[:, locations[j]]`` over ``offsets[i] <= j < offsets[i + 1]``, with
    ``F`` the ``[C, H*W]`` flattened map. A cell whose samples all fall outside the map has no
    entries. Locations of one cell are distinct; every weight is non-zero.
    """

    locations: torch.Tensor  # [nnz] int64, flat map locations y * W + x
    weights: torch.Tensor  # [nnz]
    offsets: torch.Tensor  # [R*h*w + 1] int64, row pointers
    map_size: Tuple[int, int]  # (H, W)

    def to_dense(self) -> torch.Tensor:
        """``P`` as a dense ``[R*h*w, H*W]`` tensor (for tests and small maps)."""
        rows = torch.repeat_interleave(
            torch.arange(len(self.offsets) - 1, device=self.offsets.device), self.offsets.diff()
        )
        dense = self.weights.new_zeros(len(self.offsets) - 1, self.map_size[0] * self.map_size[1])
        return dense.index_put_((rows, self.locations), self.weights, accumulate=True)

    def rows(self, start: int, stop: int) -> "RoIAlignSampling":
        """The cells ``start:stop`` (a contiguous slice of rows)."""
        first, last = self.offsets[start].item(), self.offsets[stop].item()
        return RoIAlignSampling(
            self.locations[first:last], self.weights[first:last], self.offsets[start : stop + 1] - first, self.map_size
        )


def roi_align_sampling(
    boxes: torch.Tensor,
    map_size: Tuple[int, int],
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> RoIAlignSampling:
    """
    The matrix ``P`` of ``torchvision.ops.roi_align(F[None], [boxes], output_size, spatial_scale,
    sampling_ratio, aligned)``, which is linear in the map ``F``: ``P @ F.flatten(1).T`` equals
    that call's ``[R, C, h, w]`` output (cells flattened, channels last) up to float rounding.

    torchvision's definition, per RoI: box corners are scaled by ``spatial_scale`` and shifted by
    -0.5 when ``aligned``; when not aligned, the box's width and height are at least 1. Each of
    the ``h x w`` bins averages a ``gh x gw`` grid of sample points at the centres of equal
    sub-bins, ``gh = sampling_ratio``, or ``ceil(roi_height / h)`` when ``sampling_ratio`` is 0
    (no samples, output 0, when that is 0). A sample at ``(y, x)`` contributes nothing when
    ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` (or a coordinate is NaN); otherwise
    coordinates <= 0 are clamped to 0 and the sample is the bilinear interpolation of its 4
    neighbours, a coordinate at or past ``H - 1`` (``W - 1``) taking row ``H - 1`` (column
    ``W - 1``) with full weight.

    All of this factorises by axis: a bin's weight at ``(y, x)`` is ``a(y) * b(x)``, ``a`` the
    average over the bin's ``gh`` sample rows of their two interpolation taps (likewise ``b``),
    which is how ``P`` is built. Sample coordinates are computed with torchvision's arithmetic,
    in ``boxes.dtype`` (use the map's dtype, as ``roi_align`` does; float32 for half maps,
    as under autocast).

    Args:
        boxes: ``[R, 4]`` boxes ``(x0, y0, x1, y1)`` in image coordinates (before ``spatial_scale``).
        map_size: ``(H, W)`` of the feature map.
        output_size: ``(h, w)`` bins per RoI.
        spatial_scale: map coordinates per image coordinate (1 / stride).
        sampling_ratio: sample points per bin and axis; 0: adaptive, as above.
        aligned: ROIAlignV2's half-pixel shift (Detectron2 "ROIAlignV2": True, "ROIAlign": False).
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [R, 4] (x0, y0, x1, y1), got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"boxes must be floating point, got {boxes.dtype}")
    height, width = map_size
    pooled_h, pooled_w = output_size
    if min(height, width, pooled_h, pooled_w) < 1:
        raise ValueError(f"map_size {tuple(map_size)} and output_size {tuple(output_size)} must be positive")
    if sampling_ratio < 0:
        raise ValueError(f"sampling_ratio must be >= 0 (0: adaptive), got {sampling_ratio}")
    scale = torch.tensor(spatial_scale, dtype=boxes.dtype)
    corners = boxes * scale.to(boxes.device) - (0.5 if aligned else 0.0)
    rows_start, rows, rows_weights = _axis_taps(corners[:, 1], corners[:, 3], pooled_h, height, sampling_ratio, aligned)
    cols_start, cols, cols_weights = _axis_taps(corners[:, 0], corners[:, 2], pooled_w, width, sampling_ratio, aligned)
    # Outer products of the row and column windows: [R, h, w, Ly, Lx].
    weights = rows_weights[:, :, None, :, None] * cols_weights[:, None, :, None, :]
    row_locations = (rows_start[:, :, None] + rows) * width  # [R, h, Ly]
    col_locations = cols_start[:, :, None] + cols  # [R, w, Lx]
    locations = row_locations[:, :, None, :, None] + col_locations[:, None, :, None, :]
    nonzero = weights != 0
    counts = nonzero.flatten(3).sum(dim=3).flatten()
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64, device=boxes.device)
    torch.cumsum(counts, dim=0, out=offsets[1:])
    entries = nonzero.flatten().nonzero().squeeze(1)  # row-major: grouped by cell
    return RoIAlignSampling(locations.flatten()[entries], weights.flatten()[entries], offsets, (height, width))


def _axis_taps(
    start: torch.Tensor, end: torch.Tensor, num_bins: int, size: int, sampling_ratio: int, aligned: bool
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    The interpolation taps of every bin along one axis. Returns ``(first, taps, weights)``:
    bin ``b`` of RoI ``r`` weighs map row (or column) ``first[r, b] + taps[i]`` by
    ``weights[r, b, i]`` (``[R, num_bins]``, ``[L]``, ``[R, num_bins, L]``; ``L`` the widest
    window; the average over the bin's samples, so a bin's 2-D weights are products).
    """
    extent = end - start
    if not aligned:
        extent = extent.clamp_min(1.0)
    bin_size = extent / num_bins
    if sampling_ratio > 0:
        grid = torch.full_like(extent, sampling_ratio)
    else:
        grid = torch.ceil(extent / num_bins)
    max_grid = max(int(grid.max().item()) if len(grid) else 1, 1)
    grid = grid[:, None, None]
    bins = torch.arange(num_bins, dtype=start.dtype, device=start.device)[None, :, None]
    samples = torch.arange(max_grid, dtype=start.dtype, device=start.device)[None, None, :]
    safe_grid = grid.clamp_min(1.0)  # grid 0 has no samples (masked below); avoids 0 / 0
    # torchvision's order of operations, so that coordinates agree to the last bit.
    position = (start[:, None, None] + bins * bin_size[:, None, None]) + (samples + 0.5) * bin_size[
        :, None, None
    ] / safe_grid
    used = (samples < grid) & (position >= -1.0) & (position <= size)  # False for NaN
    position = position.clamp_min(0.0)
    low = position.to(torch.int64).clamp_max(size - 1)  # truncation, as (int) in C++
    at_end = position.to(torch.int64) >= size - 1
    frac = torch.where(at_end, torch.zeros_like(position), position - low)
    high = torch.where(at_end, low, low + 1)
    weight_low = torch.where(used, (1.0 - frac) / safe_grid, torch.zeros_like(position))
    weight_high = torch.where(used, frac / safe_grid, torch.zeros_like(position))
    # Sum the samples' taps into one window per bin, starting at the bin's lowest tap.
    taps = torch.stack([low, high], dim=3).flatten(2)  # [R, bins, 2 * grid]
    tap_weights = torch.stack([weight_low, weight_high], dim=3).flatten(2)
    large = torch.iinfo(torch.int64).max
    first = torch.where(tap_weights != 0, taps, large).amin(dim=2)
    first = torch.where(first == large, 0, first)
    offsets = (taps - first[:, :, None]).clamp_min(0)
    offsets = torch.where(tap_weights != 0, offsets, 0)
    window = int(offsets.max().item()) + 1 if offsets.numel() else 1
    weights = tap_weights.new_zeros(*first.shape, window).scatter_add_(2, offsets, tap_weights)
    return first, torch.arange(window, device=start.device), weights
