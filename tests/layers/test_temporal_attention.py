import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from temporal_roi_align.layers import TemporalAttentionalAggregation, roi_align_sampling, temporal_attention
from temporal_roi_align.layers.temporal_attention import PROJECTION_COST, projections_are_cheaper


def reference_embeddings(module, frames, embed):
    """psi^n of every block n, [F, R, C, h, w]; "grouped": a separate 3x3 conv per block."""
    weight, bias = module.embed.weight, module.embed.bias
    flat = frames.flatten(0, 1)
    if embed == "shared":
        return F.conv2d(flat, weight, bias, padding=1).view_as(frames)
    group = module.channels // module.num_blocks
    per_block = [
        F.conv2d(
            flat[:, n * group : (n + 1) * group],
            weight[n * group : (n + 1) * group],
            bias[n * group : (n + 1) * group],
            padding=1,
        )
        for n in range(module.num_blocks)
    ]
    return torch.cat(per_block, dim=1).view_as(frames)


def reference_aggregation(module, target, supports, embed):
    """Eq. 5-8 cell by cell and block by block, target first among the frames."""
    frames = torch.cat([target[None], supports])
    embeddings = reference_embeddings(module, frames, embed)
    num_frames, num_rois, channels, roi_h, roi_w = frames.shape
    group = channels // module.num_blocks
    out = []
    for r in range(num_rois):
        per_block = []
        for n in range(module.num_blocks):
            block = slice(n * group, (n + 1) * group)
            rows = []
            for y in range(roi_h):
                row = []
                for x in range(roi_w):
                    logits = [
                        (embeddings[f, r, block, y, x] * embeddings[0, r, block, y, x]).sum() / math.sqrt(group)
                        for f in range(num_frames)
                    ]
                    exps = [torch.exp(logit) for logit in logits]
                    total = sum(exps)
                    row.append(sum(e / total * frames[f, r, block, y, x] for f, e in enumerate(exps)))
                rows.append(torch.stack(row, dim=-1))
            per_block.append(torch.stack(rows, dim=-2))
        out.append(torch.cat(per_block))
    return torch.stack(out)


@pytest.mark.parametrize("embed", ["shared", "grouped"])
@pytest.mark.parametrize(
    "channels, num_blocks, num_rois, num_supports, roi_hw",
    [(8, 4, 2, 3, (2, 3)), (6, 1, 3, 1, (3, 2)), (4, 2, 1, 0, (2, 2)), (6, 3, 2, 2, (1, 1))],
)
def test_matches_reference(embed, channels, num_blocks, num_rois, num_supports, roi_hw):
    torch.manual_seed(0)
    module = TemporalAttentionalAggregation(channels, num_blocks, embed=embed)
    target = torch.randn(num_rois, channels, *roi_hw)
    supports = torch.randn(num_supports, num_rois, channels, *roi_hw)
    expected = reference_aggregation(module, target, supports, embed)
    embedded = module(target, supports)  # parameters require grad: every frame is embedded
    with torch.no_grad():
        projected = module(target, supports)  # only the target is embedded
    torch.testing.assert_close(embedded, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(projected, expected, rtol=1e-5, atol=1e-5)


def no_grad_paths(module, target, supports):
    """The outputs of forward's two computations without gradient, each called directly."""
    with torch.no_grad():
        embedding = module.embed(target)
        return {
            "projections": module._aggregate_by_projections(target, supports, embedding),
            "support embeddings": module._aggregate_by_support_embeddings(target, supports, embedding),
        }


@pytest.mark.parametrize("embed", ["shared", "grouped"])
def test_paths_agree_in_float64_on_paper_shapes(embed):
    torch.manual_seed(5)
    module = TemporalAttentionalAggregation(64, 4, embed=embed).double()
    target = torch.randn(5, 64, 7, 7, dtype=torch.float64)
    supports = torch.randn(3, 5, 64, 7, 7, dtype=torch.float64)
    embedded = module(target, supports)
    with torch.no_grad():
        torch.testing.assert_close(module(target, supports), embedded, rtol=1e-12, atol=1e-12)
    for path, output in no_grad_paths(module, target, supports).items():
        torch.testing.assert_close(output, embedded, rtol=1e-12, atol=1e-12, msg=path)


@pytest.mark.parametrize("embed", ["shared", "grouped"])
@pytest.mark.parametrize("num_blocks", [1, 4])
@pytest.mark.parametrize("num_supports", [0, 1, 5])
@pytest.mark.parametrize("roi_hw", [(1, 1), (2, 3), (7, 7), (14, 14)])
@pytest.mark.parametrize("rows_per_chunk", [1, 3, None])
def test_no_grad_paths_equal_training_path(monkeypatch, embed, num_blocks, num_supports, roi_hw, rows_per_chunk):
    """Both computations without gradient against the conv of every frame, in float64; the
    projections in chunks of 1 and 3 RoI rows (chunks that split RoIs) and all at once."""
    generator = torch.Generator().manual_seed(8)
    channels, num_rois = 8, 3
    module = TemporalAttentionalAggregation(channels, num_blocks, embed=embed).double()
    target = torch.randn(num_rois, channels, *roi_hw, dtype=torch.float64, generator=generator)
    # Channels-last in memory, as most_similar_roi_align returns them.
    supports = torch.randn(num_supports, num_rois, *roi_hw, channels, dtype=torch.float64, generator=generator)
    supports = supports.permute(0, 1, 4, 2, 3)
    if rows_per_chunk is not None:
        # One RoI row of one tap's projections: [N, w, C/G].
        row_bytes = num_blocks * roi_hw[1] * (channels // module.embed.groups) * target.element_size()
        monkeypatch.setattr(temporal_attention, "_PROJECTION_CHUNK_BYTES", rows_per_chunk * row_bytes)
    expected = module(target, supports)  # parameters require grad: every frame is embedded
    assert expected.requires_grad
    for path, output in no_grad_paths(module, target, supports).items():
        torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12, msg=path)
    # Supports contiguous as [T, R, C, h, w] give the same numbers.
    contiguous = no_grad_paths(module, target, supports.contiguous())["projections"]
    torch.testing.assert_close(contiguous, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "channels, embed, expected_path",
    [
        # C/G (T - PROJECTION_COST) against PRODUCT_COST T, T = 5: 128 * 2 > 40 * 5 ...
        (128, "shared", "_aggregate_by_projections"),
        # ... 32 * 2 < 40 * 5 and, grouped, 128 / 4 * 2 < 40 * 5.
        (32, "shared", "_aggregate_by_support_embeddings"),
        (128, "grouped", "_aggregate_by_support_embeddings"),
    ],
)
def test_no_grad_path_follows_the_rule(monkeypatch, channels, embed, expected_path):
    """forward takes the projections on one side of projections_are_cheaper and embeds the
    supports on the other; both give the training path's numbers."""
    calls = []
    for name in ("_aggregate_by_projections", "_aggregate_by_support_embeddings"):
        method = getattr(TemporalAttentionalAggregation, name)
        monkeypatch.setattr(
            TemporalAttentionalAggregation,
            name,
            lambda self, *args, method=method, name=name: calls.append(name) or method(self, *args),
        )
    generator = torch.Generator().manual_seed(9)
    module = TemporalAttentionalAggregation(channels, 4, embed=embed).double()
    target = torch.randn(2, channels, 3, 5, dtype=torch.float64, generator=generator)
    supports = torch.randn(5, 2, channels, 3, 5, dtype=torch.float64, generator=generator)
    expected = module(target, supports)
    with torch.no_grad():
        torch.testing.assert_close(module(target, supports), expected, rtol=1e-12, atol=1e-12)
    assert calls == [expected_path]
    assert projections_are_cheaper(channels // module.embed.groups, 5) == (expected_path == "_aggregate_by_projections")


def test_rule_embeds_few_supports():
    """Projections cost PROJECTION_COST support embeddings: no fewer supports are projected."""
    for group_channels in (8, 512, 4096):
        for num_supports in range(math.floor(PROJECTION_COST) + 1):
            assert not projections_are_cheaper(group_channels, num_supports)
        assert projections_are_cheaper(group_channels, 14) == (group_channels > 60)


def test_embedding_modules():
    shared = TemporalAttentionalAggregation(8, 4, embed="shared")
    assert isinstance(shared.embed, nn.Conv2d)
    assert (shared.embed.in_channels, shared.embed.out_channels, shared.embed.kernel_size) == (8, 8, (3, 3))
    assert shared.embed.padding == (1, 1) and shared.embed.groups == 1
    assert TemporalAttentionalAggregation(8, 4, embed="grouped").embed.groups == 4


def test_without_supports_returns_target():
    torch.manual_seed(1)
    module = TemporalAttentionalAggregation(8, 2)
    target = torch.randn(3, 8, 2, 2)
    torch.testing.assert_close(module(target, torch.zeros(0, 3, 8, 2, 2)), target, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(module(target, torch.zeros(0, 3, 8, 2, 2)), target, rtol=1e-6, atol=1e-6)


def test_zero_blocks_averages_frames():
    torch.manual_seed(2)
    module = TemporalAttentionalAggregation(6, 0)
    assert module.embed is None and not list(module.parameters())
    target, supports = torch.randn(2, 6, 3, 2), torch.randn(3, 2, 6, 3, 2)
    expected = torch.cat([target[None], supports]).mean(0)
    torch.testing.assert_close(module(target, supports), expected)


def test_paths_agree_with_large_logits():
    torch.manual_seed(3)
    module = TemporalAttentionalAggregation(8, 2)
    target, supports = 30 * torch.randn(2, 8, 2, 2), 30 * torch.randn(5, 2, 8, 2, 2)
    embedded = module(target, supports)
    for path, output in no_grad_paths(module, target, supports).items():
        assert torch.isfinite(output).all(), path
        torch.testing.assert_close(output, embedded, rtol=1e-5, atol=1e-4, msg=path)


@pytest.mark.parametrize("embed", ["shared", "grouped"])
def test_gradcheck(embed):
    torch.manual_seed(4)
    module = TemporalAttentionalAggregation(4, 2, embed=embed).double()
    target = torch.randn(2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    supports = torch.randn(2, 2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    weight = module.embed.weight.detach().clone().requires_grad_()
    bias = module.embed.bias.detach().clone().requires_grad_()

    def aggregate(target, supports, weight, bias):
        return torch.func.functional_call(module, {"embed.weight": weight, "embed.bias": bias}, (target, supports))

    assert torch.autograd.gradcheck(aggregate, (target, supports, weight, bias))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"channels \(6\) must be divisible by num_blocks \(4\)"):
        TemporalAttentionalAggregation(6, 4)
    with pytest.raises(ValueError, match="embed must be"):
        TemporalAttentionalAggregation(8, 4, embed="separate")
    module = TemporalAttentionalAggregation(8, 4)
    with pytest.raises(ValueError, match=r"target_roi_feats must be \[R, 8, h, w\]"):
        module(torch.randn(2, 6, 2, 2), torch.randn(1, 2, 6, 2, 2))
    with pytest.raises(ValueError, match=r"support_roi_feats must be \[T, 2, 8, 2, 2\]"):
        module(torch.randn(2, 8, 2, 2), torch.randn(1, 3, 8, 2, 2))


@pytest.mark.parametrize("embed", ["shared", "grouped"])
@pytest.mark.parametrize(
    "roi_size, sampling_ratio, aligned", [((3, 4), 2, True), ((1, 1), 0, False), ((7, 7), 0, True)]
)
def test_embed_pooled_equals_embedding_of_roi_align(embed, roi_size, sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(6)
    module = TemporalAttentionalAggregation(8, 2, embed=embed)
    target_map = torch.randn(8, 5, 7, generator=generator)
    boxes = torch.tensor(
        [
            [0.0, 0.0, 56.0, 40.0],
            [10.0, 5.0, 30.0, 33.0],
            [-20.0, -10.0, 15.0, 12.0],
            [50.0, 35.0, 90.0, 70.0],
            [3.0, 4.0, 3.5, 4.2],
            [-90.0, 0.0, -60.0, 20.0],
        ]
    )
    sampling = roi_align_sampling(boxes, (5, 7), roi_size, 1 / 8, sampling_ratio, aligned)
    roi_feats = roi_align(target_map[None], [boxes], roi_size, 1 / 8, sampling_ratio, aligned)
    expected = module.embed(roi_feats)
    torch.testing.assert_close(module.embed_pooled(target_map, sampling, roi_size), expected, rtol=1e-5, atol=1e-5)


def test_forward_with_pooled_target_embedding():
    generator = torch.Generator().manual_seed(7)
    module = TemporalAttentionalAggregation(8, 4)
    target_map = torch.randn(8, 6, 6, generator=generator)
    boxes = torch.tensor([[0.0, 0.0, 48.0, 48.0], [8.0, 4.0, 30.0, 20.0], [20.0, 16.0, 24.0, 40.0]])
    sampling = roi_align_sampling(boxes, (6, 6), (3, 3), 1 / 8, 2, True)
    target = roi_align(target_map[None], [boxes], (3, 3), 1 / 8, 2, True)
    supports = torch.randn(2, 3, 8, 3, 3, generator=generator)
    with torch.no_grad():
        expected = module(target, supports)
        embedding = module.embed_pooled(target_map, sampling, (3, 3))
        torch.testing.assert_close(module(target, supports, embedding), expected, rtol=1e-5, atol=1e-5)
        # Another embedding changes the output: it is used.
        assert not torch.allclose(module(target, supports, embedding + 1), expected, rtol=1e-3, atol=1e-3)
        with pytest.raises(ValueError, match="target_embedding must have the shape of target_roi_feats"):
            module(target, supports, embedding[:2])
    with pytest.raises(ValueError, match=r"target_map must be \[8, 6, 6\]"):
        module.embed_pooled(torch.randn(8, 5, 6), sampling, (3, 3))
    with pytest.raises(ValueError, match="not a whole number of 2x2 RoIs"):
        module.embed_pooled(target_map, sampling, (2, 2))
    with pytest.raises(ValueError, match="needs an embedding"):
        TemporalAttentionalAggregation(8, 0).embed_pooled(target_map, sampling, (3, 3))
