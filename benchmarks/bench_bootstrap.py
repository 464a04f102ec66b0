"""
Paired bootstrap of the YouTube-VIS metrics: ``bootstrap_ytvis`` (each model's videos matched
once, then the accumulation redone for every redraw) against re-running the whole evaluation
(``ytvis_metrics``) on every redraw, its copies renamed, as bootstrap_ytvis did before.

The videos are synthetic at the size of the toy VIS val set of ``tools/quickstart.py --task
vis``: 16 videos of 20 frames of 128x160, 3 classes, 1-2 tracks a video, two models of about
40 predictions each (most tracks found with jittered masks, a few false positives).

    python benchmarks/bench_bootstrap.py [--samples 200 --videos 16 --frames 20]

Times are CPU seconds of this process (``time.process_time``: other processes' load on a
shared machine does not count). The two results are compared; they differ only where
detections of different videos have exactly the same score (the re-evaluation ranks them by
draw order, bootstrap_ytvis by video).
"""

import argparse
import time

import numpy as np
import pycocotools.mask as mask_util

from temporal_roi_align.evaluation.bootstrap import bootstrap_ytvis
from temporal_roi_align.evaluation.ytvis_metric import ytvis_metrics

HEIGHT, WIDTH, CATEGORIES = 128, 160, [(1, "domestic_cat"), (2, "horse"), (3, "motorcycle")]


def rle(mask):
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))


def track_masks(rng, frames, shift=0.0):
    """A box moving across the frames, visible in about 90% of them (None elsewhere)."""
    h, w = rng.integers(20, 60, 2)
    y, x = rng.integers(0, HEIGHT - h), rng.integers(0, WIDTH - w)
    dy, dx = rng.integers(-2, 3, 2)
    masks = []
    for f in range(frames):
        if rng.random() < 0.1:
            masks.append(None)
            continue
        y0 = int(np.clip(y + dy * f + shift * h * rng.normal(), 0, HEIGHT - h))
        x0 = int(np.clip(x + dx * f + shift * w * rng.normal(), 0, WIDTH - w))
        mask = np.zeros((HEIGHT, WIDTH), bool)
        mask[y0 : y0 + h, x0 : x0 + w] = True
        masks.append(rle(mask))
    return masks


def synthetic_case(num_videos, frames, seed=0):
    """(video ids, ground truth, [predictions of model 1, of model 2])."""
    rng = np.random.default_rng(seed)
    ground_truth, models = [], [[], []]
    for v in range(num_videos):
        for _ in range(rng.integers(1, 3)):
            category = int(rng.integers(1, 4))
            ground_truth.append(
                {"video_id": v, "category_id": category, "iscrowd": 0, "segmentations": track_masks(rng, frames)}
            )
            for predictions, found in zip(models, (0.9, 0.8)):
                if rng.random() < found:
                    predictions.append(
                        {
                            "video_id": v,
                            "category_id": category if rng.random() < 0.9 else int(rng.integers(1, 4)),
                            "score": float(rng.uniform(0.3, 1.0)),
                            "segmentations": track_masks(rng, frames, shift=0.1),
                        }
                    )
        for predictions in models:
            for _ in range(rng.poisson(1.3)):
                predictions.append(
                    {
                        "video_id": v,
                        "category_id": int(rng.integers(1, 4)),
                        "score": float(rng.uniform(0.05, 0.6)),
                        "segmentations": track_masks(rng, frames),
                    }
                )
    return list(range(num_videos)), ground_truth, models


def bootstrap_by_reevaluation(video_ids, categories, ground_truth, predictions, metrics, samples, seed):
    """The same redraws, each scored by ytvis_metrics on renamed copies of the drawn videos."""
    videos = list(video_ids)
    gt_by_video, predictions_by_video = {}, [{} for _ in predictions]
    for instance in ground_truth:
        gt_by_video.setdefault(instance["video_id"], []).append(instance)
    for by_video, instances in zip(predictions_by_video, predictions):
        for instance in instances:
            by_video.setdefault(instance["video_id"], []).append(instance)
    rng = np.random.default_rng(seed)
    out = np.empty((samples, len(predictions), len(metrics)))
    for s in range(samples):
        drawn = [(copy, videos[i]) for copy, i in enumerate(rng.integers(len(videos), size=len(videos)))]
        gt = [dict(g, video_id=copy) for copy, v in drawn for g in gt_by_video.get(v, [])]
        for j, by_video in enumerate(predictions_by_video):
            dt = [dict(p, video_id=copy) for copy, v in drawn for p in by_video.get(v, [])]
            results = ytvis_metrics([copy for copy, _ in drawn], categories, gt, dt)
            out[s, j] = [results[m] for m in metrics]
    return out


def timed(fn):
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()

    video_ids, ground_truth, models = synthetic_case(args.videos, args.frames)
    print(
        f"{len(video_ids)} videos of {args.frames} frames, {len(ground_truth)} ground-truth tracks, "
        f"{[len(p) for p in models]} predictions, {args.samples} redraws, metrics AP and AP50"
    )
    arguments = (video_ids, CATEGORIES, ground_truth, models, ("AP", "AP50"), args.samples, 0)
    before, slow = timed(lambda: bootstrap_by_reevaluation(*arguments))
    after, fast = timed(lambda: bootstrap_ytvis(*arguments))
    print(f"re-evaluating every redraw: {before:8.3f} s")
    print(f"bootstrap_ytvis:            {after:8.3f} s")
    print(f"ratio:                      {before / after:8.1f}x")
    if not np.array_equal(np.isnan(fast), np.isnan(slow)):
        raise AssertionError("the two bootstraps are nan in different redraws")
    print(f"largest difference:         {np.nanmax(np.abs(fast - slow)):.3g} (AP points)")


if __name__ == "__main__":
    main()
