"""FgfaAggregator (FGFA's adaptive weights, Eq. 2-3) against a location-by-location computation."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from temporal_roi_align.modeling import FgfaAggregator


def reference_embedding(module, features):
    """The embedding network: each conv with its bias, ReLU between convs, none after the last."""
    for i, conv in enumerate(module.embed_convs):
        features = F.conv2d(features, conv.weight, conv.bias, padding=conv.weight.shape[-1] // 2)
        if i < len(module.embed_convs) - 1:
            features = features.clamp_min(0)
    return features


def reference_aggregation(module, target, frames):
    """Weights and output location by location: w_j(p) = exp(cos_j(p)) / sum_k exp(cos_k(p)),
    cos_j(p) the cosine similarity of frame j's and the target's embeddings at p."""
    target_embed = reference_embedding(module, target)[0]
    frame_embeds = reference_embedding(module, frames)
    num_frames, _, height, width = frames.shape
    weights = torch.empty(num_frames, 1, height, width, dtype=frames.dtype)
    out = torch.empty_like(target)
    for y in range(height):
        for x in range(width):
            t = target_embed[:, y, x]
            cosines = [
                torch.dot(frame_embeds[j, :, y, x], t) / (frame_embeds[j, :, y, x].norm() * t.norm())
                for j in range(num_frames)
            ]
            exps = [math.exp(c.item()) for c in cosines]
            for j in range(num_frames):
                weights[j, 0, y, x] = exps[j] / sum(exps)
            out[0, :, y, x] = sum(weights[j, 0, y, x] * frames[j, :, y, x] for j in range(num_frames))
    return weights, out


def make(channels, num_convs, kernel_size, seed=0):
    torch.manual_seed(seed)
    module = FgfaAggregator(channels=channels, num_convs=num_convs, kernel_size=kernel_size).double()
    for conv in module.embed_convs:  # non-zero biases, so that a wrong bias handling shows
        torch.nn.init.normal_(conv.bias)
    return module


@pytest.mark.parametrize(
    "channels, num_convs, kernel_size, num_frames, size",
    [(6, 1, 3, 4, (3, 5)), (4, 2, 3, 3, (4, 4)), (5, 3, 1, 2, (2, 3)), (3, 1, 3, 1, (1, 1))],
)
def test_matches_reference(channels, num_convs, kernel_size, num_frames, size):
    module = make(channels, num_convs, kernel_size)
    target = torch.randn(1, channels, *size, dtype=torch.float64)
    frames = torch.randn(num_frames, channels, *size, dtype=torch.float64)
    weights, out = reference_aggregation(module, target, frames)
    torch.testing.assert_close(module.weights(target, frames), weights)
    torch.testing.assert_close(module(target, frames), out)
    torch.testing.assert_close(module.weights(target, frames).sum(dim=0), torch.ones(1, *size, dtype=torch.float64))


def test_frames_equal_to_the_target_give_the_target():
    module = make(8, 1, 3)
    target = torch.randn(1, 8, 4, 6, dtype=torch.float64)
    frames = target.expand(5, -1, -1, -1)
    torch.testing.assert_close(module.weights(target, frames), torch.full((5, 1, 4, 6), 0.2, dtype=torch.float64))
    torch.testing.assert_close(module(target, frames), target)


def test_the_most_similar_frame_weighs_most():
    module = make(8, 1, 3)
    torch.nn.init.zeros_(module.embed_convs[0].bias)  # a linear embedding: e(-f) = -e(f)
    target = torch.randn(1, 8, 3, 3, dtype=torch.float64)
    frames = torch.cat([torch.randn(2, 8, 3, 3, dtype=torch.float64), target, -target])
    weights = module.weights(target, frames)
    assert torch.equal(weights.argmax(dim=0), torch.full((1, 3, 3), 2))
    # cos = 1 for the target's copy, -1 for its negation.
    torch.testing.assert_close(weights[3] / weights[2], torch.full((1, 3, 3), math.exp(-2.0), dtype=torch.float64))


def test_gradients():
    module = make(3, 2, 3)
    target = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    frames = torch.randn(3, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (target, frames))
    module(target, frames).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_from_config():
    cfg = get_cfg()
    cfg.MODEL.FGFA = type(cfg)()
    cfg.MODEL.FGFA.NUM_EMBED_CONVS = 2
    cfg.MODEL.FGFA.EMBED_KERNEL_SIZE = 1
    module = FgfaAggregator(cfg, ShapeSpec(channels=16))
    assert [tuple(conv.weight.shape) for conv in module.embed_convs] == [(16, 16, 1, 1)] * 2


def test_bad_inputs():
    module = make(4, 1, 3)
    with pytest.raises(ValueError, match=r"target must be \[1, C, H, W\]"):
        module(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"frames must be \[T >= 1, 4, 3, 3\]"):
        module(torch.zeros(1, 4, 3, 3), torch.zeros(2, 4, 3, 2))
    with pytest.raises(ValueError, match=r"frames must be"):
        module(torch.zeros(1, 4, 3, 3), torch.zeros(0, 4, 3, 3))
    for kwargs in [dict(channels=0), dict(channels=4, num_convs=0), dict(channels=4, kernel_size=2)]:
        with pytest.raises(ValueError, match="FgfaAggregator"):
            FgfaAggregator(**kwargs)
