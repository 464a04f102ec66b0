import importlib

import pytest
import torch

from temporal_roi_align.layers import (
    iter_most_similar_roi_align,
    iter_most_similar_roi_align_from_map,
    most_similar_roi_align,
    most_similar_roi_align_from_map,
)
from temporal_roi_align.layers.most_similar_roi_align import _Operator, _TargetMap, _top_k_locations
from temporal_roi_align.layers.roi_similarity import DirectSimilarity, GramSimilarity, gram_is_cheaper

from helpers.most_similar import (
    GRAM_CASES,
    from_map,
    gram_case_inputs,
    pooled_rois,
    reference_most_similar_roi_align,
    varied_boxes,
)

# The module, which the package's function of the same name hides.
most_similar_roi_align_module = importlib.import_module("temporal_roi_align.layers.most_similar_roi_align")


@pytest.mark.parametrize(
    "num_rois, channels, roi_hw, num_supports, support_hw, k, chunk_size",
    [
        (3, 6, (2, 3), 2, (4, 5), 3, 2048),  # h != w, all RoIs in one chunk
        (3, 6, (2, 3), 2, (4, 5), 3, 7),  # one RoI (6 cells) per chunk
        (4, 5, (3, 2), 1, (3, 7), 4, 13),  # T = 1, chunks of two RoIs, last chunk partial
        (2, 4, (2, 2), 3, (2, 3), 6, 1),  # k = H * W, chunk smaller than a RoI
        (2, 4, (1, 1), 2, (5, 1), 1, 2048),  # k = 1
        (2, 3, (2, 2), 2, (17, 19), 5, 4),  # two-stage top-k search, padded segments
        (1, 3, (1, 2), 1, (16, 16), 2, 2048),  # two-stage top-k search, no padding
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(num_rois, channels, roi_hw, num_supports, support_hw, k, chunk_size, dtype):
    torch.manual_seed(0)
    roi_feats = torch.randn(num_rois, channels, *roi_hw, dtype=dtype)
    support_feats = torch.randn(num_supports, channels, *support_hw, dtype=dtype)
    out = most_similar_roi_align(roi_feats, support_feats, k, chunk_size=chunk_size)
    assert out.shape == (num_supports, num_rois, channels, *roi_hw)
    assert out.dtype == dtype
    torch.testing.assert_close(out, reference_most_similar_roi_align(roi_feats, support_feats, k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length, k", [(64, 4), (128, 1), (448, 4), (448, 7), (448, 8), (1024, 3)])
def test_two_stage_top_k_equals_topk(length, k):
    torch.manual_seed(6)
    similarity = torch.randn(50, length)
    similarity[:, length - 30 :] = float("-inf")  # padding
    similarity[:5] = similarity[:5].round()  # many ties
    scores, locations = _top_k_locations(similarity, k)
    expected_scores, expected_locations = similarity.topk(k, dim=1)
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=0)
    torch.testing.assert_close(similarity.gather(1, locations), scores, rtol=0, atol=0)
    assert torch.equal(locations[5:], expected_locations[5:])
    assert all(len(set(row)) == k for row in locations.tolist())


def test_uses_unnormalised_support_features():
    torch.manual_seed(1)
    roi_feats, support_feats = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 3, 3)
    out = most_similar_roi_align(roi_feats, support_feats, 2)
    # Cosine similarities do not change, the gathered features scale.
    torch.testing.assert_close(most_similar_roi_align(roi_feats, 3 * support_feats, 2), 3 * out)
    torch.testing.assert_close(most_similar_roi_align(5 * roi_feats, support_feats, 2), out)


@pytest.mark.parametrize("num_rois, num_supports", [(0, 2), (3, 0), (0, 0)])
def test_empty_inputs(num_rois, num_supports):
    out = most_similar_roi_align(torch.randn(num_rois, 4, 2, 3), torch.randn(num_supports, 4, 5, 5), 4)
    assert out.shape == (num_supports, num_rois, 4, 2, 3)


def test_k_larger_than_support_map_is_an_error():
    with pytest.raises(ValueError, match=r"k=5 .* support maps \(2x2\) have only 4 locations"):
        most_similar_roi_align(torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), 5)


@pytest.mark.parametrize(
    "roi_shape, support_shape, k, chunk_size, message",
    [
        ((1, 4, 2), (1, 4, 2, 2), 1, 8, r"roi_feats must be \[R, C, h, w\]"),
        ((1, 4, 2, 2), (4, 2, 2), 1, 8, r"support_feats must be \[T, C, H, W\]"),
        ((1, 4, 2, 2), (1, 3, 2, 2), 1, 8, "roi_feats has 4 channels but support_feats has 3"),
        ((1, 4, 2, 2), (1, 4, 2, 2), 0, 8, "k must be a positive int"),
        ((1, 4, 2, 2), (1, 4, 2, 2), 1, 0, "chunk_size must be a positive int"),
    ],
)
def test_bad_inputs(roi_shape, support_shape, k, chunk_size, message):
    with pytest.raises(ValueError, match=message):
        most_similar_roi_align(torch.randn(roi_shape), torch.randn(support_shape), k, chunk_size=chunk_size)


def test_gradcheck():
    torch.manual_seed(2)
    roi_feats = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    support_feats = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda r, s: most_similar_roi_align(r, s, 3, chunk_size=6), (roi_feats, support_feats)
    )


def test_gradients_match_reference():
    torch.manual_seed(3)
    roi_feats = torch.randn(2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    support_feats = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 2, 4, 2, 3, dtype=torch.float64)
    grads = torch.autograd.grad(
        (most_similar_roi_align(roi_feats, support_feats, 3) * upstream).sum(), (roi_feats, support_feats)
    )
    expected = torch.autograd.grad(
        (reference_most_similar_roi_align(roi_feats, support_feats, 3) * upstream).sum(), (roi_feats, support_feats)
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, expected_grad)


def test_grad_and_no_grad_paths_agree():
    torch.manual_seed(4)
    roi_feats, support_feats = torch.randn(5, 8, 3, 2), torch.randn(3, 8, 6, 5)
    with torch.no_grad():
        untracked = most_similar_roi_align(roi_feats, support_feats, 4, chunk_size=12)
    tracked = most_similar_roi_align(roi_feats.requires_grad_(), support_feats, 4, chunk_size=12)
    assert tracked.requires_grad and not untracked.requires_grad
    torch.testing.assert_close(tracked, untracked, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 12, 13, 1000])
def test_chunks_cover_the_rois_in_order(chunk_size):
    torch.manual_seed(6)
    roi_feats, support_feats = torch.randn(5, 8, 3, 2), torch.randn(3, 8, 4, 5)
    with torch.no_grad():
        chunks = list(iter_most_similar_roi_align(roi_feats, support_feats, 2, chunk_size=chunk_size))
    rois_per_chunk = max(1, chunk_size // 6)
    assert [(rois.start, rois.stop) for rois, _ in chunks] == [
        (start, min(start + rois_per_chunk, 5)) for start in range(0, 5, rois_per_chunk)
    ]
    assert all(feats.shape == (3, rois.stop - rois.start, 8, 3, 2) for rois, feats in chunks)
    expected = reference_most_similar_roi_align(roi_feats, support_feats, 2)
    torch.testing.assert_close(torch.cat([feats for _, feats in chunks], dim=1), expected, rtol=1e-5, atol=1e-5)


def test_half_precision_inputs_and_autocast():
    torch.manual_seed(5)
    roi_feats, support_feats = torch.randn(3, 8, 2, 2), torch.randn(2, 8, 4, 4)
    expected = most_similar_roi_align(roi_feats, support_feats, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(most_similar_roi_align(roi_feats, support_feats, 2), expected, rtol=0, atol=0)
    half = most_similar_roi_align(roi_feats.bfloat16(), support_feats.bfloat16(), 2)
    assert half.dtype == torch.bfloat16
    expected_half = most_similar_roi_align(roi_feats.bfloat16().float(), support_feats.bfloat16().float(), 2)
    torch.testing.assert_close(half.float(), expected_half, rtol=1e-2, atol=1e-2)
    # bfloat16 supports with float32 RoIs (a bfloat16 feature cache): output follows the RoIs.
    mixed = most_similar_roi_align(roi_feats, support_feats.bfloat16(), 2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(
        mixed, most_similar_roi_align(roi_feats, support_feats.bfloat16().float(), 2), rtol=0, atol=0
    )


def test_output_is_a_channels_last_view_with_the_documented_shape():
    out = most_similar_roi_align(torch.randn(3, 8, 2, 5), torch.randn(2, 8, 4, 6), 2)
    assert out.shape == (2, 3, 8, 2, 5)
    assert out.permute(0, 1, 3, 4, 2).is_contiguous()


# --- most_similar_roi_align_from_map: the Gram path -------------------------------------------


@pytest.mark.parametrize(
    "channels, map_hw, support_hw, num_supports, num_rois, roi_hw, k, scale, ratio, aligned, chunk_size", GRAM_CASES
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_equals_direct_and_reference(
    channels, map_hw, support_hw, num_supports, num_rois, roi_hw, k, scale, ratio, aligned, chunk_size, dtype
):
    roi_feats, target_map, boxes, support_feats, pooling = gram_case_inputs(
        channels, map_hw, support_hw, num_supports, num_rois, roi_hw, scale, ratio, aligned, dtype
    )
    # Cells outside the map are all zero: every location ties (the reference's scores are NaN).
    inside = roi_feats.norm(dim=1) > 0
    assert not inside.all() and inside.any()
    expected = reference_most_similar_roi_align(roi_feats, support_feats, k).permute(0, 1, 3, 4, 2)[:, inside]
    direct = most_similar_roi_align(roi_feats, support_feats, k, chunk_size=chunk_size)
    for method in ("gram", "direct", "auto"):
        out = from_map(method, roi_feats, target_map, boxes, support_feats, k, pooling, chunk_size=chunk_size)
        assert out.shape == direct.shape and out.dtype == dtype
        torch.testing.assert_close(out.permute(0, 1, 3, 4, 2)[:, inside], expected, rtol=1e-5, atol=1e-5)
        if method != "auto":  # "auto" may take the compiled operator, which breaks ties its own way
            # All-zero cells have all-zero similarities in both paths, so the same ties are broken alike.
            torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        chunks = iter_most_similar_roi_align_from_map(
            roi_feats, target_map, boxes, support_feats, k, **pooling, chunk_size=chunk_size, method="gram"
        )
        torch.testing.assert_close(torch.cat([f for _, f in chunks], dim=1), direct, rtol=1e-5, atol=1e-5)


def chosen_locations(method, roi_feats, target_map, boxes, support_feats, k, pooling):
    """The [T, R*h*w, k] locations the operator chooses, through its private selection step."""
    target = _TargetMap(
        roi_feats, target_map, boxes, pooling["spatial_scale"], pooling["sampling_ratio"], pooling["aligned"], method
    )
    op = _Operator(roi_feats, support_feats, k, 2048, target)
    assert isinstance(op.similarity, GramSimilarity if method == "gram" else DirectSimilarity)
    return op.select()[0]


@pytest.mark.parametrize("ratio, aligned", [(2, True), (0, False)])
def test_gram_chooses_the_top_k_sets_up_to_rounding(ratio, aligned):
    """float32 selections of both paths against float64 cosine similarities: each chosen set
    holds k locations whose scores are at least every other's minus float32 rounding; sets
    differ only where scores are that close."""
    generator = torch.Generator().manual_seed(8)
    target_map = torch.randn(16, 9, 12, generator=generator)
    target_map[:, :3, :4] = target_map[:1, :3, :4]  # locations with identical features
    support_feats = torch.randn(3, 16, 10, 11, generator=generator)
    support_feats[1, :, 2:5] = support_feats[1, :, 2:3]  # equal scores: ties
    boxes = varied_boxes(20, 9 * 16, 12 * 16, generator)
    pooling = {"spatial_scale": 1 / 16, "sampling_ratio": ratio, "aligned": aligned}
    roi_feats = pooled_rois(target_map, boxes, (7, 7), **pooling)
    queries = torch.nn.functional.normalize(roi_feats.double(), dim=1).permute(0, 2, 3, 1).flatten(0, 2)
    keys = torch.nn.functional.normalize(support_feats.double().flatten(2), dim=1)
    exact = torch.matmul(queries, keys)  # [T, cells, H*W]
    selections = {
        m: chosen_locations(m, roi_feats, target_map, boxes, support_feats, 4, pooling) for m in ("gram", "direct")
    }
    kth_best = exact.topk(4, dim=2).values[..., -1:]
    for locations in selections.values():
        assert (exact.gather(2, locations) >= kth_best - 1e-6).all()
        assert all(len(set(row)) == 4 for row in locations.flatten(0, 1).tolist())
    same = (selections["gram"].sort(dim=2).values == selections["direct"].sort(dim=2).values).all(dim=2)
    assert same.float().mean() > 0.9
    # Where the sets differ, a chosen score and an unchosen one are equal up to rounding.
    differing = ~same
    gap = exact.topk(5, dim=2).values
    assert ((gap[..., 3] - gap[..., 4])[differing] < 1e-6).all()


def test_gram_and_direct_gradients_are_equal():
    generator = torch.Generator().manual_seed(9)
    target_map = torch.randn(6, 5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    support_feats = torch.randn(2, 6, 4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = varied_boxes(4, 40, 56, generator, torch.float64)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    upstream = torch.randn(2, len(boxes), 6, 3, 3, generator=generator, dtype=torch.float64)
    grads = {}
    for method in ("gram", "direct"):
        roi_feats = pooled_rois(target_map, boxes, (3, 3), **pooling)
        out = from_map(method, roi_feats, target_map, boxes, support_feats, 3, pooling)
        grads[method] = torch.autograd.grad((out * upstream).sum(), (target_map, support_feats))
    for gram_grad, direct_grad in zip(grads["gram"], grads["direct"]):
        assert gram_grad.abs().sum() > 0
        torch.testing.assert_close(gram_grad, direct_grad, rtol=1e-12, atol=1e-12)


def test_gram_gradcheck():
    generator = torch.Generator().manual_seed(10)
    target_map = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    boxes = torch.tensor([[2.0, 3.0, 30.0, 25.0], [-6.0, 10.0, 20.0, 40.0]], dtype=torch.float64)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (2, 2), **pooling).requires_grad_()
    support_feats = torch.randn(2, 3, 2, 3, generator=generator, dtype=torch.float64, requires_grad=True)

    def aligned(roi_feats, support_feats):
        return from_map("gram", roi_feats, target_map, boxes, support_feats, 3, pooling, chunk_size=4)

    assert torch.autograd.gradcheck(aligned, (roi_feats, support_feats))


def test_auto_switches_to_gram_for_many_cells_per_location(monkeypatch):
    monkeypatch.setenv("TRA_NO_COMPILED_OPS", "1")  # the PyTorch path's rule (test_compiled_ops: the compiled one's)
    built = []

    class RecordingGramSimilarity(GramSimilarity):
        def __init__(self, *args, **kwargs):
            built.append(True)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(most_similar_roi_align_module, "GramSimilarity", RecordingGramSimilarity)
    generator = torch.Generator().manual_seed(11)
    pooling = {"spatial_scale": 1 / 16, "sampling_ratio": 2, "aligned": True}
    support_feats = torch.randn(1, 256, 6, 6, generator=generator)
    # Many RoI cells per map location: gram; one RoI, or 30 RoIs on a large map: direct.
    for num_rois, map_hw, expect_gram in [(30, (6, 8), True), (1, (6, 8), False), (30, (40, 60), False)]:
        target_map = torch.randn(256, *map_hw, generator=generator)
        boxes = varied_boxes(30, map_hw[0] * 16, map_hw[1] * 16, generator)[:num_rois]
        roi_feats = pooled_rois(target_map, boxes, (7, 7), **pooling)
        built.clear()
        out = from_map("auto", roi_feats, target_map, boxes, support_feats, 2, pooling)
        assert bool(built) == expect_gram
        torch.testing.assert_close(out, most_similar_roi_align(roi_feats, support_feats, 2), rtol=1e-5, atol=1e-5)
        # Explicit methods override the rule.
        built.clear()
        from_map("gram", roi_feats, target_map, boxes, support_feats, 2, pooling)
        from_map("direct", roi_feats, target_map, boxes, support_feats, 2, pooling)
        assert built == [True]


def test_gram_cost_rule():
    # Paper scale: 14700 cells, 2394 locations (23 MB of Gram matrix), about 6 taps per cell, C = 512.
    assert gram_is_cheaper(14700, 2394, 6 * 14700, 512, 23 * 2**20)
    # One RoI on a large map; few channels.
    assert not gram_is_cheaper(49, 49, 16 * 49, 512, 2**20)
    assert not gram_is_cheaper(14700, 2394, 6 * 14700, 32, 23 * 2**20)
    # A Gram matrix beyond the cache makes gathers dearer: C=256, 14700 cells on a 76x126 map.
    assert gram_is_cheaper(14700, 2350, 7 * 14700, 256, 22 * 2**20)
    assert not gram_is_cheaper(14700, 7667, 7 * 14700, 256, 280 * 2**20)


@pytest.mark.parametrize("num_rois, num_supports", [(0, 2), (3, 0)])
def test_from_map_empty_inputs(num_rois, num_supports):
    target_map = torch.randn(4, 5, 5)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 30.0]]).repeat(num_rois, 1)
    roi_feats = pooled_rois(target_map, boxes, (2, 3), 1 / 8, 2, True)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    out = from_map("gram", roi_feats, target_map, boxes, torch.randn(num_supports, 4, 5, 5), 4, pooling)
    assert out.shape == (num_supports, num_rois, 4, 2, 3)


@pytest.mark.parametrize("method", ["gram", "auto"])
def test_from_map_rois_outside_the_map(method, monkeypatch):
    """No RoI cell samples the map: all similarities are 0 in both paths, ties broken alike
    (in PyTorch; test_compiled_ops checks the compiled operator's ties)."""
    monkeypatch.setenv("TRA_NO_COMPILED_OPS", "1")
    generator = torch.Generator().manual_seed(14)
    target_map, support_feats = torch.randn(4, 5, 6, generator=generator), torch.randn(2, 4, 5, 6, generator=generator)
    boxes = torch.tensor([[-500.0, -500.0, -400.0, -400.0], [900.0, 900.0, 1000.0, 1000.0]])
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (3, 3), **pooling)
    assert not roi_feats.any()
    out = from_map(method, roi_feats, target_map, boxes, support_feats, 3, pooling)
    torch.testing.assert_close(out, most_similar_roi_align(roi_feats, support_feats, 3), rtol=0, atol=0)


def test_from_map_half_precision_and_autocast():
    generator = torch.Generator().manual_seed(12)
    target_map, support_feats = torch.randn(8, 6, 7, generator=generator), torch.randn(2, 8, 5, 5, generator=generator)
    boxes = varied_boxes(5, 48, 56, generator)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (2, 2), **pooling)
    expected = most_similar_roi_align(roi_feats, support_feats, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = from_map("gram", roi_feats, target_map, boxes, support_feats, 2, pooling)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # A bfloat16 feature cache: the selection sees the rounded features.
    half = from_map("gram", roi_feats.bfloat16(), target_map.bfloat16(), boxes, support_feats.bfloat16(), 2, pooling)
    assert half.dtype == torch.bfloat16
    expected_half = most_similar_roi_align(roi_feats.bfloat16(), support_feats.bfloat16(), 2)
    torch.testing.assert_close(half.float(), expected_half.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"spatial_scale": 1 / 16}, r"roi_feats are not ROIAlign of target_map at boxes with spatial_scale=0.0625"),
        ({"aligned": False}, "aligned=False"),
        ({"method": "sparse"}, r"method must be one of \('auto', 'direct', 'gram', 'compiled'\)"),
        ({"sampling_ratio": -1}, "sampling_ratio must be an int >= 0"),
        ({"target_map": torch.randn(3, 6, 7)}, r"target_map must be \[8, H, W\]"),
        ({"boxes": torch.zeros(4, 4)}, r"boxes must be \[5, 4\]"),
        ({"boxes": torch.full((5, 4), float("nan"))}, "boxes must be finite"),
    ],
)
def test_from_map_bad_inputs(change, message):
    generator = torch.Generator().manual_seed(13)
    target_map, support_feats = torch.randn(8, 6, 7, generator=generator), torch.randn(2, 8, 5, 5, generator=generator)
    boxes = varied_boxes(0, 48, 56, generator)  # 5 boxes
    roi_feats = pooled_rois(target_map, boxes, (2, 2), 1 / 8, 2, True)
    arguments = {
        "target_map": target_map,
        "boxes": boxes,
        "spatial_scale": 1 / 8,
        "sampling_ratio": 2,
        "aligned": True,
        "method": "gram",
        **change,
    }
    with pytest.raises(ValueError, match=message):
        most_similar_roi_align_from_map(roi_feats, support_feats=support_feats, k=2, **arguments)
