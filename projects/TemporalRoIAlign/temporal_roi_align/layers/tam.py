"""Temporal Adaptive Module (TAM; Liu et al., "TAM: Temporal Adaptive Module for Video Recognition", ICCV 2021)."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TemporalAdaptiveModule"]


class TemporalAdaptiveModule(nn.Module):
    """
    Video-adaptive temporal convolution of groups of ``T`` frames (the published TAM).

    With ``s = mean over H, W of X``, ``[N, C, T]`` (one row of T values per group and channel):

    * local branch: ``V = sigmoid(Conv1d_1x1(ReLU(BN(Conv1d_k(s)))))``, ``[N, C, T]`` (channels
      ``C -> C/beta -> C``, temporal kernel ``local_kernel_size`` with zero padding), a
      location-sensitive importance weight per channel and frame;
    * global branch: ``Theta = softmax_K(FC(ReLU(BN(FC(s)))))``, ``[N, C, K]`` (``T -> alpha*T -> K``,
      the same layers for every channel), a video-adaptive temporal kernel per channel;
    * output: ``Y[n, c, t] = sum_k Theta[n, c, k] * V[n, c, t'] * X[n, c, t']`` with
      ``t' = t + k - K // 2``, zero outside the group (a depthwise temporal convolution, stride 1,
      so the output has the input's shape).

    The layers, their order, ``bias=False`` and the defaults (alpha 2, beta 4, K 3, local kernel 3)
    are those of the authors' code (liu-zhy/temporal-adaptive-module, ``ops/temporal_module.py``)
    and of mmaction2's ``TAM``; their state-dict keys ``G.*`` / ``L.*`` are ``global_branch.*`` /
    ``local_branch.*`` here, same indices and shapes. Parameters use PyTorch's default init, as in both.

    Args:
        channels: C.
        num_frames: T, frames per group (the global branch's input size).
        kernel_size: K, length of the adaptive temporal kernel (odd).
        alpha: the global branch's hidden size is ``alpha * T``.
        beta: the local branch's hidden channels are ``C // beta``.
        local_kernel_size: temporal kernel of the local branch's first conv (odd).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        kernel_size: int = 3,
        alpha: int = 2,
        beta: int = 4,
        local_kernel_size: int = 3,
    ):
        super().__init__()
        for name, value in (("channels", channels), ("num_frames", num_frames), ("alpha", alpha), ("beta", beta)):
            if value < 1:
                raise ValueError(f"TemporalAdaptiveModule: {name} must be positive, got {value}")
        for name, value in (("kernel_size", kernel_size), ("local_kernel_size", local_kernel_size)):
            if value < 1 or value % 2 == 0:
                raise ValueError(f"TemporalAdaptiveModule: {name} must be odd and positive, got {value}")
        if channels < beta:
            raise ValueError(f"TemporalAdaptiveModule: channels ({channels}) must be >= beta ({beta})")
        self.channels = channels
        self.num_frames = num_frames
        self.kernel_size = kernel_size
        hidden_channels = channels // beta
        self.local_branch = nn.Sequential(
            nn.Conv1d(channels, hidden_channels, local_kernel_size, padding=local_kernel_size // 2, bias=False),
            nn.BatchNorm1d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden_channels, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.global_branch = nn.Sequential(
            nn.Linear(num_frames, alpha * num_frames, bias=False),
            nn.BatchNorm1d(alpha * num_frames),
            nn.ReLU(inplace=True),
            nn.Linear(alpha * num_frames, kernel_size, bias=False),
            nn.Softmax(dim=-1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[N*T, C, H, W]``: N groups of T frames, each group's frames consecutive and in
                temporal order (the layout of a frame batch through a 2-D backbone).

        Returns:
            ``[N*T, C, H, W]``, frame ``t`` of a group at the same position as in ``x``.
        """
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[0] % self.num_frames != 0:
            raise ValueError(
                f"TemporalAdaptiveModule: input must be [N*{self.num_frames}, {self.channels}, H, W] "
                f"(groups of {self.num_frames} frames), got shape {tuple(x.shape)}"
            )
        num_frames, kernel_size = self.num_frames, self.kernel_size
        frames = x.view(-1, num_frames, *x.shape[1:])  # [N, T, C, H, W]
        groups, channels = frames.shape[0], frames.shape[2]
        pooled = frames.mean(dim=(3, 4)).transpose(1, 2)  # [N, C, T]
        importance = self.local_branch(pooled)  # [N, C, T]
        kernel = self.global_branch(pooled.reshape(groups * channels, num_frames))
        kernel = kernel.view(groups, 1, channels, kernel_size, 1, 1)
        weighted = frames * importance.transpose(1, 2)[..., None, None]
        half = kernel_size // 2
        padded = F.pad(weighted, (0, 0, 0, 0, 0, 0, half, half))  # zero frames around each group
        out = kernel[:, :, :, 0] * padded[:, :num_frames]
        for k in range(1, kernel_size):
            out = out + kernel[:, :, :, k] * padded[:, k : k + num_frames]
        return out.view_as(x)
