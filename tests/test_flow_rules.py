"""checkpoint.flow_rules: the toolbox's FGFA / DFF flow network (``motion.*``) and FGFA
aggregator (``aggregator.*``) -> FlowNetSimple and FgfaAggregator.

The source state dicts have the toolbox's names and shapes (mmtracking 0.14 FlowNetSimple and
EmbedAggregator(num_convs=1, channels=512, kernel_size=3), every conv wrapped in mmcv's
ConvModule as ``.conv``) and random values. The converted modules are compared with direct
computations from the source tensors that follow the toolbox's definitions (``toolbox_*``)."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from test_flow_warp import toolbox_flow_warp_feats
from torch import nn

from temporal_roi_align.checkpoint.common import ConversionError, ConversionReport, apply_rules
from temporal_roi_align.checkpoint.flow_rules import fgfa_aggregator_rules, flownet_rules
from temporal_roi_align.layers import flow_warp, resize_flow
from temporal_roi_align.modeling import FgfaAggregator, FlowNetSimple

# The toolbox's keys and shapes, in its module order.
TOOLBOX_FLOWNET = [
    ("conv1.0.conv.weight", (64, 6, 7, 7)), ("conv1.0.conv.bias", (64,)),
    ("conv2.0.conv.weight", (128, 64, 5, 5)), ("conv2.0.conv.bias", (128,)),
    ("conv3.0.conv.weight", (256, 128, 5, 5)), ("conv3.0.conv.bias", (256,)),
    ("conv3.1.conv.weight", (256, 256, 3, 3)), ("conv3.1.conv.bias", (256,)),
    ("conv4.0.conv.weight", (512, 256, 3, 3)), ("conv4.0.conv.bias", (512,)),
    ("conv4.1.conv.weight", (512, 512, 3, 3)), ("conv4.1.conv.bias", (512,)),
    ("conv5.0.conv.weight", (512, 512, 3, 3)), ("conv5.0.conv.bias", (512,)),
    ("conv5.1.conv.weight", (512, 512, 3, 3)), ("conv5.1.conv.bias", (512,)),
    ("conv6.0.conv.weight", (1024, 512, 3, 3)), ("conv6.0.conv.bias", (1024,)),
    ("conv6.1.conv.weight", (1024, 1024, 3, 3)), ("conv6.1.conv.bias", (1024,)),
    ("deconv5.conv.weight", (1024, 512, 4, 4)),
    ("predict_flow6.conv.weight", (2, 1024, 3, 3)),
    ("upsample_flow5.conv.weight", (2, 2, 4, 4)),
    ("deconv4.conv.weight", (1026, 256, 4, 4)),
    ("predict_flow5.conv.weight", (2, 1026, 3, 3)),
    ("upsample_flow4.conv.weight", (2, 2, 4, 4)),
    ("deconv3.conv.weight", (770, 128, 4, 4)),
    ("predict_flow4.conv.weight", (2, 770, 3, 3)),
    ("upsample_flow3.conv.weight", (2, 2, 4, 4)),
    ("deconv2.conv.weight", (386, 64, 4, 4)),
    ("predict_flow3.conv.weight", (2, 386, 3, 3)),
    ("upsample_flow2.conv.weight", (2, 2, 4, 4)),
    ("predict_flow.conv.weight", (2, 194, 3, 3)),
]  # fmt: skip
TOOLBOX_AGGREGATOR = [("embed_convs.0.conv.weight", (512, 512, 3, 3)), ("embed_convs.0.conv.bias", (512,))]
RGB_MEAN, RGB_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FLOW_MEAN, FLOW_STD = (0.411, 0.432, 0.450), (255.0, 255.0, 255.0)


class Parts(nn.Module):
    """The converted parts as a meta-architecture would hold them."""

    def __init__(self):
        super().__init__()
        self.flow_net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
        self.aggregator = FgfaAggregator(channels=512)


def toolbox_state_dict(seed=0):
    """A toolbox FGFA checkpoint's motion.* and aggregator.* tensors, random, scaled by 1/sqrt(fan-in)."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for prefix, keys in (("motion.", TOOLBOX_FLOWNET), ("aggregator.", TOOLBOX_AGGREGATOR)):
        for key, shape in keys:
            fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 1
            if key.startswith("deconv") or key.startswith("upsample"):  # transposed: [in, out, k, k]
                fan_in = shape[0]
            state[prefix + key] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


@pytest.fixture(scope="module")
def converted():
    source = toolbox_state_dict()
    parts = Parts().eval()
    report = ConversionReport("<fgfa>")
    shapes = OrderedDict((k, v.shape) for k, v in parts.state_dict().items())
    state = apply_rules(source, flownet_rules() + fgfa_aggregator_rules(), shapes, report, strict=True)
    parts.load_state_dict(state, strict=True)
    return source, parts, report


def toolbox_flownet(state, imgs, img_shape, img_scale_factor=0.5, flow_scale_factor=5.0, p="motion."):
    """The toolbox's FlowNetSimple.forward from its definition, on the source tensors.
    imgs: [N, 6, H, W] (target, reference) normalised RGB; img_shape: the first image's (h, w)."""

    def conv(x, name, stride=1, bias=True, act=True):
        weight = state[f"{p}{name}.conv.weight"]
        b = state[f"{p}{name}.conv.bias"] if bias else None
        x = F.conv2d(x, weight, b, stride=stride, padding=(weight.shape[-1] - 1) // 2)
        return F.leaky_relu(x, 0.1) if act else x

    def deconv(x, name, act):
        x = F.conv_transpose2d(x, state[f"{p}{name}.conv.weight"], stride=2, padding=1)
        return F.leaky_relu(x, 0.1) if act else x

    mean = torch.tensor(RGB_MEAN).repeat(2)[None, :, None, None]
    std = torch.tensor(RGB_STD).repeat(2)[None, :, None, None]
    x = (imgs * std + mean) / torch.tensor(FLOW_STD).repeat(2)[None, :, None, None]
    x = x - torch.tensor(FLOW_MEAN).repeat(2)[None, :, None, None]
    x[:, :, img_shape[0] :, :] = 0.0
    x[:, :, :, img_shape[1] :] = 0.0
    x = F.interpolate(x, scale_factor=img_scale_factor, mode="bilinear", align_corners=False)
    outs = []
    for level in range(1, 7):
        x = conv(x, f"conv{level}.0", stride=2)
        if f"{p}conv{level}.1.conv.weight" in state:
            x = conv(x, f"conv{level}.1")
        if level >= 2:
            outs.append(x)  # conv2 .. conv6 outputs
    concat = outs[-1]
    for i in range(len(outs) - 1, 0, -1):  # level i + 2 -> level i + 1
        h, w = outs[i - 1].shape[-2:]
        flow = conv(concat, f"predict_flow{i + 2}", bias=False, act=False)
        upflow = deconv(flow, f"upsample_flow{i + 1}", act=False)[:, :, :h, :w]
        deconv_out = deconv(concat, f"deconv{i + 1}", act=True)[:, :, :h, :w]
        concat = torch.cat((outs[i - 1], deconv_out, upflow), dim=1)
    flow = conv(concat, "predict_flow", bias=False, act=False)
    flow = F.interpolate(flow, scale_factor=4 / img_scale_factor, mode="bilinear", align_corners=False)
    return flow * (4 / img_scale_factor) * flow_scale_factor


def toolbox_embed_aggregator(state, x, ref_x, p="aggregator."):
    """The toolbox's EmbedAggregator.forward (num_convs=1) from its definition."""

    def embed(t):
        t = F.conv2d(t, state[f"{p}embed_convs.0.conv.weight"], state[f"{p}embed_convs.0.conv.bias"], padding=1)
        return t / t.norm(p=2, dim=1, keepdim=True)

    weights = torch.sum(embed(ref_x) * embed(x), dim=1, keepdim=True).softmax(dim=0)
    return weights, torch.sum(ref_x * weights, dim=0, keepdim=True)


def random_images(n, height, width, seed):
    pixels = torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 255
    return (pixels - torch.tensor(RGB_MEAN).view(1, 3, 1, 1)) / torch.tensor(RGB_STD).view(1, 3, 1, 1)


def test_report(converted):
    _, _, report = converted
    assert len(report.mapped) == len(TOOLBOX_FLOWNET) + len(TOOLBOX_AGGREGATOR)
    assert not report.ignored and not report.notes
    assert all(note == "" for *_, note in report.mapped)  # renames only
    mapping = {source: target for source, target, _, _ in report.mapped}
    assert mapping["motion.conv3.1.conv.weight"] == "flow_net.conv3_1.weight"
    assert mapping["motion.upsample_flow5.conv.weight"] == "flow_net.upsample_flow6to5.weight"
    assert mapping["motion.predict_flow.conv.weight"] == "flow_net.predict_flow2.weight"
    assert mapping["aggregator.embed_convs.0.conv.bias"] == "aggregator.embed_convs.0.bias"


def test_flow_equals_the_toolbox(converted):
    source, parts, _ = converted
    # Padded to 40x56 (a multiple of 8), images of 37x53 inside.
    target, references = random_images(1, 40, 56, 0), random_images(2, 40, 56, 1)
    with torch.no_grad():
        ours = parts.flow_net(target, references, [(37, 53)])
        theirs = toolbox_flownet(source, torch.cat((target.repeat(2, 1, 1, 1), references), dim=1), (37, 53))
    assert ours.shape == theirs.shape == (2, 2, 40, 56)
    assert theirs.abs().mean() > 1e-3  # not a trivially zero flow
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_fgfa_test_time_features_equal_the_toolbox(converted):
    """The toolbox's FGFA.extract_feats with a fixed stride, 3 cached frames (the target in the
    middle): flows from the target to every cached frame, the cached features warped, the target's
    own features in its place, aggregated; against FlowNetSimple -> resize_flow -> flow_warp ->
    FgfaAggregator."""
    source, parts, _ = converted
    generator = torch.Generator().manual_seed(5)
    frames = random_images(3, 32, 48, 2)
    feats = torch.randn(3, 512, 2, 3, generator=generator)
    with torch.no_grad():
        flows = toolbox_flownet(source, torch.cat((frames[1:2].repeat(3, 1, 1, 1), frames), dim=1), (32, 48))
        warped = toolbox_flow_warp_feats(feats, flows)
        warped[1] = feats[1]
        their_weights, theirs = toolbox_embed_aggregator(source, feats[1:2], warped)

        ours_warped = flow_warp(feats, resize_flow(parts.flow_net(frames[1:2], frames, [(32, 48)]), (2, 3)))
        ours_warped[1] = feats[1]
        ours = parts.aggregator(feats[1:2], ours_warped)
        our_weights = parts.aggregator.weights(feats[1:2], ours_warped)
    torch.testing.assert_close(ours_warped, warped, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(our_weights, their_weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_aggregator_weights_equal_the_toolbox(converted):
    source, parts, _ = converted
    generator = torch.Generator().manual_seed(6)
    x, ref_x = torch.randn(1, 512, 3, 4, generator=generator), torch.randn(5, 512, 3, 4, generator=generator)
    their_weights, theirs = toolbox_embed_aggregator(source, x, ref_x)
    with torch.no_grad():
        torch.testing.assert_close(parts.aggregator.weights(x, ref_x), their_weights, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(parts.aggregator(x, ref_x), theirs, rtol=1e-5, atol=1e-5)


def test_flow_network_alone():
    """The toolbox's pretrained flow network file has the module's own names (no "motion.")."""
    source = OrderedDict((k[len("motion.") :], v) for k, v in toolbox_state_dict(1).items() if k.startswith("motion."))
    net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
    shapes = OrderedDict((k, v.shape) for k, v in net.state_dict().items())
    state = apply_rules(source, flownet_rules("", ""), shapes, ConversionReport("<flownet>"), strict=True)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.conv3_1.weight, source["conv3.1.conv.weight"])
    assert torch.equal(net.upsample_flow3to2.weight, source["upsample_flow2.conv.weight"])
    assert torch.equal(net.predict_flow2.weight, source["predict_flow.conv.weight"])


def test_strict_conversion_errors():
    source = toolbox_state_dict()
    shapes = OrderedDict((k, v.shape) for k, v in Parts().state_dict().items())
    rules = flownet_rules() + fgfa_aggregator_rules()
    missing = OrderedDict((k, v) for k, v in source.items() if k != "motion.deconv3.conv.weight")
    with pytest.raises(ConversionError, match="1 model keys are not filled: flow_net.deconv3.weight"):
        apply_rules(missing, rules, shapes, ConversionReport("<fgfa>"))
    # A second embedding conv (num_convs=2) has no counterpart in a one-conv aggregator.
    extra = OrderedDict(source, **{"aggregator.embed_convs.1.conv.weight": torch.zeros(512, 512, 3, 3)})
    with pytest.raises(ConversionError, match="map to names the model does not have: aggregator.embed_convs.1"):
        apply_rules(extra, rules, shapes, ConversionReport("<fgfa>"))
    # A 256-channel aggregator's weights for a 512-channel model.
    wrong = OrderedDict(source, **{"aggregator.embed_convs.0.conv.bias": torch.zeros(256)})
    with pytest.raises(ConversionError, match="shapes differ"):
        apply_rules(wrong, rules, shapes, ConversionReport("<fgfa>"))
