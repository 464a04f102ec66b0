"""
Temporal RoI Align at the paper's scale (R=300 RoIs of 7x7, C=512, 38x63 maps, K=4, T=14):

1. The operator: the straightforward batched implementation (one matmul over all supports,
   then topk and gather) against ``most_similar_roi_align`` (similarities by a matmul, "direct"),
   ``most_similar_roi_align_from_map`` with ``method="auto"`` on the PyTorch path (the compiled
   operator hidden; it takes the Gram path at this scale), and with ``method="compiled"`` (the
   compiled operator, when built): time, peak extra memory, their ratios, the largest output
   difference and the number of (support, cell) pairs whose top-K set differs from the
   straightforward one's; then the time of the selection step alone (similarities and top-K).
2. ``TemporalROIPooler`` inference (no grad: one chunk of RoIs at a time with all its
   supports; only the target is embedded) with T=14 and T=56 supports, similarity "direct",
   "auto" on the PyTorch path and "compiled": time and peak extra memory side by side; then
   TAFA's target embedding of the RoIs two ways: the 3x3 conv of the pooled RoIs, and
   ``TemporalAttentionalAggregation.embed_pooled`` from the map's tap products.
3. With ``--sweep``: the measurement behind the Gram path's switching rule
   (``temporal_roi_align.layers.roi_similarity.gram_is_cheaper``): for maps, RoI counts and
   channels around the paper's, the time of each path's similarities, the cost of one gathered
   multiply-add of the Gram path's sparse product in dense-matmul multiply-adds (the rule's
   ``GATHER_COST``), and whether the rule picks the faster path; then the same for the compiled
   operator's selection (its ``COMPILED_GATHER_COST``: the Gram matmuls and fused sparse product
   and top-k against the direct matmul and compiled top-k).

    python benchmarks/bench_temporal_roi_align.py [--device cuda] [--chunk-size 2048] [--sweep]

Proposals are drawn like a trained RPN's 300 post-NMS proposals of one image (``rpn_like_boxes``):
they crowd on a few objects. 70% are jittered copies of 6 object boxes (log-uniform size
32-400 px, aspect ratio 0.5-2; centres moved by N(0, 0.15) times the box size, sizes scaled by
exp(N(0, 0.3)), aspect ratios by exp(N(0, 0.2))), the rest background boxes anywhere in the
image, of log-uniform size 16-128 px, one in ten of them large (300-900 px); all clipped to the
image (stride 16 times the map size, 608x1008 here). About half of them are under 70 px wide,
less than 5 map pixels, so the 7x7 bins of a RoI share their map locations.

After a warm-up at a tiny size, part 1 times the implementations ``--repeats`` times,
alternately, and reports each one's fastest run (a first call also pays for the OS, or a VM's
host, backing freshly allocated memory; other processes' load only adds time), then measures
memory in one more run of each. Part 2 measures time and memory in the same run.
"""

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes
from torch.profiler import ProfilerActivity, profile
from torchvision.ops import roi_align

from temporal_roi_align.layers import (
    compiled_ops,
    most_similar_roi_align,
    most_similar_roi_align_from_map,
    roi_align_sampling,
)
from temporal_roi_align.layers.most_similar_roi_align import _SEGMENT, _gram_inputs, _Operator, _TargetMap
from temporal_roi_align.layers.roi_similarity import (
    COMPILED_GATHER_COST,
    COMPILED_GATHER_COST_UNCACHED,
    GATHER_COST,
    GATHER_COST_UNCACHED,
    GRAM_CACHE_BYTES,
    CompiledGramSimilarity,
    DirectSimilarity,
    GramSimilarity,
    gram_is_cheaper,
)
from temporal_roi_align.modeling import TemporalROIPooler

MIB = 2**20
STRIDE = 16


def straightforward_most_similar_roi_align(roi_feats, support_feats, k, return_locations=False):
    """Eq. 2-4 for all cells and supports at once: [T, R*h*w, H*W] similarities, topk, gather."""
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports = support_feats.shape[0]
    queries = F.normalize(roi_feats, dim=1).permute(0, 2, 3, 1).reshape(-1, channels)
    keys = F.normalize(support_feats, dim=1).flatten(2)  # [T, C, H*W]
    similarity = torch.matmul(queries, keys)  # [T, R*h*w, H*W]
    scores, locations = similarity.topk(k, dim=-1)
    if return_locations:
        return locations
    values = support_feats.flatten(2).transpose(1, 2)  # [T, H*W, C]
    gathered = values[torch.arange(num_supports, device=values.device)[:, None, None], locations]
    out = (scores.softmax(dim=-1).unsqueeze(-1) * gathered).sum(dim=2)  # [T, R*h*w, C]
    return out.view(num_supports, num_rois, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3).contiguous()


def on_pytorch_path(fn):
    """``fn`` run on the PyTorch path (the compiled operator hidden)."""

    def run():
        with compiled_ops.hidden():
            return fn()

    return run


def rpn_like_boxes(num_boxes, image_h, image_w, generator, num_objects=6, foreground=0.7):
    """[num_boxes, 4] proposals crowding on ``num_objects`` objects, as described in the module docstring."""

    def uniform(n, low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    def log_uniform(n, low, high):
        return torch.exp(uniform(n, math.log(low), math.log(high)))

    object_sizes, object_aspects = log_uniform(num_objects, 32, 400), log_uniform(num_objects, 0.5, 2)
    object_x, object_y = uniform(num_objects, 0, image_w), uniform(num_objects, 0, image_h)
    num_foreground = int(num_boxes * foreground)
    which = torch.randint(num_objects, (num_foreground,), generator=generator)
    sizes = object_sizes[which] * torch.exp(0.3 * torch.randn(num_foreground, generator=generator))
    aspects = object_aspects[which] * torch.exp(0.2 * torch.randn(num_foreground, generator=generator))
    widths, heights = sizes * aspects.sqrt(), sizes / aspects.sqrt()
    centre_x = object_x[which] + 0.15 * widths * torch.randn(num_foreground, generator=generator)
    centre_y = object_y[which] + 0.15 * heights * torch.randn(num_foreground, generator=generator)
    num_background = num_boxes - num_foreground
    background_sizes = log_uniform(num_background, 16, 128)
    large = torch.rand(num_background, generator=generator) < 0.1
    background_sizes = torch.where(large, uniform(num_background, 300, 900), background_sizes)
    background_aspects = log_uniform(num_background, 0.5, 2)
    widths = torch.cat([widths, background_sizes * background_aspects.sqrt()])
    heights = torch.cat([heights, background_sizes / background_aspects.sqrt()])
    centre_x = torch.cat([centre_x, uniform(num_background, 0, image_w)])
    centre_y = torch.cat([centre_y, uniform(num_background, 0, image_h)])
    boxes = torch.stack(
        [centre_x - widths / 2, centre_y - heights / 2, centre_x + widths / 2, centre_y + heights / 2], 1
    )
    return torch.minimum(boxes.clamp_min(0), torch.tensor([image_w, image_h, image_w, image_h], dtype=boxes.dtype))


def chosen_locations(roi_feats, support_feats, k, target):
    """[T, R*h*w, k] locations the operator selects (its private selection step)."""
    op = _Operator(roi_feats, support_feats, k, 2048, target)
    return op.select()[0]


def agreement(out, expected, locations, expected_locations, roi_feats, support_feats):
    """How ``out`` ([T, R, C, h, w]) and its ``locations`` ([T, R*h*w, k]) agree with the
    straightforward implementation's: the number of (support, cell) pairs whose sets of k
    locations differ, the largest output difference where they agree and overall, and, where
    they differ, the largest float64 score by which a left-out location beats a chosen one."""
    num_supports, num_rois, channels, roi_h, roi_w = out.shape
    differing = (locations.sort(dim=-1).values != expected_locations.sort(dim=-1).values).any(dim=-1)  # [T, cells]
    difference = (out - expected).abs().amax(dim=2).flatten(1)  # [T, cells]
    inversion = 0.0
    cells = roi_feats.permute(0, 2, 3, 1).reshape(-1, channels).double()
    for t, cell in differing.nonzero().tolist():
        scores = F.normalize(cells[cell], dim=0) @ F.normalize(support_feats[t].double().flatten(1), dim=0)
        chosen = torch.zeros_like(scores, dtype=torch.bool)
        chosen[locations[t, cell]] = True
        inversion = max(inversion, (scores[~chosen].max() - scores[chosen].min()).item())
    agreeing = difference[~differing]
    return {
        "differing": differing.sum().item(),
        "max_diff_agreeing": agreeing.max().item() if len(agreeing) else 0.0,
        "max_diff": difference.max().item(),
        "inversion": inversion,
    }


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    """Seconds of one call of ``fn``, and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def alternating_times(fns, device, repeats=2):
    """Seconds of ``repeats`` calls of each of ``fns``, called in turn so that load from other
    processes affects all alike, and each one's last result."""
    times, results = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            results[i] = None  # free the previous result before the next call
            elapsed, results[i] = timed(fn, device)
            times[i].append(elapsed)
    return times, results


def time_and_peak_extra_memory(fn, device):
    """Seconds of one call of ``fn``, and the peak of bytes allocated during it above what was
    allocated before (output included)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() - before
    # CPU: replay the allocator's allocation (+bytes) and free (-bytes) events in time order.
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return elapsed, peak


def similarity_times(roi_feats, target, support_feats, chunk_size, device):
    """Seconds of the similarities alone (all cells, all supports) through each path:
    direct matmul; Gram matmuls and sparse products; and the Gram path's sizes."""
    num_cells = roi_feats.shape[0] * roi_feats.shape[2] * roi_feats.shape[3]
    rows = max(1, chunk_size // (roi_feats.shape[2] * roi_feats.shape[3])) * roi_feats.shape[2] * roi_feats.shape[3]
    padded = -(-support_feats.shape[2] * support_feats.shape[3] // _SEGMENT) * _SEGMENT
    cells = roi_feats.permute(0, 2, 3, 1).reshape(num_cells, -1)
    direct = DirectSimilarity(F.normalize(cells, dim=1), support_feats, rows, padded)
    sampling, target_rows = _gram_inputs(cells, roi_feats.shape[2:], target, cells.dtype, padded)
    gram = GramSimilarity(cells.norm(dim=1), sampling, target_rows, support_feats, padded)

    def run_direct():
        for t in range(len(support_feats)):
            rows_of = direct.for_support(t)
            for first in range(0, num_cells, rows):
                rows_of(first, min(first + rows, num_cells))

    gram_tables = []

    def run_gram_matmuls():
        gram_tables[:] = [gram.for_support(t) for t in range(len(support_feats))]

    def run_gram_products():
        for rows_of in gram_tables:
            for first in range(0, num_cells, rows):
                rows_of(first, min(first + rows, num_cells))

    times, _ = alternating_times([run_direct, run_gram_matmuls, run_gram_products], device, repeats=2)
    return [min(t) for t in times], len(target_rows), len(sampling.locations), padded


def compiled_similarity_times(roi_feats, target, support_feats, chunk_size, device):
    """Seconds of the compiled operator's selection alone (all cells, all supports): the direct
    matmul alone, the direct matmul with the compiled top-k, and the Gram matmuls and fused
    sparse product and top-k (``gram_top_k``)."""
    num_cells = roi_feats.shape[0] * roi_feats.shape[2] * roi_feats.shape[3]
    rows = max(1, chunk_size // (roi_feats.shape[2] * roi_feats.shape[3])) * roi_feats.shape[2] * roi_feats.shape[3]
    num_locations = support_feats.shape[2] * support_feats.shape[3]
    cells = roi_feats.permute(0, 2, 3, 1).reshape(num_cells, -1)
    direct = DirectSimilarity(F.normalize(cells, dim=1), support_feats, rows, num_locations)
    sampling, target_rows = _gram_inputs(cells, roi_feats.shape[2:], target, cells.dtype, num_locations)
    gram = CompiledGramSimilarity(cells.norm(dim=1), sampling, target_rows, support_feats)

    def run_direct(top_k):
        for t in range(len(support_feats)):
            rows_of = direct.for_support(t)
            for first in range(0, num_cells, rows):
                similarity = rows_of(first, min(first + rows, num_cells))
                if top_k:
                    compiled_ops.rows_top_k(similarity, 4)

    def run_gram():
        for t in range(len(support_feats)):
            gram.top_k(t, 4)

    times, _ = alternating_times([lambda: run_direct(False), lambda: run_direct(True), run_gram], device, repeats=2)
    return [min(t) for t in times]


def sweep(args, device, generator):
    """Part 3: the switching rule's measurement."""
    print(
        "\n[3] Similarities alone, direct matmul vs Gram path (T=2): the cost of one gathered multiply-add\n"
        "of the sparse product in dense-matmul multiply-adds (beta; the rule uses GATHER_COST = "
        f"{GATHER_COST} up to {GRAM_CACHE_BYTES / MIB:.0f} MiB\nof Gram matrix per support, "
        f"GATHER_COST_UNCACHED = {GATHER_COST_UNCACHED} above), and whether the rule picks the faster path"
    )
    print(
        f"{'C':>5s}{'map':>9s}{'R':>5s}{'cells':>7s}{'used':>6s}{'taps/cell':>10s}{'Gram MiB':>9s}{'direct s':>10s}"
        f"{'gram s':>9s}{'(matmul':>9s}{'sparse)':>9s}{'beta':>7s}{'faster':>8s}{'rule':>7s}"
    )
    configs = [
        (channels, map_hw, num_rois)
        for channels in (512, 256, 64)
        for map_hw in ((19, 32), (38, 63), (76, 126))
        for num_rois in (10, 50, 300)
    ]
    compiled_rows = []
    for channels, (height, width), num_rois in configs:
        target_map = torch.randn(channels, height, width, generator=generator).to(device)
        supports = torch.randn(2, channels, height, width, generator=generator).to(device)
        boxes = rpn_like_boxes(num_rois, height * STRIDE, width * STRIDE, generator).to(device)
        roi_feats = roi_align(target_map[None], [boxes], args.roi_size, 1 / STRIDE, 2, True)
        target = _TargetMap(roi_feats, target_map, boxes, 1 / STRIDE, 2, True, "gram")
        with torch.no_grad():
            (direct, matmuls, products), used, taps, padded = similarity_times(
                roi_feats, target, supports, args.chunk_size, device
            )
        num_cells = roi_feats.shape[0] * args.roi_size**2
        seconds_per_madd = direct / (num_cells * channels * height * width * 2)
        beta = products / (taps * padded * 2) / seconds_per_madd
        faster = "gram" if matmuls + products < direct else "direct"
        rule = "gram" if gram_is_cheaper(num_cells, used, taps, channels, used * padded * 4) else "direct"
        print(
            f"{channels:5d}{height:>4d}x{width:<4d}{num_rois:5d}{num_cells:7d}{used:6d}{taps / num_cells:10.1f}"
            f"{used * padded * 4 / MIB:9.1f}"
            f"{direct:10.4f}{matmuls + products:9.4f}{matmuls:9.4f}{products:9.4f}{beta:7.1f}{faster:>8s}{rule:>7s}"
        )
        if compiled_ops.available(device):
            with torch.no_grad():
                matmul, with_top_k, fused = compiled_similarity_times(
                    roi_feats, target, supports, args.chunk_size, device
                )
            # The fused product's cost beyond the top-k scan both branches pay, per gathered multiply-add.
            beta = (fused - matmuls - (with_top_k - matmul)) / (taps * height * width * 2) / seconds_per_madd
            faster = "gram" if fused < with_top_k else "direct"
            cheaper = gram_is_cheaper(num_cells, used, taps, channels, used * height * width * 4, compiled=True)
            compiled_rows.append(
                f"{channels:5d}{height:>4d}x{width:<4d}{num_rois:5d}{with_top_k:10.4f}{fused:9.4f}{beta:7.1f}"
                f"{faster:>8s}{'gram' if cheaper else 'direct':>7s}"
            )
    if compiled_rows:
        print(
            "\n[3b] The compiled operator's selection, direct matmul and compiled top-k vs Gram matmuls and fused\n"
            "sparse product and top-k (T=2): beta, the fused product's cost beyond the top-k scan per gathered\n"
            f"multiply-add, in the direct matmul's multiply-adds (COMPILED_GATHER_COST = {COMPILED_GATHER_COST}, "
            f"COMPILED_GATHER_COST_UNCACHED = {COMPILED_GATHER_COST_UNCACHED})"
        )
        print(f"{'C':>5s}{'map':>9s}{'R':>5s}{'direct s':>10s}{'gram s':>9s}{'beta':>7s}{'faster':>8s}{'rule':>7s}")
        print("\n".join(compiled_rows))


def num_locations_ratio(args):
    """Map locations per RoI cell: the tap products' cost relative to the RoIs' conv."""
    return args.height * args.width / (args.num_rois * args.roi_size**2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-rois", type=int, default=300)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--height", type=int, default=38)
    parser.add_argument("--width", type=int, default=63)
    parser.add_argument("--roi-size", type=int, default=7)
    parser.add_argument("--topk", type=int, default=4)
    parser.add_argument("--supports", type=int, default=14)
    parser.add_argument("--long-supports", type=int, default=56)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--sampling-ratio", type=int, default=2, help="ROIAlign samples per bin and axis (0: adaptive)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each implementation in part 1")
    parser.add_argument("--sweep", action="store_true", help="also measure the switching rule (part 3)")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    size, channels, k, num_supports = args.roi_size, args.channels, args.topk, args.supports
    num_cells = args.num_rois * size * size
    image_h, image_w = args.height * STRIDE, args.width * STRIDE
    pooling = {"spatial_scale": 1 / STRIDE, "sampling_ratio": args.sampling_ratio, "aligned": True}

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"Temporal RoI Align benchmark on {device.type} ({where}), float32; load average {os.getloadavg()[0]:.2f}")
    print(
        f"R={args.num_rois} RoIs of {size}x{size}, C={channels}, support maps {args.height}x{args.width}, "
        f"K={k}, chunk_size={args.chunk_size}, ROIAlignV2 with sampling ratio {args.sampling_ratio}, stride {STRIDE}"
    )
    if device.type == "cuda":
        print("Peak extra memory: torch.cuda.max_memory_allocated() during the call minus memory allocated before.")
    else:
        print(
            "Peak extra memory: the peak, over the call, of bytes allocated minus bytes freed by torch's CPU\n"
            "allocator (torch.profiler profile_memory events, replayed in time order). Inputs made before the\n"
            "call are excluded, the output and all temporaries are included; MKL's internal scratch is not seen."
        )

    # Warm-up (thread pools, MKL, allocator) at a tiny size.
    tiny_map, tiny_supports = randn(channels, 8, 8), randn(2, channels, 8, 8)
    tiny_boxes = rpn_like_boxes(2, 8 * STRIDE, 8 * STRIDE, generator).to(device)
    tiny_rois = roi_align(tiny_map[None], [tiny_boxes], size, **pooling)
    straightforward_most_similar_roi_align(tiny_rois, tiny_supports, k)
    most_similar_roi_align(tiny_rois, tiny_supports, k, args.chunk_size)
    most_similar_roi_align_from_map(tiny_rois, tiny_map, tiny_boxes, tiny_supports, k, **pooling, method="gram")

    # 1. The operator against the straightforward batched implementation.
    target_map = randn(channels, args.height, args.width)
    support_feats = randn(num_supports, channels, args.height, args.width)
    boxes = rpn_like_boxes(args.num_rois, image_h, image_w, generator).to(device)
    roi_feats = roi_align(target_map[None], [boxes], size, **pooling)
    widths = (boxes[:, 2] - boxes[:, 0]).cpu()
    compiled = compiled_ops.available(device)
    print(compiled_ops.status())
    with compiled_ops.hidden():
        target = _TargetMap(roi_feats, target_map, boxes, **pooling, method="auto")
    targets = [None, target] + (
        [_TargetMap(roi_feats, target_map, boxes, **pooling, method="compiled")] if compiled else []
    )
    cells = roi_feats.permute(0, 2, 3, 1).flatten(0, 2)
    padded = -(-args.height * args.width // _SEGMENT) * _SEGMENT
    branches = [
        "gram" if _gram_inputs(cells, (size, size), t, torch.float32, padded) else "direct" for t in targets[1:]
    ]
    baseline = lambda: straightforward_most_similar_roi_align(roi_feats, support_feats, k)  # noqa: E731
    direct = lambda: most_similar_roi_align(roi_feats, support_feats, k, args.chunk_size)  # noqa: E731
    auto = on_pytorch_path(
        lambda: most_similar_roi_align_from_map(
            roi_feats, target_map, boxes, support_feats, k, **pooling, chunk_size=args.chunk_size
        )
    )
    fns = [baseline, direct, auto]
    names = ["straightforward batched", "most_similar_roi_align", f"..._from_map (PyTorch auto: {branches[0]})"]
    if compiled:
        fns.append(
            lambda: most_similar_roi_align_from_map(
                roi_feats, target_map, boxes, support_feats, k, **pooling, chunk_size=args.chunk_size, method="compiled"
            )
        )
        names.append(f"..._from_map (compiled: {branches[1]})")
    with torch.no_grad():
        times, outputs = alternating_times(fns, device, args.repeats)
        expected_locations = straightforward_most_similar_roi_align(roi_feats, support_feats, k, return_locations=True)
        agreements = [
            agreement(
                out,
                outputs[0],
                chosen_locations(roi_feats, support_feats, k, chosen),
                expected_locations,
                roi_feats,
                support_feats,
            )
            for out, chosen in zip(outputs[1:], targets)
        ]
        del outputs, expected_locations
        memories = [time_and_peak_extra_memory(fn, device)[1] for fn in fns]
        select_times, _ = alternating_times(
            [lambda t=t: _Operator(roi_feats, support_feats, k, args.chunk_size, t).select() for t in targets],
            device,
        )
    best = [min(t) for t in times]
    print(
        f"\n[1] The operator, T={num_supports}, no grad. Proposal widths (px): 10%/50%/90% quantiles "
        + "/".join(f"{q:.0f}" for q in widths.quantile(torch.tensor([0.1, 0.5, 0.9])).tolist())
    )
    print(f"{'':38s}{'time (s)':>10s}{'ratio':>8s}{'peak extra memory (MiB)':>25s}{'ratio':>8s}")
    for name, seconds, memory in zip(names, best, memories):
        print(f"{name:38s}{seconds:10.3f}{seconds / best[0]:8.3f}{memory / MIB:25.1f}{memory / memories[0]:8.3f}")
    print(
        f"speed-up over straightforward: direct {best[0] / best[1]:.2f}x, PyTorch auto {best[0] / best[2]:.2f}x"
        + (f", compiled {best[0] / best[3]:.2f}x ({best[2] / best[3]:.2f}x PyTorch auto)" if compiled else "")
        + " (targets: >= 10x compiled, memory ratio <= 0.089, outputs equal to 1e-4)"
    )
    for name, runs in zip(names, times):
        print(f"runs (s), {name}: " + ", ".join(f"{t:.3f}" for t in runs))
    print(
        f"\nagreement with straightforward over {num_supports * num_cells} (support, cell) pairs:\n"
        f"{'':38s}{'top-K sets differing':>22s}{'max |diff| where equal':>24s}{'max |diff|':>12s}"
        f"{'largest inversion':>19s}"
    )
    for name, stats in zip(names[1:], agreements):
        print(
            f"{name:38s}{stats['differing']:22d}{stats['max_diff_agreeing']:24.2e}{stats['max_diff']:12.2e}"
            f"{stats['inversion']:19.2e}"
        )
    print(
        "(largest inversion: where a set differs, the most by which a left-out location's float64 cosine\n"
        "similarity exceeds a chosen one's: a tie up to float32 rounding when about 1e-7 or less)"
    )
    select_times = [min(t) for t in select_times]
    gflop = 2 * num_cells * channels * num_supports * args.height * args.width / 1e9
    print(
        f"selection alone (similarities and top-K, all supports): direct {select_times[0]:.3f} s "
        f"({gflop:.0f} GFLOP matmul), PyTorch auto ({branches[0]}) {select_times[1]:.3f} s"
        + (f", compiled ({branches[1]}) {select_times[2]:.3f} s" if compiled else "")
    )
    roi_feats = support_feats = target = targets = None  # freed before part 2

    # 2. The pooler at inference: memory grows with T only by one chunk's most similar features.
    methods = {"direct": "direct", "PyTorch auto": "auto"}
    if compiled:
        methods["compiled"] = "compiled"
    poolers = {
        name: TemporalROIPooler(
            size,
            (1.0 / STRIDE,),
            0,
            "ROIAlignV2",
            channels=channels,
            topk=k,
            chunk_size=args.chunk_size,
            similarity=method,
        ).to(device)
        for name, method in methods.items()
    }
    for each in poolers.values():
        each.load_state_dict(poolers["direct"].state_dict())
    pooler = poolers["direct"]
    feature_map = target_map[None]
    pooler_boxes = [Boxes(boxes)]
    embed_gflop = 2 * num_cells * channels * channels * 9 / 1e9
    num_blocks = pooler.aggregation.num_blocks
    logit_gflop = 2 * num_cells * num_blocks * 9 * channels / 1e9
    print(
        f"\n[2] TemporalROIPooler inference (no grad: RoIs in chunks, all supports at once), one image,"
        f" {args.num_rois} RoIs, N={num_blocks} blocks, shared embedding, ROIAlignV2 adaptive sampling;"
        f" similarity 'direct', 'auto' on the PyTorch path (the Gram path and TAFA's embed_pooled where cheaper)"
        f" and 'compiled' (what the default 'auto' takes where built)\n"
        f"per support: similarity matmul {gflop / num_supports:.1f} GFLOP, attention logits {logit_gflop:.2f} GFLOP "
        f"(embedding it would cost {embed_gflop:.1f}); once: target embedding and its projections "
        f"{2 * embed_gflop:.1f} GFLOP"
    )
    print(
        f"{'supports T':>10s}{'similarity':>14s}{'time (s)':>10s}{'peak extra memory (MiB)':>26s}"
        f"{'support maps (MiB, input)':>28s}{'max |diff| to direct':>22s}"
    )
    for count in (num_supports, args.long_supports):
        supports = [[randn(count, channels, args.height, args.width)]]  # [level][image] -> [T, C, H, W]
        outputs = {}
        for method, each in poolers.items():
            run = lambda method=method, each=each, outputs=outputs, supports=supports: outputs.__setitem__(  # noqa: E731
                method, each([feature_map], pooler_boxes, supports)
            )
            with torch.no_grad():
                pooler_time, pooler_memory = time_and_peak_extra_memory(
                    on_pytorch_path(run) if method == "PyTorch auto" else run, device
                )
            input_mib = supports[0][0].numel() * supports[0][0].element_size() / MIB
            difference = (outputs[method] - outputs["direct"]).abs().max().item()
            print(
                f"{count:10d}{method:>14s}{pooler_time:10.3f}{pooler_memory / MIB:26.1f}{input_mib:28.1f}"
                f"{difference:22.2e}"
            )
        supports = outputs = None  # freed before the next count
    # The target embedding of TAFA: 3x3 conv of the pooled RoIs vs tap products of the map.
    aggregation = pooler.aggregation
    pooled = roi_align(feature_map, [boxes], size, 1 / STRIDE, 0, True)
    sampling = roi_align_sampling(boxes, (args.height, args.width), (size, size), 1 / STRIDE, 0, True)
    with torch.no_grad():
        (conv_times, map_times), (by_conv, by_map) = alternating_times(
            [lambda: aggregation.embed(pooled), lambda: aggregation.embed_pooled(target_map, sampling, (size, size))],
            device,
            args.repeats,
        )
    print(
        f"TAFA's target embedding of the {args.num_rois} RoIs: 3x3 conv of the pooled RoIs {min(conv_times):.3f} s "
        f"({embed_gflop:.1f} GFLOP); embed_pooled (tap products of the map, "
        f"{embed_gflop * num_locations_ratio(args):.1f} "
        f"GFLOP, and a sparse product) {min(map_times):.3f} s; max |diff| {(by_conv - by_map).abs().max().item():.2e}"
    )
    if args.sweep:
        sweep(args, device, generator)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min; other processes share the machine)")


if __name__ == "__main__":
    main()
