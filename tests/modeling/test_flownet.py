"""FlowNetSimple: output sizes, preprocessing invariances, gradients through warping.
Its equivalence with the toolbox's network is in test_flow_rules.py."""

import math

import pytest
import torch
from detectron2.config import get_cfg

from temporal_roi_align.config import add_video_config
from temporal_roi_align.layers import flow_warp, resize_flow
from temporal_roi_align.modeling import FlowNetSimple

RGB_MEAN, RGB_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD).eval()


def normalised(pixels, mean=RGB_MEAN, std=RGB_STD):
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def random_images(n, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return normalised(torch.rand(n, 3, height, width, generator=generator) * 255)


def expected_size(size, input_scale):
    """floor(size * s) at the network's input, stride 4 at predict_flow2 (each stride-2 conv
    gives ceil(n / 2)), upsampled by 4 / s."""
    return math.floor(4 / input_scale * math.ceil(math.floor(size * input_scale) / 4))


@pytest.mark.parametrize("size", [(37, 53), (64, 80), (2, 2), (3, 5), (17, 130)])
def test_output_size(net, size):
    height, width = size
    with torch.no_grad():
        flow = net(random_images(1, *size), random_images(2, *size, seed=1), [size])
    assert flow.shape == (2, 2, expected_size(height, 0.5), expected_size(width, 0.5))
    assert torch.isfinite(flow).all()
    if height % 8 == 0 and width % 8 == 0:
        assert flow.shape[-2:] == size


def test_output_size_other_input_scale(net):
    full = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD, input_scale=1.0)
    with torch.no_grad():
        flow = full(random_images(1, 21, 30), random_images(1, 21, 30, seed=1), [(21, 30)])
    assert flow.shape == (1, 2, 24, 32)  # 4 * ceil(21 / 4), 4 * ceil(30 / 4)
    with torch.no_grad():
        empty = net(random_images(1, 16, 16), random_images(0, 16, 16), [(16, 16)])
    assert empty.shape == (0, 2, 16, 16)


def test_one_target_for_all_references(net):
    target, references = random_images(1, 24, 32), random_images(3, 24, 32, seed=1)
    with torch.no_grad():
        shared = net(target, references, [(24, 32)])
        repeated = net(target.expand(3, -1, -1, -1), references, [(24, 32)] * 3)
    torch.testing.assert_close(shared, repeated)


def test_padding_is_ignored(net):
    """Pixels beyond each pair's image size are set to 0 after the flow normalisation, whatever they were."""
    sizes = [(29, 37), (32, 40)]
    target, references = random_images(2, 32, 40), random_images(2, 32, 40, seed=1)
    other_target, other_references = target.clone(), references.clone()
    other_target[0, :, 29:], other_references[0, :, :, 37:] = 5.0, -3.0
    with torch.no_grad():
        flow = net(target, references, sizes)
        torch.testing.assert_close(net(other_target, other_references, sizes), flow)
        assert not torch.allclose(net(other_target, other_references, [(32, 40)]), flow)
        torch.testing.assert_close(net(target[:1], references[:1], sizes[:1]), flow[:1], rtol=1e-4, atol=1e-5)


def test_bgr_input_gives_the_rgb_flow(net):
    bgr_net = FlowNetSimple(pixel_mean=RGB_MEAN[::-1], pixel_std=RGB_STD[::-1], input_format="BGR")
    bgr_net.load_state_dict(net.state_dict())
    pixels = torch.rand(3, 3, 24, 40, generator=torch.Generator().manual_seed(3)) * 255
    rgb = normalised(pixels)
    bgr = normalised(pixels.flip(1), RGB_MEAN[::-1], RGB_STD[::-1])
    with torch.no_grad():
        torch.testing.assert_close(bgr_net.eval()(bgr[:1], bgr[1:], [(24, 40)]), net(rgb[:1], rgb[1:], [(24, 40)]))


def test_gradients_reach_the_flow_network_through_warping():
    torch.manual_seed(4)
    net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
    # The first conv and the coarsest flow prediction: the longest paths from the output
    # (the other weights' gradients would only cost time on the CPU).
    checked = {"conv1.weight", "conv1.bias", "predict_flow6.weight"}
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name in checked)
    features = torch.randn(2, 4, 2, 3, requires_grad=True)
    flow = net(random_images(1, 32, 48), random_images(2, 32, 48, seed=1), [(32, 48)])
    # Sampling positions mostly inside the 2x3 map: a flow of 16 image pixels is 1 feature cell.
    assert flow.abs().mean() < 16
    warped = flow_warp(features, resize_flow(flow, (2, 3)))
    (warped * torch.randn_like(warped)).sum().backward()
    assert features.grad.abs().sum() > 0
    for name, parameter in net.named_parameters():
        if name in checked:
            assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


def test_from_config():
    cfg = get_cfg()
    add_video_config(cfg)  # MODEL.FLOW_NET's defaults are the toolbox's
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = list(RGB_MEAN), list(RGB_STD)
    net = FlowNetSimple(cfg)
    assert (net.input_format, net.input_scale, net.flow_scale) == ("RGB", 0.5, 5.0)
    torch.testing.assert_close(net.pixel_mean.flatten(), torch.tensor(RGB_MEAN * 2))
    torch.testing.assert_close(net.flow_pixel_mean.flatten(), torch.tensor([0.411, 0.432, 0.450] * 2))
    torch.testing.assert_close(net.flow_pixel_std.flatten(), torch.tensor([255.0] * 6))
    assert not any("pixel" in key for key in net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == 38_675_536  # FlowNetS


def test_width_divisor_narrows_every_layer():
    net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
    narrow = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD, width_divisor=8)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    narrow_shapes = {k: v.shape for k, v in narrow.state_dict().items()}
    assert shapes.keys() == narrow_shapes.keys()

    def narrowed(size):
        """Channels / 8, except conv1's 6 input and the 2 flow channels; a refinement level's
        input (encoder + deconvolution channels, multiples of 64, + 2 flow channels) accordingly."""
        if size in (2, 6):
            return size
        return (size - 2) // 8 + 2 if size % 64 == 2 else size // 8

    for name, shape in shapes.items():
        expected = [narrowed(size) if i < 2 else size for i, size in enumerate(shape)]
        assert list(narrow_shapes[name]) == expected, name
    assert narrow_shapes["predict_flow2.weight"] == (2, 26, 3, 3)  # conv2 16 + deconv2 8 + flow 2 (194 at full width)
    with torch.no_grad():
        flow = narrow.eval()(random_images(1, 37, 53), random_images(2, 37, 53, seed=1), [(37, 53)])
    assert flow.shape == (2, 2, expected_size(37, 0.5), expected_size(53, 0.5)) and torch.isfinite(flow).all()
    for divisor in (0, 3, 128):
        with pytest.raises(ValueError, match="width_divisor must divide 64"):
            FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD, width_divisor=divisor)


def test_bad_inputs(net):
    images = random_images(2, 16, 16)
    with pytest.raises(ValueError, match=r"reference_images must be \[N, 3, H, W\]"):
        net(images[:1], images[:, :2], [(16, 16)])
    with pytest.raises(ValueError, match=r"target_images must be \[2 or 1, 3, 16, 16\]"):
        net(random_images(1, 16, 8), images, [(16, 16)])
    with pytest.raises(ValueError, match="3 image_sizes for 2 image pairs"):
        net(images[:1], images, [(16, 16)] * 3)
    with pytest.raises(ValueError, match="empty once resized"):
        net(random_images(1, 1, 9), random_images(1, 1, 9), [(1, 9)])
    for kwargs in [dict(input_format="L"), dict(input_scale=0.0), dict(flow_pixel_mean=(0.4, 0.4))]:
        with pytest.raises(ValueError, match="FlowNetSimple"):
            FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD, **kwargs)
