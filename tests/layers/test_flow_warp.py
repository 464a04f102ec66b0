"""flow_warp and resize_flow against hand-computed values, a per-location bilinear reference,
and a direct re-computation of the toolbox's flow_warp_feats (mmtracking 0.14)."""

import pytest
import torch

from temporal_roi_align.layers import FLOW_WARP_CONVENTIONS, flow_warp, resize_flow

from helpers.mmtrack_reference import toolbox_flow_warp_feats

# f[y, x] of a one-channel 2x3 map.
MAP = [[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]


def reference_warp(features, flow, convention):
    """Location by location: the sampling position (pixels) of output (y, x) is (x + dx, y + dy)
    ("exact") or that times (W - 1) / W, (H - 1) / H ("toolbox", whose normalisation divides by
    W, H while grid_sample's align_corners=True maps [-1, 1] to [0, W - 1]); clamped to the map
    (border padding); bilinear between the 4 neighbours."""
    n, c, h, w = features.shape
    out = torch.empty_like(features)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                px, py = x + flow[b, 0, y, x].item(), y + flow[b, 1, y, x].item()
                if convention == "toolbox":
                    px, py = px * (w - 1) / w, py * (h - 1) / h
                px, py = min(max(px, 0.0), w - 1.0), min(max(py, 0.0), h - 1.0)
                x0, y0 = min(int(px), w - 1), min(int(py), h - 1)
                x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                ax, ay = px - x0, py - y0
                top = (1 - ax) * features[b, :, y0, x0] + ax * features[b, :, y0, x1]
                bottom = (1 - ax) * features[b, :, y1, x0] + ax * features[b, :, y1, x1]
                out[b, :, y, x] = (1 - ay) * top + ay * bottom
    return out


def constant_flow(dx, dy, n=1, h=2, w=3, dtype=torch.float64):
    flow = torch.empty(n, 2, h, w, dtype=dtype)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_hand_computed_fractional_flow():
    features = torch.tensor(MAP, dtype=torch.float64)[None, None]
    flow = constant_flow(0.5, 0.25)
    # "exact": output (x, y) samples (x + 0.5, y + 0.25), clamped to [0, 2] x [0, 1]; e.g. (0, 0):
    # row 0 at x=0.5 is 1.5, row 1 is 12, at y=0.25: 1.5 + 0.25 * 10.5 = 4.125. Row 1 samples y=1.
    exact = [[4.125, 8.25, 11.0], [12.0, 24.0, 32.0]]
    # "toolbox": positions times (W-1)/W = 2/3 and (H-1)/H = 1/2; e.g. (0, 0) samples (1/3, 0.125):
    # rows 4/3 and 32/3, 4/3 + 0.125 * 28/3 = 2.5; (1, 1) samples (1, 0.625): 2 + 0.625 * 14 = 10.75.
    toolbox = [[2.5, 3.75, 6.25], [21.5 / 3, 10.75, 53.75 / 3]]
    torch.testing.assert_close(flow_warp(features, flow, "exact")[0, 0], torch.tensor(exact, dtype=torch.float64))
    torch.testing.assert_close(flow_warp(features, flow)[0, 0], torch.tensor(toolbox, dtype=torch.float64))


def test_hand_computed_varying_flow_and_border():
    features = torch.tensor(MAP, dtype=torch.float64)[None, None]
    flow = torch.zeros(1, 2, 2, 3, dtype=torch.float64)
    flow[0, :, 0, 0] = torch.tensor([-5.0, 0.0])  # far left of the map: the border column, f[0, 0]
    flow[0, :, 0, 2] = torch.tensor([-1.5, 0.5])  # (0.5, 0.5): (1.5 + 12) / 2
    flow[0, :, 1, 1] = torch.tensor([0.25, 7.0])  # below the map: row 1 at x=1.25, 16 + 0.25 * 16
    expected = [[1.0, 2.0, 6.75], [8.0, 20.0, 32.0]]
    torch.testing.assert_close(flow_warp(features, flow, "exact")[0, 0], torch.tensor(expected, dtype=torch.float64))


def test_zero_flow():
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    zero = torch.zeros(2, 2, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(flow_warp(features, zero, "exact"), features)
    # The toolbox's normalisation: zero flow samples x * (W - 1) / W, y * (H - 1) / H, not the identity.
    toolbox = flow_warp(features, zero, "toolbox")
    assert not torch.allclose(toolbox, features)
    torch.testing.assert_close(toolbox, reference_warp(features, zero, "toolbox"))
    torch.testing.assert_close(toolbox[..., 0, 0], features[..., 0, 0])  # the corner (0, 0) stays


@pytest.mark.parametrize("dx, dy", [(2, -1), (-1, 0), (0, 3), (7, -9)])
def test_integer_flow_is_a_shift_with_border_replication(dx, dy):
    features = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    out = flow_warp(features, constant_flow(dx, dy, h=4, w=5), "exact")
    for y in range(4):
        for x in range(5):
            source = features[0, :, min(max(y + dy, 0), 3), min(max(x + dx, 0), 4)]
            torch.testing.assert_close(out[0, :, y, x], source)


@pytest.mark.parametrize("convention", FLOW_WARP_CONVENTIONS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (1, 2, 1, 6), (3, 1, 5, 1), (0, 2, 3, 3)])
def test_matches_reference(convention, shape):
    torch.manual_seed(0)
    n, c, h, w = shape
    features = torch.randn(shape, dtype=torch.float64)
    flow = torch.randn(n, 2, h, w, dtype=torch.float64) * 2
    torch.testing.assert_close(flow_warp(features, flow, convention), reference_warp(features, flow, convention))


def test_toolbox_warp_end_to_end():
    """resize_flow + flow_warp("toolbox") == the toolbox's flow_warp_feats, at the stride-16
    feature size of a padded 96x160 image (and at the flow's own size)."""
    torch.manual_seed(1)
    flow = torch.randn(3, 2, 96, 160) * 20
    for size in [(6, 10), (96, 160)]:
        features = torch.randn(3, 4, *size)
        ours = flow_warp(features, resize_flow(flow, size))
        torch.testing.assert_close(ours, toolbox_flow_warp_feats(features, flow), rtol=1e-5, atol=1e-5)


def test_resize_flow_hand_computed():
    flow = torch.arange(16, dtype=torch.float64).view(1, 2, 2, 4)
    # Scale 2/4: each output value is the mean of a 2x2 block (bilinear, align_corners=False,
    # source position 2 * x + 0.5), times the scale 0.5.
    expected = torch.tensor([[[[0 + 1 + 4 + 5, 2 + 3 + 6 + 7]], [[8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]]]) / 4 * 0.5
    torch.testing.assert_close(resize_flow(flow, (1, 2)), expected.double())
    torch.testing.assert_close(resize_flow(flow, (2, 4)), flow)
    constant = constant_flow(16.0, -8.0, h=32, w=48, dtype=torch.float32)
    torch.testing.assert_close(resize_flow(constant, (2, 3)), constant_flow(1.0, -0.5, h=2, w=3, dtype=torch.float32))


@pytest.mark.parametrize("convention", FLOW_WARP_CONVENTIONS)
def test_gradients(convention):
    torch.manual_seed(2)
    features = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    # Inside the map and away from integer positions, where bilinear sampling is differentiable.
    flow = (torch.rand(2, 2, 3, 4, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda f, d: flow_warp(f, d, convention), (features, flow))
    coarse = (torch.rand(2, 2, 6, 8, dtype=torch.float64) * 0.6).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: flow_warp(features, resize_flow(d, (3, 4)), convention), (coarse,))


def test_bad_inputs():
    features = torch.zeros(1, 3, 4, 5)
    with pytest.raises(ValueError, match="convention"):
        flow_warp(features, torch.zeros(1, 2, 4, 5), "mxnet")
    with pytest.raises(ValueError, match=r"flow must be \[1, 2, 4, 5\]"):
        flow_warp(features, torch.zeros(1, 2, 8, 10))
    with pytest.raises(ValueError, match=r"flow_warp: flow must be \[N, 2, H, W\]"):
        flow_warp(features, torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="features must be"):
        flow_warp(torch.zeros(3, 4, 5), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="same aspect ratio"):
        resize_flow(torch.zeros(1, 2, 64, 64), (2, 4))
    with pytest.raises(ValueError, match="floating-point"):
        resize_flow(torch.zeros(1, 2, 4, 4, dtype=torch.long), (2, 2))
