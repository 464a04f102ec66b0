"""The adaptive weights of Flow-Guided Feature Aggregation (FGFA, Zhu et al., ICCV 2017, Eq. 2-3)."""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from torch import nn

__all__ = ["FgfaAggregator"]


class FgfaAggregator(nn.Module):
    """
    Per-location weighted sum of feature maps (the target's own and the supports' warped to the
    target frame), each location's weights given by the softmax over the frames of the cosine
    similarity between the frame's embedding and the target's there (Eq. 2-3):
    ``out(p) = sum_j w_j(p) f_j(p)``, ``w_j(p) = softmax_j(cos(e(f_j)(p), e(f_target)(p)))``.

    The embedding ``e`` is, as in the public toolbox's EmbedAggregator (its FGFA configs:
    one conv), ``num_convs`` convs ``channels -> channels`` with bias, ReLU between them and none
    after the last; the paper's is a three-layer network.
    """

    @configurable
    def __init__(self, *, channels: int, num_convs: int = 1, kernel_size: int = 3):
        """
        Args:
            channels: C, channels of the aggregated feature maps and of the embedding.
            num_convs: convs of the embedding network (at least 1).
            kernel_size: their (odd) kernel size; zero padding keeps the map's size.
        """
        super().__init__()
        if channels < 1:
            raise ValueError(f"FgfaAggregator: channels must be positive, got {channels}")
        if num_convs < 1:
            raise ValueError(f"FgfaAggregator: num_convs must be at least 1, got {num_convs}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FgfaAggregator: kernel_size must be odd and positive, got {kernel_size}")
        self.embed_convs = nn.ModuleList(
            Conv2d(
                channels,
                channels,
                kernel_size,
                padding=(kernel_size - 1) // 2,
                activation=F.relu if i < num_convs - 1 else None,
            )
            for i in range(num_convs)
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            "channels": input_shape.channels,
            "num_convs": cfg.MODEL.FGFA.NUM_EMBED_CONVS,
            "kernel_size": cfg.MODEL.FGFA.EMBED_KERNEL_SIZE,
        }

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """``[T, C, H, W]`` -> unit-length embeddings along C (a zero vector stays zero)."""
        for conv in self.embed_convs:
            features = conv(features)
        return features / features.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)

    def weights(self, target: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """
        Args:
            target: ``[1, C, H, W]`` the target frame's features.
            frames: ``[T, C, H, W]`` the feature maps to aggregate (T >= 1).

        Returns:
            ``[T, 1, H, W]`` weights, positive, summing to 1 over T at every location.
        """
        self._check(target, frames)
        similarity = (self.embed(frames) * self.embed(target)).sum(dim=1, keepdim=True)
        return similarity.softmax(dim=0)

    def forward(self, target: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """
        Args:
            target: ``[1, C, H, W]`` the target frame's features.
            frames: ``[T, C, H, W]``: at test the toolbox aggregates the target itself and its
                warped supports; in training, the warped supports only.

        Returns:
            ``[1, C, H, W]`` aggregated features.
        """
        return (self.weights(target, frames) * frames).sum(dim=0, keepdim=True)

    @staticmethod
    def _check(target: torch.Tensor, frames: torch.Tensor) -> None:
        if target.dim() != 4 or target.shape[0] != 1:
            raise ValueError(f"FgfaAggregator: target must be [1, C, H, W], got shape {tuple(target.shape)}")
        if frames.dim() != 4 or frames.shape[0] < 1 or frames.shape[1:] != target.shape[1:]:
            raise ValueError(
                f"FgfaAggregator: frames must be [T >= 1, {', '.join(map(str, target.shape[1:]))}] like the "
                f"target, got shape {tuple(frames.shape)}"
            )
