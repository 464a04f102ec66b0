import pytest
import torch

from temporal_roi_align.layers import iter_most_similar_roi_align, most_similar_roi_align
from temporal_roi_align.layers.most_similar_roi_align import _top_k_locations


def reference_most_similar_roi_align(roi_feats, support_feats, k):
    """Eq. 2-4 cell by cell: cosine similarity to every support location, top k, softmax,
    weighted sum of the un-normalised support vectors."""
    num_rois, _, roi_h, roi_w = roi_feats.shape
    num_supports, _, height, width = support_feats.shape
    per_support = []
    for t in range(num_supports):
        per_roi = []
        for r in range(num_rois):
            rows = []
            for y in range(roi_h):
                row = []
                for x in range(roi_w):
                    query = roi_feats[r, :, y, x]
                    query_hat = query / query.norm()
                    locations = [(i, j) for i in range(height) for j in range(width)]
                    scores = []
                    for i, j in locations:
                        support = support_feats[t, :, i, j]
                        scores.append((query_hat * (support / support.norm())).sum())
                    ranked = sorted(range(len(locations)), key=lambda p: -scores[p].item())[:k]
                    exps = [torch.exp(scores[p]) for p in ranked]
                    total = sum(exps)
                    row.append(
                        sum(
                            e / total * support_feats[t, :, locations[p][0], locations[p][1]]
                            for e, p in zip(exps, ranked)
                        )
                    )
                rows.append(torch.stack(row, dim=-1))  # [C, w]
            per_roi.append(torch.stack(rows, dim=-2))  # [C, h, w]
        per_support.append(torch.stack(per_roi))
    return torch.stack(per_support)


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
