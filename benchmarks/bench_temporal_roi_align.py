"""
Temporal RoI Align at the paper's scale (R=300 RoIs of 7x7, C=512, 38x63 maps, K=4, T=14):

1. ``most_similar_roi_align`` against the straightforward batched implementation (one matmul
   over all supports, then topk and gather): time, peak extra memory, output agreement, and
   GFLOP/s of the similarity matmul, the step neither can avoid.
2. ``TemporalROIPooler`` inference (no grad: one chunk of RoIs at a time with all its
   supports; only the target is embedded) with T=14 and T=56 supports: time and peak extra
   memory side by side.

    python benchmarks/bench_temporal_roi_align.py [--device cuda] [--chunk-size 2048]

After a warm-up at a tiny size, part 1 times the two implementations ``--repeats`` times,
alternately, and reports each one's fastest run (a first call also pays for the OS, or a VM's
host, backing freshly allocated memory; other processes' load only adds time), then measures
memory in one more run of each. Part 2 measures time and memory in the same run.
"""

import argparse
import os
import time

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes
from torch.profiler import ProfilerActivity, profile

from temporal_roi_align.layers import most_similar_roi_align
from temporal_roi_align.modeling import TemporalROIPooler

MIB = 2**20


def straightforward_most_similar_roi_align(roi_feats, support_feats, k):
    """Eq. 2-4 for all cells and supports at once: [T, R*h*w, H*W] similarities, topk, gather."""
    num_rois, channels, roi_h, roi_w = roi_feats.shape
    num_supports = support_feats.shape[0]
    queries = F.normalize(roi_feats, dim=1).permute(0, 2, 3, 1).reshape(-1, channels)
    keys = F.normalize(support_feats, dim=1).flatten(2)  # [T, C, H*W]
    similarity = torch.matmul(queries, keys)  # [T, R*h*w, H*W]
    scores, locations = similarity.topk(k, dim=-1)
    values = support_feats.flatten(2).transpose(1, 2)  # [T, H*W, C]
    gathered = values[torch.arange(num_supports, device=values.device)[:, None, None], locations]
    out = (scores.softmax(dim=-1).unsqueeze(-1) * gathered).sum(dim=2)  # [T, R*h*w, C]
    return out.view(num_supports, num_rois, roi_h, roi_w, channels).permute(0, 1, 4, 2, 3).contiguous()


def chunked_similarity_matmul(roi_feats, support_feats, chunk_size):
    """Only the similarity matmuls of ``most_similar_roi_align`` (same chunks, one reused buffer)."""
    cells_per_roi = roi_feats.shape[2] * roi_feats.shape[3]
    queries = F.normalize(roi_feats, dim=1).permute(0, 2, 3, 1).reshape(-1, roi_feats.shape[1])
    rows = max(1, chunk_size // cells_per_roi) * cells_per_roi
    buffer = queries.new_empty(min(rows, queries.shape[0]), support_feats.shape[2] * support_feats.shape[3])
    for support in support_feats:
        keys = F.normalize(support.flatten(1), dim=0)
        for start in range(0, queries.shape[0], rows):
            chunk = queries[start : start + rows]
            torch.mm(chunk, keys, out=buffer[: chunk.shape[0]])


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


def random_boxes(num_boxes, image_h, image_w, generator):
    corners = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([image_w * 0.8, image_h * 0.8])
    sizes = 16 + torch.rand(num_boxes, 2, generator=generator) * torch.tensor([image_w * 0.5, image_h * 0.5])
    return Boxes(torch.cat([corners, (corners + sizes).minimum(torch.tensor([image_w, image_h]))], dim=1))


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
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each implementation in part 1")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    size, channels, k, num_supports = args.roi_size, args.channels, args.topk, args.supports
    num_cells = args.num_rois * size * size
    num_locations = args.height * args.width

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"Temporal RoI Align benchmark on {device.type} ({where}), float32; load average {os.getloadavg()[0]:.2f}")
    print(
        f"R={args.num_rois} RoIs of {size}x{size}, C={channels}, support maps {args.height}x{args.width}, "
        f"K={k}, chunk_size={args.chunk_size}"
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
    tiny_rois, tiny_supports = randn(2, channels, size, size), randn(2, channels, 8, 8)
    straightforward_most_similar_roi_align(tiny_rois, tiny_supports, k)
    most_similar_roi_align(tiny_rois, tiny_supports, k, args.chunk_size)

    # 1. The operator against the straightforward batched implementation.
    roi_feats = randn(args.num_rois, channels, size, size)
    support_feats = randn(num_supports, channels, args.height, args.width)
    ours = lambda: most_similar_roi_align(roi_feats, support_feats, k, args.chunk_size)  # noqa: E731
    baseline = lambda: straightforward_most_similar_roi_align(roi_feats, support_feats, k)  # noqa: E731
    with torch.no_grad():
        (baseline_times, ours_times), (expected, out) = alternating_times([baseline, ours], device, args.repeats)
        baseline_time, ours_time = min(baseline_times), min(ours_times)
        difference = (out - expected).abs()
        max_diff = difference.max().item()
        cells_differing = difference.amax(dim=2).gt(1e-4).sum().item()
        del difference, out, expected
        _, baseline_memory = time_and_peak_extra_memory(baseline, device)
        _, ours_memory = time_and_peak_extra_memory(ours, device)
        queries = F.normalize(roi_feats, dim=1).permute(0, 2, 3, 1).reshape(-1, channels)
        keys = F.normalize(support_feats, dim=1).flatten(2)
        matmul_times, similarities = alternating_times(
            [
                lambda: chunked_similarity_matmul(roi_feats, support_feats, args.chunk_size),
                lambda: torch.matmul(queries, keys),
            ],
            device,
        )
        matmul_time, batched_matmul_time = map(min, matmul_times)
        del similarities, queries, keys, roi_feats, support_feats
    gflop = 2 * num_cells * channels * num_supports * num_locations / 1e9
    print(f"\n[1] most_similar_roi_align vs straightforward batched, T={num_supports}, no grad")
    print(f"{'':32s}{'time (s)':>10s}{'peak extra memory (MiB)':>26s}   (time: best of the runs)")
    print(f"{'straightforward batched':32s}{baseline_time:10.3f}{baseline_memory / MIB:26.1f}")
    print(f"{'most_similar_roi_align':32s}{ours_time:10.3f}{ours_memory / MIB:26.1f}")
    print(
        f"{'ratio (target <= 0.35 / 0.25)':32s}{ours_time / baseline_time:10.3f}{ours_memory / baseline_memory:26.3f}"
    )
    print(
        "runs (s): straightforward "
        + ", ".join(f"{t:.3f}" for t in baseline_times)
        + "; most_similar_roi_align "
        + ", ".join(f"{t:.3f}" for t in ours_times)
    )
    print(
        f"outputs: max |diff| = {max_diff:.2e}; cells differing by more than 1e-4: {cells_differing} "
        f"of {num_supports * num_cells}"
    )
    print(
        f"similarity matmul ({gflop:.1f} GFLOP): chunked as in the operator {matmul_time:.3f} s = "
        f"{gflop / matmul_time:.1f} GFLOP/s; one batched matmul {batched_matmul_time:.3f} s = "
        f"{gflop / batched_matmul_time:.1f} GFLOP/s"
    )
    print(f"operator time outside the similarity matmul: {ours_time - matmul_time:.3f} s")

    # 2. The pooler at inference: memory grows with T only by one chunk's most similar features.
    stride = 16
    pooler = TemporalROIPooler(
        size, (1.0 / stride,), 0, "ROIAlignV2", channels=channels, topk=k, chunk_size=args.chunk_size
    ).to(device)
    feature_map = randn(1, channels, args.height, args.width)
    boxes = [random_boxes(args.num_rois, args.height * stride, args.width * stride, generator).to(device)]
    embed_gflop = 2 * num_cells * channels * channels * 9 / 1e9
    num_blocks = pooler.aggregation.num_blocks
    logit_gflop = 2 * num_cells * num_blocks * 9 * channels / 1e9
    print(
        f"\n[2] TemporalROIPooler inference (no grad: RoIs in chunks, all supports at once), one image, "
        f"{args.num_rois} RoIs, N={num_blocks} blocks, shared embedding\n"
        f"per support: similarity matmul {gflop / num_supports:.1f} GFLOP, attention logits {logit_gflop:.2f} GFLOP "
        f"(embedding it would cost {embed_gflop:.1f}); once: target embedding and its projections "
        f"{2 * embed_gflop:.1f} GFLOP"
    )
    print(f"{'supports T':>10s}{'time (s)':>10s}{'peak extra memory (MiB)':>26s}{'support maps (MiB, input)':>28s}")
    for count in (num_supports, args.long_supports):
        supports = [[randn(1, channels, args.height, args.width) for _ in range(count)]]
        with torch.no_grad():
            pooler_time, pooler_memory = time_and_peak_extra_memory(
                lambda: pooler([feature_map], boxes, supports), device
            )
        input_mib = sum(s.numel() * s.element_size() for s in supports[0]) / MIB
        print(f"{count:10d}{pooler_time:10.3f}{pooler_memory / MIB:26.1f}{input_mib:28.1f}")
        del supports
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min; other processes share the machine)")


if __name__ == "__main__":
    main()
