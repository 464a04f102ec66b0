import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from temporal_roi_align.modeling import SelsaAggregator, SelsaBoxHead


def selsa_reference(agg: SelsaAggregator, x, ref):
    """Multi-head attention of SELSA, one proposal and one group at a time."""
    G = agg.num_groups
    c = x.shape[1] // G
    q, k, v = agg.fc_embed(x), agg.ref_fc_embed(ref), agg.ref_fc(ref)
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for g in range(G):
            sl = slice(g * c, (g + 1) * c)
            scores = torch.tensor([float(q[i, sl] @ k[j, sl]) / math.sqrt(c) for j in range(ref.shape[0])])
            weights = torch.softmax(scores, 0)
            out[i, sl] = sum(weights[j] * v[j, sl] for j in range(ref.shape[0]))
    return agg.fc(out)


@torch.no_grad()
def test_aggregator_matches_reference():
    torch.manual_seed(0)
    agg = SelsaAggregator(24, num_groups=4)
    x, ref = torch.randn(5, 24), torch.randn(7, 24)
    torch.testing.assert_close(agg(x, ref), selsa_reference(agg, x, ref), atol=1e-5, rtol=1e-5)


def test_aggregator_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="attention groups"):
        SelsaAggregator(30, num_groups=16)


def test_box_head_attends_within_each_image_only():
    torch.manual_seed(0)
    head = SelsaBoxHead(
        ShapeSpec(channels=4, height=3, width=3),
        conv_dims=[],
        fc_dims=[16, 16],
        num_selsa_modules=2,
        num_attention_groups=4,
    )
    x, support = torch.randn(5, 4, 3, 3), torch.randn(6, 4, 3, 3)
    out = head(x, support, [2, 3], [4, 2])
    # Changing image 1's supports must not change image 0's outputs.
    support2 = support.clone()
    support2[4:] += 5
    out2 = head(x, support2, [2, 3], [4, 2])
    torch.testing.assert_close(out[:2], out2[:2])
    assert not torch.allclose(out[2:], out2[2:])
    assert out.shape == (5, 16) and (out >= 0).all()


def make_head(mode, num_modules=2):
    return SelsaBoxHead(
        ShapeSpec(channels=2, height=2, width=2),
        conv_dims=[],
        fc_dims=[8, 8, 8],
        num_selsa_modules=num_modules,
        num_attention_groups=2,
        reference_mode=mode,
    )


@torch.no_grad()
def test_mmtrack_mode_matches_direct_computation():
    """mmtracking's SelsaBBoxHead: references (the supports' proposals) pass the FCs without
    aggregation; the target proposals attend to them only."""
    torch.manual_seed(0)
    head = make_head("mmtrack")
    x, support = torch.randn(3, 2, 2, 2), torch.randn(4, 2, 2, 2)
    h, s = x.flatten(1), support.flatten(1)
    for k, fc in enumerate(head.fcs):
        h, s = fc(h), fc(s)
        if k < 2:
            h = h + selsa_reference(head.aggregators[k], h, s)
        h, s = h.relu(), s.relu()
    torch.testing.assert_close(head(x, support, [3], [4]), h, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("num_modules", [1, 2, 3])
def test_all_frames_mode_matches_direct_computation(num_modules):
    """The original SELSA: the proposals of all frames are one set; at each module every
    proposal is updated by attending to the whole set; the target's proposals come first."""
    torch.manual_seed(0)
    head = make_head("all_frames", num_modules)
    x, support = torch.randn(3, 2, 2, 2), torch.randn(4, 2, 2, 2)
    z = torch.cat([x, support]).flatten(1)
    for k, fc in enumerate(head.fcs):
        z = fc(z)
        if k < num_modules:
            z = z + selsa_reference(head.aggregators[k], z, z)
        z = z.relu()
    torch.testing.assert_close(head(x, support, [3], [4]), z[:3], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_modes_differ_and_all_frames_keeps_images_apart():
    torch.manual_seed(0)
    mmtrack, all_frames = make_head("mmtrack"), make_head("all_frames")
    all_frames.load_state_dict(mmtrack.state_dict())
    x, support = torch.randn(5, 2, 2, 2), torch.randn(6, 2, 2, 2)
    out = all_frames(x, support, [2, 3], [4, 2])
    assert out.shape == (5, 8) and not torch.allclose(out, mmtrack(x, support, [2, 3], [4, 2]))
    support2 = support.clone()
    support2[4:] += 5
    torch.testing.assert_close(all_frames(x, support2, [2, 3], [4, 2])[:2], out[:2])


def test_box_head_rejects_unknown_mode():
    with pytest.raises(ValueError, match="REFERENCE_MODE must be one of"):
        make_head("target_too")


def test_box_head_checks_module_count():
    with pytest.raises(ValueError, match="NUM_MODULES"):
        SelsaBoxHead(
            ShapeSpec(channels=2, height=2, width=2),
            conv_dims=[],
            fc_dims=[8],
            num_selsa_modules=2,
            num_attention_groups=2,
        )
