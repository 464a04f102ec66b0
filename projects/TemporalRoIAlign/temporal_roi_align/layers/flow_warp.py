"""Flow-guided warping of feature maps (DFF, Zhu et al., CVPR 2017, Eq. 1; FGFA, ICCV 2017, Eq. 1)."""

from typing import Tuple

import torch
import torch.nn.functional as F

from ..config import CHOICES

__all__ = ["flow_warp", "resize_flow", "FLOW_WARP_CONVENTIONS"]

# How a sampling position x (in pixels, 0 .. W-1) becomes grid_sample's coordinate in [-1, 1]
# (align_corners=True: -1 and 1 are the centres of the first and last pixels):
#   "toolbox": 2 * x / W - 1, as the public toolbox's flow_warp_feats (mmtracking 0.14) does, so
#       its FGFA / DFF checkpoints were trained with it. A zero flow then samples x * (W - 1) / W,
#       not x: up to one pixel towards the top-left corner at the bottom-right.
#   "exact": 2 * x / (W - 1) - 1, as the original MXNet code's GridGenerator(transform_type="warp")
#       does: a zero flow is the identity.
FLOW_WARP_CONVENTIONS = CHOICES["MODEL.FLOW_NET.WARP_CONVENTION"]


def resize_flow(flow: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """
    A flow at image resolution -> the flow at a feature map's resolution ``size = (H, W)``, as
    the toolbox does before warping: one scale ``s = W / flow width`` for both axes, bilinear
    ``F.interpolate(scale_factor=s, align_corners=False)``, displacements multiplied by ``s``.

    Args:
        flow: ``[N, 2, h, w]`` displacements in pixels (channel 0 along the width, 1 along the height).
        size: ``(H, W)`` of the feature map; ``floor(h * s)`` must equal ``H`` (it does when the
            image is padded to a multiple of the feature stride).

    Returns:
        ``[N, 2, H, W]`` displacements in feature-map pixels.
    """
    _check_flow(flow, "resize_flow: flow")
    height, width = size
    scale = float(width) / flow.shape[-1]
    resized = F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False)
    if tuple(resized.shape[-2:]) != (height, width):
        raise ValueError(
            f"resize_flow: a {flow.shape[-2]}x{flow.shape[-1]} flow scaled by {width}/{flow.shape[-1]} "
            f"(the widths' ratio) is {resized.shape[-2]}x{resized.shape[-1]}, not the features' "
            f"{height}x{width}: the image and the feature map must have the same aspect ratio"
        )
    return resized * scale


def flow_warp(features: torch.Tensor, flow: torch.Tensor, convention: str = "toolbox") -> torch.Tensor:
    """
    Warps ``features`` by ``flow``: output location ``p`` takes the features at ``p + flow(p)``,
    sampled bilinearly; positions outside the map take the nearest border position
    (``grid_sample(padding_mode="border", align_corners=True)``). Differentiable in both inputs.

    Args:
        features: ``[N, C, H, W]`` (e.g. a support frame's features, or the key frame's in DFF).
        flow: ``[N, 2, H, W]`` displacements in feature-map pixels, channel 0 along the width
            and 1 along the height (:func:`resize_flow` of the flow network's output).
        convention: how positions are normalised for ``grid_sample``, one of
            :data:`FLOW_WARP_CONVENTIONS`; "toolbox" (the default) for the toolbox's checkpoints.

    Returns:
        ``[N, C, H, W]`` warped features, in the dtype of ``features``.
    """
    if convention not in FLOW_WARP_CONVENTIONS:
        raise ValueError(f"flow_warp: convention must be one of {FLOW_WARP_CONVENTIONS}, got {convention!r}")
    if features.dim() != 4:
        raise ValueError(f"flow_warp: features must be [N, C, H, W], got shape {tuple(features.shape)}")
    _check_flow(flow, "flow_warp: flow")
    n, _, height, width = features.shape
    if flow.shape[0] != n or flow.shape[-2:] != features.shape[-2:]:
        raise ValueError(
            f"flow_warp: flow must be [{n}, 2, {height}, {width}] for features of shape "
            f"{tuple(features.shape)}, got {tuple(flow.shape)} (resize_flow brings a flow to the features' size)"
        )
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device).view(height, 1)
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, width)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    if convention == "toolbox":
        x, y = x / width * 2 - 1, y / height * 2 - 1
    else:
        x, y = x / max(width - 1, 1) * 2 - 1, y / max(height - 1, 1) * 2 - 1
    grid = torch.stack((x, y), dim=-1).to(features.dtype)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _check_flow(flow: torch.Tensor, name: str) -> None:
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2, H, W], got shape {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {flow.dtype}")
