"""Temporal Attentional Feature Aggregation (Temporal RoI Align, Gong et al., AAAI 2021, Eq. 5-8)."""

import math
from typing import Iterable

import torch
from torch import nn

__all__ = ["TemporalAttentionalAggregation"]


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
        if embed not in ("shared", "grouped"):
            raise ValueError(f'embed must be "shared" or "grouped", got {embed!r}')
        self.channels = channels
        self.num_blocks = num_blocks
        if num_blocks == 0:
            self.embed = None
        else:
            groups = 1 if embed == "shared" else num_blocks
            self.embed = nn.Conv2d(channels, channels, 3, padding=1, groups=groups)

    def forward(self, target_roi_feats: torch.Tensor, support_roi_feats: torch.Tensor) -> torch.Tensor:
        """
        Args:
            target_roi_feats: ``[R, C, h, w]``.
            support_roi_feats: ``[T, R, C, h, w]`` (T may be 0).

        Returns:
            ``[R, C, h, w]`` temporal RoI features, in the dtype of ``target_roi_feats``.
        """
        self._check_target(target_roi_feats)
        if support_roi_feats.dim() != 5 or support_roi_feats.shape[1:] != target_roi_feats.shape:
            raise ValueError(
                f"support_roi_feats must be [T, {', '.join(map(str, target_roi_feats.shape))}], "
                f"got shape {tuple(support_roi_feats.shape)}"
            )
        frames = torch.cat([target_roi_feats.unsqueeze(0), support_roi_feats.to(target_roi_feats.dtype)])
        accumulate_dtype = _accumulate_dtype(frames.dtype)
        if self.embed is None:
            return frames.to(accumulate_dtype).mean(dim=0).to(target_roi_feats.dtype)
        embeddings = self.embed(frames.flatten(0, 1)).view_as(frames)
        weights = self._attention_logits(embeddings, embeddings[0]).softmax(dim=0)  # Eq. 6-7
        aggregated = (weights * self._split_blocks(frames.to(accumulate_dtype))).sum(dim=0)  # Eq. 8
        return aggregated.flatten(1, 2).to(target_roi_feats.dtype)

    def forward_streaming(
        self, target_roi_feats: torch.Tensor, support_roi_feats: Iterable[torch.Tensor]
    ) -> torch.Tensor:
        """
        Same result as :meth:`forward`, with the supports given one at a time (an iterable of
        ``[R, C, h, w]`` tensors, e.g. a generator) and combined by an online softmax across
        frames, so memory does not grow with their number.
        """
        self._check_target(target_roi_feats)
        accumulate_dtype = _accumulate_dtype(target_roi_feats.dtype)
        if self.embed is None:
            total, num_frames = target_roi_feats.to(accumulate_dtype), 1
            for support in support_roi_feats:
                self._check_support(support, target_roi_feats)
                total, num_frames = total + support.to(accumulate_dtype), num_frames + 1
            return (total / num_frames).to(target_roi_feats.dtype)
        target_embedding = self.embed(target_roi_feats)
        # Running max logit, softmax denominator and weighted sum, rescaled when the max grows.
        max_logit = self._attention_logits(target_embedding, target_embedding)
        denominator = torch.ones_like(max_logit)
        weighted_sum = self._split_blocks(target_roi_feats.to(accumulate_dtype))
        for support in support_roi_feats:
            self._check_support(support, target_roi_feats)
            logit = self._attention_logits(self.embed(support.to(target_roi_feats.dtype)), target_embedding)
            new_max_logit = torch.maximum(max_logit, logit)
            rescale = torch.exp(max_logit - new_max_logit)
            weight = torch.exp(logit - new_max_logit)
            denominator = denominator * rescale + weight
            weighted_sum = weighted_sum * rescale + weight * self._split_blocks(support.to(accumulate_dtype))
            max_logit = new_max_logit
        return (weighted_sum / denominator).flatten(-4, -3).to(target_roi_feats.dtype)

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

    @staticmethod
    def _check_support(support: torch.Tensor, target_roi_feats: torch.Tensor) -> None:
        if support.shape != target_roi_feats.shape:
            raise ValueError(
                f"each support's RoI features must have the target's shape {tuple(target_roi_feats.shape)}, "
                f"got {tuple(support.shape)}"
            )


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (autocast), the dtype itself for float32/float64."""
    return torch.promote_types(dtype, torch.float32)
