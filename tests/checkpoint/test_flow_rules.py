"""checkpoint.flow_rules: the toolbox's FGFA / DFF flow network (``motion.*``) and FGFA
aggregator (``aggregator.*``) -> FlowNetSimple and FgfaAggregator.

The source state dicts have the toolbox's names and shapes (mmtracking 0.14 FlowNetSimple and
EmbedAggregator(num_convs=1, channels=512, kernel_size=3), every conv wrapped in mmcv's
ConvModule as ``.conv``) and random values. The converted modules are compared with direct
computations from the source tensors that follow the toolbox's definitions (``toolbox_*``)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from temporal_roi_align.checkpoint.common import ConversionError, ConversionReport, apply_rules
from temporal_roi_align.checkpoint.flow_rules import fgfa_aggregator_rules, flownet_rules
from temporal_roi_align.layers import flow_warp, resize_flow
from temporal_roi_align.modeling import FgfaAggregator, FlowNetSimple

from helpers.mmtrack_reference import (
    RGB_MEAN,
    RGB_STD,
    TOOLBOX_AGGREGATOR,
    TOOLBOX_FLOWNET,
    toolbox_embed_aggregator,
    toolbox_flow_state_dict,
    toolbox_flow_warp_feats,
    toolbox_flownet,
)


class Parts(nn.Module):
    """The converted parts as a meta-architecture would hold them."""

    def __init__(self):
        super().__init__()
        self.flow_net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
        self.aggregator = FgfaAggregator(channels=512)


@pytest.fixture(scope="module")
def converted():
    source = toolbox_flow_state_dict()
    parts = Parts().eval()
    report = ConversionReport("<fgfa>")
    shapes = OrderedDict((k, v.shape) for k, v in parts.state_dict().items())
    state = apply_rules(source, flownet_rules() + fgfa_aggregator_rules(), shapes, report, strict=True)
    parts.load_state_dict(state, strict=True)
    return source, parts, report


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
    source = OrderedDict(
        (k[len("motion.") :], v) for k, v in toolbox_flow_state_dict(1).items() if k.startswith("motion.")
    )
    net = FlowNetSimple(pixel_mean=RGB_MEAN, pixel_std=RGB_STD)
    shapes = OrderedDict((k, v.shape) for k, v in net.state_dict().items())
    state = apply_rules(source, flownet_rules("", ""), shapes, ConversionReport("<flownet>"), strict=True)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.conv3_1.weight, source["conv3.1.conv.weight"])
    assert torch.equal(net.upsample_flow3to2.weight, source["upsample_flow2.conv.weight"])
    assert torch.equal(net.predict_flow2.weight, source["predict_flow.conv.weight"])


def test_strict_conversion_errors():
    source = toolbox_flow_state_dict()
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
