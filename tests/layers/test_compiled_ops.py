"""The compiled operator of Most Similar RoI Align against the PyTorch path; its fallback."""

import importlib
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes

from temporal_roi_align.layers import compiled_ops, iter_most_similar_roi_align_from_map
from temporal_roi_align.layers.roi_similarity import CompiledGramSimilarity, gram_is_cheaper
from temporal_roi_align.modeling import TemporalROIPooler

from helpers import REPO
from helpers.most_similar import (
    GRAM_CASES,
    from_map,
    gram_case_inputs,
    pooled_rois,
    reference_most_similar_roi_align,
    varied_boxes,
)

most_similar_roi_align_module = importlib.import_module("temporal_roi_align.layers.most_similar_roi_align")
HIDE = "TRA_NO_COMPILED_OPS"


def require(device: str):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU here: the CUDA kernels are neither built nor run")
    if not compiled_ops.available(torch.device(device)):
        pytest.skip(f"compiled operator not available on {device}: {compiled_ops.status()}")


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    require(request.param)
    return request.param


def inner_boxes(num_boxes, image_h, image_w, generator):
    """Boxes of all sizes inside the image: every RoI cell samples the map (no all-zero cells)."""
    image = torch.tensor([image_w, image_h])
    first = torch.rand(num_boxes, 2, generator=generator) * image * 0.9
    return torch.cat([first, first + torch.rand(num_boxes, 2, generator=generator) * (image - first)], dim=1)


def exact_scores(roi_feats, support_feats):
    """[T, cells, H*W] float64 cosine similarities."""
    queries = F.normalize(roi_feats.double(), dim=1).permute(0, 2, 3, 1).flatten(0, 2)
    return torch.matmul(queries, F.normalize(support_feats.double().flatten(2), dim=1))


def chosen(method, roi_feats, target_map, boxes, support_feats, k, pooling):
    """[T, cells, k] locations chosen by the operator's selection step."""
    target = most_similar_roi_align_module._TargetMap(
        roi_feats, target_map, boxes, pooling["spatial_scale"], pooling["sampling_ratio"], pooling["aligned"], method
    )
    return most_similar_roi_align_module._Operator(roi_feats, support_feats, k, 2048, target).select()[0]


def assert_same_up_to_ties(out, expected, locations, expected_locations, scores, tolerance):
    """Same top-K sets except where the k-th and (k+1)-th float64 scores tie to 1e-6; outputs equal
    to ``tolerance`` where the sets agree."""
    k = locations.shape[-1]
    same = (locations.sort(dim=-1).values == expected_locations.sort(dim=-1).values).all(dim=-1)  # [T, cells]
    top = scores.topk(min(k + 1, scores.shape[-1]), dim=-1).values
    tied = (top[..., k - 1] - top[..., -1]).abs() < 1e-6 if top.shape[-1] > k else torch.zeros_like(same)
    assert (same | tied).all()
    # Every chosen set is a top-K set of the exact scores.
    assert (scores.gather(2, locations) >= top[..., k - 1 : k] - 1e-6).all()
    cells = out.permute(0, 1, 3, 4, 2).flatten(1, 3)  # [T, cells, C]
    expected_cells = expected.permute(0, 1, 3, 4, 2).flatten(1, 3)
    torch.testing.assert_close(cells[same], expected_cells[same], rtol=tolerance, atol=tolerance)


# --- the kernels ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("columns, k", [(1, 1), (7, 3), (64, 64), (257, 5), (513, 1)])
def test_rows_top_k_equals_topk(device, dtype, columns, k):
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(37, columns + 3, generator=generator, dtype=dtype).to(device)[:, :columns]  # strided rows
    scores, indices = compiled_ops.rows_top_k(rows, k)
    expected = rows.topk(k, dim=1)
    assert torch.equal(scores, expected.values) and torch.equal(indices, expected.indices)
    # Ties: the lowest columns win.
    ties = torch.zeros(2, columns, dtype=dtype, device=device)
    assert compiled_ops.rows_top_k(ties, k)[1].tolist() == [list(range(k))] * 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("columns, k", [(5, 5), (64, 2), (300, 4), (1000, 9)])
def test_gram_top_k_equals_sparse_product_and_topk(device, dtype, columns, k):
    generator = torch.Generator().manual_seed(1)
    num_rows, num_cells = 23, 41
    gram = torch.randn(num_rows, columns, generator=generator, dtype=dtype)
    counts = torch.randint(1, 9, (num_cells,), generator=generator)
    counts[:3] = 0  # cells that sample nothing: all dot products 0
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    locations = torch.randint(num_rows, (int(offsets[-1]),), generator=generator)
    weights = torch.rand(len(locations), generator=generator, dtype=dtype)
    norms = torch.rand(num_cells, generator=generator, dtype=dtype) + 0.5
    args = [t.to(device) for t in (gram, locations, weights, offsets, norms)]
    scores, indices = compiled_ops.gram_top_k(*args, k)
    dots = F.embedding_bag(locations, gram, offsets, mode="sum", per_sample_weights=weights, include_last_offset=True)
    expected = dots.topk(k, dim=1)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(scores.cpu(), expected.values / norms[:, None], rtol=tolerance, atol=tolerance)
    assert torch.equal(indices[3:].cpu(), expected.indices[3:])
    assert indices[:3].tolist() == [list(range(k))] * 3 and not scores[:3].any()


def test_kernels_refuse_bad_arguments():
    require("cpu")
    gram = torch.randn(4, 6)
    offsets, norms = torch.tensor([0, 2]), torch.ones(1)
    with pytest.raises(RuntimeError, match="is not a row of gram"):
        compiled_ops.gram_top_k(gram, torch.tensor([0, 4]), torch.ones(2), offsets, norms, 2)
    with pytest.raises(RuntimeError, match=r"k=7 must be in \[1, 6\]"):
        compiled_ops.gram_top_k(gram, torch.tensor([0, 3]), torch.ones(2), offsets, norms, 7)
    with pytest.raises(RuntimeError, match="offsets must not decrease"):
        compiled_ops.gram_top_k(gram, torch.tensor([0, 3]), torch.ones(2), torch.tensor([0, 2, 1]), torch.ones(2), 2)


# --- the operator: compiled against PyTorch ----------------------------------------------------


@pytest.mark.parametrize(
    "channels, map_hw, support_hw, num_supports, num_rois, roi_hw, k, scale, ratio, aligned, chunk_size", GRAM_CASES
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_equals_pytorch_paths(
    device, channels, map_hw, support_hw, num_supports, num_rois, roi_hw, k, scale, ratio, aligned, chunk_size, dtype
):
    """The GRAM_CASES (odd shapes, T=1, k = H*W, one-cell RoIs, RoIs larger than the map, partly
    and wholly outside it, two-stage top-k) on both branches of the compiled operator (Gram and
    direct similarities), against the PyTorch Gram and direct paths and the loop reference."""
    roi_feats, target_map, boxes, support_feats, pooling = gram_case_inputs(
        channels, map_hw, support_hw, num_supports, num_rois, roi_hw, scale, ratio, aligned, dtype
    )
    scores = exact_scores(roi_feats, support_feats)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    inputs = [t.to(device) for t in (roi_feats, target_map, boxes, support_feats)]
    for method in ("gram", "direct"):
        expected = from_map(method, roi_feats, target_map, boxes, support_feats, k, pooling, chunk_size=chunk_size)
        expected_locations = chosen(method, roi_feats, target_map, boxes, support_feats, k, pooling)
        for branch in (True, False):  # the compiled Gram branch, and the direct one
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(most_similar_roi_align_module, "gram_is_cheaper", lambda *a, b=branch: b)
                out = from_map("compiled", *inputs, k, pooling, chunk_size=chunk_size)
                locations = chosen("compiled", *inputs, k, pooling)
                with torch.no_grad():
                    chunks = iter_most_similar_roi_align_from_map(*inputs, k, **pooling, chunk_size=chunk_size)
                    iterated = torch.cat([f for _, f in chunks], dim=1)
            assert out.shape == expected.shape and out.dtype == dtype
            torch.testing.assert_close(iterated, out, rtol=0, atol=0)
            assert_same_up_to_ties(out.cpu(), expected, locations.cpu(), expected_locations, scores, tolerance)
    # Cells that sample the map agree with the loop reference (its all-zero cells are NaN).
    inside = roi_feats.norm(dim=1) > 0
    reference = reference_most_similar_roi_align(roi_feats, support_feats, k).permute(0, 1, 3, 4, 2)[:, inside]
    torch.testing.assert_close(out.cpu().permute(0, 1, 3, 4, 2)[:, inside], reference, rtol=1e-5, atol=1e-5)


def test_paper_like_scale_agrees_up_to_ties():
    """60 RoIs of 7x7 on a 19x32 map with C=64 (several blocks of columns): the Gram branch."""
    require("cpu")
    generator = torch.Generator().manual_seed(3)
    target_map = torch.randn(64, 19, 32, generator=generator)
    support_feats = torch.randn(3, 64, 19, 32, generator=generator)
    boxes = inner_boxes(60, 19 * 16, 32 * 16, generator)
    pooling = {"spatial_scale": 1 / 16, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (7, 7), **pooling)
    args = (roi_feats, target_map, boxes, support_feats, 4, pooling)
    assert_same_up_to_ties(
        from_map("compiled", *args), from_map("gram", *args), chosen("compiled", *args), chosen("gram", *args),
        exact_scores(roi_feats, support_feats), 1e-6,
    )  # fmt: skip


def test_all_zero_cells_take_the_first_k_locations(device):
    """RoIs outside the map: every similarity is 0, and the compiled operator breaks the tie by
    taking locations 0..k-1 (equal weights): the mean of those support vectors."""
    generator = torch.Generator().manual_seed(14)
    target_map, support_feats = torch.randn(4, 5, 6, generator=generator), torch.randn(2, 4, 5, 6, generator=generator)
    boxes = torch.tensor([[-500.0, -500.0, -400.0, -400.0], [900.0, 900.0, 1000.0, 1000.0]])
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (3, 3), **pooling)
    inputs = [t.to(device) for t in (roi_feats, target_map, boxes, support_feats)]
    for method in ("compiled", "auto"):
        out = from_map(method, *inputs, 3, pooling).cpu()
        expected = support_feats.flatten(2)[:, :, :3].mean(dim=2)  # [T, C]
        torch.testing.assert_close(out, expected[:, None, :, None, None].expand_as(out), rtol=1e-6, atol=1e-6)


def test_gradients_equal_the_pytorch_paths_and_gradcheck():
    """No backward of its own: with gradients the compiled operator selects, and the PyTorch
    code recomputes the chosen scores and weighted sums differentiably."""
    require("cpu")
    generator = torch.Generator().manual_seed(9)
    target_map = torch.randn(6, 5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    support_feats = torch.randn(2, 6, 4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = varied_boxes(4, 40, 56, generator, torch.float64)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    upstream = torch.randn(2, len(boxes), 6, 3, 3, generator=generator, dtype=torch.float64)
    inside = (pooled_rois(target_map, boxes, (3, 3), **pooling).norm(dim=1) > 0)[None, :, None]
    grads = {}
    for method in ("compiled", "gram", "direct"):
        roi_feats = pooled_rois(target_map, boxes, (3, 3), **pooling)
        out = from_map(method, roi_feats, target_map, boxes, support_feats, 3, pooling)
        grads[method] = torch.autograd.grad((out * upstream * inside).sum(), (target_map, support_feats))
    for method in ("gram", "direct"):
        for grad, expected in zip(grads["compiled"], grads[method]):
            assert expected.abs().sum() > 0
            torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)

    small_map = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    small_boxes = torch.tensor([[2.0, 3.0, 30.0, 25.0], [-6.0, 10.0, 20.0, 40.0]], dtype=torch.float64)
    roi_feats = pooled_rois(small_map, small_boxes, (2, 2), **pooling).requires_grad_()
    supports = torch.randn(2, 3, 2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda r, s: from_map("compiled", r, small_map, small_boxes, s, 3, pooling, chunk_size=4), (roi_feats, supports)
    )


def test_gradients_take_the_differentiable_path(monkeypatch):
    """With gradients the compiled operator still selects (no gradient there) and PyTorch
    recomputes the chosen scores differentiably: same numbers as without gradients."""
    require("cpu")
    calls = []
    for name in ("gram_top_k", "rows_top_k"):
        kernel = getattr(compiled_ops, name)
        monkeypatch.setattr(compiled_ops, name, lambda *a, kernel=kernel: calls.append(1) or kernel(*a))
    generator = torch.Generator().manual_seed(4)
    target_map, support_feats = torch.randn(8, 6, 7, generator=generator), torch.randn(2, 8, 5, 5, generator=generator)
    boxes = inner_boxes(8, 48, 56, generator)
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (2, 2), **pooling)
    with torch.no_grad():
        untracked = from_map("compiled", roi_feats, target_map, boxes, support_feats, 2, pooling)
    assert calls and not untracked.requires_grad
    calls.clear()
    tracked = from_map("compiled", roi_feats.requires_grad_(), target_map, boxes, support_feats, 2, pooling)
    assert calls and tracked.requires_grad
    torch.testing.assert_close(tracked, untracked, rtol=1e-6, atol=1e-6)
    tracked.sum().backward()
    assert roi_feats.grad.abs().sum() > 0


def test_half_precision_and_autocast():
    require("cpu")
    generator = torch.Generator().manual_seed(12)
    target_map, support_feats = torch.randn(8, 6, 7, generator=generator), torch.randn(2, 8, 5, 5, generator=generator)
    boxes = varied_boxes(5, 48, 56, generator)[:2]
    pooling = {"spatial_scale": 1 / 8, "sampling_ratio": 2, "aligned": True}
    roi_feats = pooled_rois(target_map, boxes, (2, 2), **pooling)
    expected = from_map("gram", roi_feats, target_map, boxes, support_feats, 2, pooling)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = from_map("compiled", roi_feats, target_map, boxes, support_feats, 2, pooling)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    half = from_map(
        "compiled", roi_feats.bfloat16(), target_map.bfloat16(), boxes, support_feats.bfloat16(), 2, pooling
    )
    assert half.dtype == torch.bfloat16


# --- choosing the compiled operator, and the fallback -------------------------------------------


def test_auto_takes_the_compiled_operator_and_hidden_falls_back(monkeypatch):
    """ "auto" uses the compiled operator where it is built; hidden (TRA_NO_COMPILED_OPS=1, as
    without a compiler) the PyTorch path runs and gives the same outputs."""
    require("cpu")
    built = []

    class Recording(CompiledGramSimilarity):
        def __init__(self, *args):
            built.append(True)
            super().__init__(*args)

    monkeypatch.setattr(most_similar_roi_align_module, "CompiledGramSimilarity", Recording)
    generator = torch.Generator().manual_seed(11)
    pooling = {"spatial_scale": 1 / 16, "sampling_ratio": 2, "aligned": True}
    target_map, support_feats = (
        torch.randn(64, 6, 8, generator=generator),
        torch.randn(2, 64, 6, 6, generator=generator),
    )
    boxes = inner_boxes(25, 6 * 16, 8 * 16, generator)
    roi_feats = pooled_rois(target_map, boxes, (7, 7), **pooling)
    compiled = from_map("auto", roi_feats, target_map, boxes, support_feats, 2, pooling)
    assert built
    built.clear()
    with compiled_ops.hidden():
        assert not compiled_ops.available(torch.device("cpu")) and f"{HIDE}=1" in compiled_ops.status()
        fallback = from_map("auto", roi_feats, target_map, boxes, support_feats, 2, pooling)
        with pytest.raises(ValueError, match=rf"method='compiled' on cpu: .*{HIDE}=1"):
            from_map("compiled", roi_feats, target_map, boxes, support_feats, 2, pooling)
    assert not built
    torch.testing.assert_close(compiled, fallback, rtol=1e-6, atol=1e-6)
    assert compiled_ops.available(torch.device("cpu")) and HIDE not in os.environ


def test_compiled_cost_rule():
    # The compiled sparse product is cheaper per gathered multiply-add than PyTorch's.
    assert gram_is_cheaper(14700, 2394, 6 * 14700, 64, 23 * 2**20, compiled=True)
    assert not gram_is_cheaper(14700, 2394, 6 * 14700, 64, 23 * 2**20)
    assert not gram_is_cheaper(49, 49, 16 * 49, 512, 2**20, compiled=True)  # one RoI on a large map


@pytest.mark.parametrize("with_grad", [False, True])
def test_pooler_compiled_equals_pytorch(with_grad):
    require("cpu")
    torch.manual_seed(0)
    x = [torch.randn(2, 8, 16, 20)]
    corner = torch.rand(40, 2) * torch.tensor([60.0, 40.0])
    boxes = torch.cat([corner, corner + 8 + torch.rand(40, 2) * 60], dim=1)  # inside the 128x160 images
    box_lists = [Boxes(boxes[:25]), Boxes(boxes[25:])]
    supports = [[torch.randn(3, 8, 16, 20), torch.randn(2, 8, 17, 20)]]
    poolers = {}
    for similarity in ("compiled", "gram", "direct"):
        poolers[similarity] = TemporalROIPooler(
            3, (1 / 8,), 2, "ROIAlignV2", channels=8, topk=3, num_attention_blocks=2, similarity=similarity
        )
        poolers[similarity].load_state_dict(poolers["compiled"].state_dict())
    if with_grad:
        x[0].requires_grad_()
    with torch.set_grad_enabled(with_grad):
        outputs = {name: pooler(x, box_lists, supports) for name, pooler in poolers.items()}
    torch.testing.assert_close(outputs["compiled"], outputs["gram"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs["compiled"], outputs["direct"], rtol=1e-5, atol=1e-5)


# --- building -------------------------------------------------------------------------------------


def run_tool(*args, **env):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "build_ops.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_without_a_compiler_nothing_is_built_and_one_line_says_so():
    out = run_tool(CXX="/nonexistent/c++")
    assert out == "[ops] no C++ compiler (/nonexistent/c++): Most Similar RoI Align runs its PyTorch path"
    assert run_tool("--status", **{HIDE: "1"}) == f"PyTorch path: compiled operator hidden by {HIDE}=1"
