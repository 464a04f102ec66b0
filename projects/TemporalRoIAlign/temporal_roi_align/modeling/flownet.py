"""FlowNetSimple (FlowNetS, Dosovitskiy et al., ICCV 2015), the flow network of DFF and FGFA
(Zhu et al., CVPR / ICCV 2017), as the public toolbox (mmtracking 0.14) defines and runs it."""

from functools import partial
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn

__all__ = ["FlowNetSimple"]

_leaky_relu = partial(F.leaky_relu, negative_slope=0.1)

# Encoder: (name, in channels, out channels, kernel, stride); zero padding (kernel - 1) / 2, bias,
# LeakyReLU(0.1). Level k (after conv<k>, or conv<k>_1 when there is one) has stride 2^k in the
# network's input.
_ENCODER = (
    ("conv1", 6, 64, 7, 2),
    ("conv2", 64, 128, 5, 2),
    ("conv3", 128, 256, 5, 2),
    ("conv3_1", 256, 256, 3, 1),
    ("conv4", 256, 512, 3, 2),
    ("conv4_1", 512, 512, 3, 1),
    ("conv5", 512, 512, 3, 2),
    ("conv5_1", 512, 512, 3, 1),
    ("conv6", 512, 1024, 3, 2),
    ("conv6_1", 1024, 1024, 3, 1),
)
_LEVEL_OUTPUTS = {"conv2": 2, "conv3_1": 3, "conv4_1": 4, "conv5_1": 5, "conv6_1": 6}
# Refinement, from level 6 to level 3: output channels of deconv<k-1> (4x4, stride 2, no bias,
# LeakyReLU(0.1)), which upsamples level k's input to level k-1.
_DECONV_CHANNELS = {6: 512, 5: 256, 4: 128, 3: 64}
_SUPPORTED_FORMATS = ("RGB", "BGR")


class FlowNetSimple(nn.Module):
    """
    Optical flow from a target image to a reference image: ``flow[:, :, y, x]`` is the
    displacement ``(dx, dy)``, in pixels of the detector's input, from target pixel ``(x, y)`` to
    the matching point of the reference (what :func:`~temporal_roi_align.layers.flow_warp` uses).

    Preprocessing (the toolbox's): the detector's normalised images are un-normalised to [0, 255]
    RGB, then ``pixels / flow_pixel_std - flow_pixel_mean`` (mean subtracted after the division);
    the padding beyond each image's size is set to 0; the 6-channel pair (target first) is
    resized by ``input_scale`` (bilinear, ``align_corners=False``).

    Network: the FlowNetS encoder (conv1 .. conv6_1) and refinement: from level 6 down to level 2,
    ``predict_flow<k>`` predicts a flow from level k's input, ``upsample_flow<k>to<k-1>`` and
    ``deconv<k-1>`` upsample the flow and the input, cropped to level k-1, which is concatenated
    with them (encoder level, deconvolution, flow) as level k-1's input. ``predict_flow2`` gives the
    flow at stride 4 of the network's input; it is resized by ``4 / input_scale`` (bilinear,
    ``align_corners=False``) to about the detector's image size, and multiplied by
    ``4 / input_scale`` and by ``flow_scale``.

    Output size: ``floor(4 / input_scale * ceil(floor(H * input_scale) / 4))``, and likewise for
    the width; ``H`` itself when ``H`` is a multiple of ``8`` (``input_scale=0.5``).

    ``width_divisor`` > 1 divides the channels of every layer (not the 6 input channels nor the
    2 flow channels): a smaller network of the same shape, for the toy configs that train on the
    CPU (the published network has 38.7M parameters; divisor 8: 0.6M). Checkpoints need 1.
    """

    @configurable
    def __init__(
        self,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str = "RGB",
        input_scale: float = 0.5,
        flow_pixel_mean: Sequence[float] = (0.411, 0.432, 0.450),
        flow_pixel_std: Sequence[float] = (255.0, 255.0, 255.0),
        flow_scale: float = 5.0,
        width_divisor: int = 1,
    ):
        """
        Args:
            pixel_mean, pixel_std: the detector's image normalisation, in ``input_format``'s
                channel order (undone before the flow network's own).
            input_format: "RGB" or "BGR", the detector's channel order; the network sees RGB.
            input_scale: resize factor of the images before the network (the toolbox's
                ``img_scale_factor``).
            flow_pixel_mean, flow_pixel_std: the network's normalisation, RGB order, applied as
                ``pixels / std - mean``.
            flow_scale: multiplies the predicted flow (the toolbox's ``flow_scale_factor``).
            width_divisor: divides every layer's channels (class docstring); 1 for the published network.
        """
        super().__init__()
        if input_format not in _SUPPORTED_FORMATS:
            raise ValueError(f"FlowNetSimple: input_format must be one of {_SUPPORTED_FORMATS}, got {input_format!r}")
        if width_divisor < 1 or any(out % width_divisor for _, _, out, _, _ in _ENCODER):
            raise ValueError(f"FlowNetSimple: width_divisor must divide 64 (the narrowest layer), got {width_divisor}")
        if not input_scale > 0:
            raise ValueError(f"FlowNetSimple: input_scale must be positive, got {input_scale}")
        for name, values in (
            ("pixel_mean", pixel_mean),
            ("pixel_std", pixel_std),
            ("flow_pixel_mean", flow_pixel_mean),
            ("flow_pixel_std", flow_pixel_std),
        ):
            if len(values) != 3:
                raise ValueError(f"FlowNetSimple: {name} must have 3 values (one per channel), got {list(values)}")
        self.input_format = input_format
        self.input_scale = input_scale
        self.flow_scale = flow_scale
        # Channels of the target-reference pair, in RGB order.
        self._rgb_channels = [2, 1, 0, 5, 4, 3] if input_format == "BGR" else None
        rgb = [2, 1, 0] if input_format == "BGR" else [0, 1, 2]
        for name, values in (
            ("pixel_mean", [pixel_mean[i] for i in rgb]),
            ("pixel_std", [pixel_std[i] for i in rgb]),
            ("flow_pixel_mean", flow_pixel_mean),
            ("flow_pixel_std", flow_pixel_std),
        ):
            pair = torch.tensor([float(v) for v in values]).repeat(2).view(1, 6, 1, 1)
            self.register_buffer(name, pair, persistent=False)

        def width(channels: int) -> int:
            return channels // width_divisor

        for name, in_channels, out_channels, kernel, stride in _ENCODER:
            in_channels = in_channels if name == "conv1" else width(in_channels)
            conv = Conv2d(in_channels, width(out_channels), kernel, stride, (kernel - 1) // 2, activation=_leaky_relu)
            self.add_module(name, conv)
        level_channels = {_LEVEL_OUTPUTS[name]: width(out) for name, _, out, _, _ in _ENCODER if name in _LEVEL_OUTPUTS}
        in_channels = level_channels[6]
        for level in range(6, 2, -1):
            deconv_channels = width(_DECONV_CHANNELS[level])
            self.add_module(f"predict_flow{level}", nn.Conv2d(in_channels, 2, 3, padding=1, bias=False))
            self.add_module(
                f"upsample_flow{level}to{level - 1}", nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False)
            )
            self.add_module(
                f"deconv{level - 1}",
                nn.ConvTranspose2d(in_channels, deconv_channels, 4, stride=2, padding=1, bias=False),
            )
            in_channels = level_channels[level - 1] + deconv_channels + 2
        self.predict_flow2 = nn.Conv2d(in_channels, 2, 3, padding=1, bias=False)

    @classmethod
    def from_config(cls, cfg):
        return {
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "input_scale": cfg.MODEL.FLOW_NET.INPUT_SCALE,
            "flow_pixel_mean": cfg.MODEL.FLOW_NET.PIXEL_MEAN,
            "flow_pixel_std": cfg.MODEL.FLOW_NET.PIXEL_STD,
            "flow_scale": cfg.MODEL.FLOW_NET.FLOW_SCALE,
            "width_divisor": cfg.MODEL.FLOW_NET.WIDTH_DIVISOR,
        }

    def forward(
        self,
        target_images: torch.Tensor,
        reference_images: torch.Tensor,
        image_sizes: Sequence[Tuple[int, int]],
    ) -> torch.Tensor:
        """
        Args:
            target_images: ``[N, 3, H, W]`` or ``[1, 3, H, W]`` (one target for all references),
                normalised and padded as the detector's input (``ImageList.tensor``).
            reference_images: ``[N, 3, H, W]``, likewise.
            image_sizes: the ``(height, width)`` of each pair's image before padding, N of them
                or one for all (the toolbox uses the target's for all pairs).

        Returns:
            ``[N, 2, H', W']`` flow from each target to its reference (class docstring for H', W').
        """
        x = self._prepare(target_images, reference_images, image_sizes)
        levels: Dict[int, torch.Tensor] = {}
        for name, *_ in _ENCODER:
            x = getattr(self, name)(x)
            if name in _LEVEL_OUTPUTS:
                levels[_LEVEL_OUTPUTS[name]] = x
        x = levels[6]
        for level in range(6, 2, -1):
            skip = levels[level - 1]
            flow = getattr(self, f"predict_flow{level}")(x)
            flow = _crop_like(getattr(self, f"upsample_flow{level}to{level - 1}")(flow), skip)
            deconv = _crop_like(_leaky_relu(getattr(self, f"deconv{level - 1}")(x)), skip)
            x = torch.cat((skip, deconv, flow), dim=1)
        flow = self.predict_flow2(x)
        upsample = 4 / self.input_scale
        flow = F.interpolate(flow, scale_factor=upsample, mode="bilinear", align_corners=False)
        return flow * upsample * self.flow_scale

    def _prepare(self, target_images, reference_images, image_sizes) -> torch.Tensor:
        """The network's input: ``[N, 6, h, w]``, target channels first (class docstring)."""
        if reference_images.dim() != 4 or reference_images.shape[1] != 3:
            raise ValueError(
                f"FlowNetSimple: reference_images must be [N, 3, H, W], got shape {tuple(reference_images.shape)}"
            )
        n, _, height, width = reference_images.shape
        same_images = target_images.dim() == 4 and target_images.shape[1:] == reference_images.shape[1:]
        if not same_images or target_images.shape[0] not in (1, n):
            raise ValueError(
                f"FlowNetSimple: target_images must be [{n} or 1, 3, {height}, {width}] like reference_images, "
                f"got shape {tuple(target_images.shape)}"
            )
        if len(image_sizes) not in (1, n):
            raise ValueError(f"FlowNetSimple: {len(image_sizes)} image_sizes for {n} image pairs (need {n} or 1)")
        if int(height * self.input_scale) < 1 or int(width * self.input_scale) < 1:
            raise ValueError(
                f"FlowNetSimple: {height}x{width} images are empty once resized by input_scale={self.input_scale}"
            )
        x = torch.cat((target_images.expand(n, -1, -1, -1), reference_images), dim=1)
        if self._rgb_channels is not None:
            x = x[:, self._rgb_channels]
        dtype = x.dtype
        x = x * self.pixel_std.to(dtype) + self.pixel_mean.to(dtype)
        x = x / self.flow_pixel_std.to(dtype) - self.flow_pixel_mean.to(dtype)
        sizes = torch.as_tensor([list(s) for s in image_sizes], device=x.device).view(-1, 2, 1, 1)
        inside = (torch.arange(height, device=x.device).view(1, height, 1) < sizes[:, 0]) & (
            torch.arange(width, device=x.device).view(1, 1, width) < sizes[:, 1]
        )
        x = torch.where(inside.unsqueeze(1), x, x.new_zeros(()))
        return F.interpolate(x, scale_factor=self.input_scale, mode="bilinear", align_corners=False)


def _crop_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The top-left part of ``x`` with the height and width of ``like``."""
    return x[:, :, : like.shape[2], : like.shape[3]]
