"""
Seq-NMS speed on a synthetic video: scripted object tracks (each a cloud of jittered,
pre-NMS-like duplicates with per-frame score dips and gaps) plus random low-score clutter,
a fixed number of boxes per frame.

1. ``seq_nms_arrays`` at full size (default 500 frames x 300 boxes), with 30 classes as in
   ImageNet VID, and with all boxes of one class (the worst case: one problem of 300 boxes
   a frame, random clutter chaining across frames).
2. On a smaller video (default 100 frames x 60 boxes, 3 classes: a few dozen boxes of a
   class per frame, as in the full-size one), ``seq_nms_arrays`` against a
   straightforward loop in the style of the public implementations (links as Python lists,
   the whole dynamic programme redone for every sequence), with a check that both keep the
   same boxes with the same scores.

    python benchmarks/bench_seq_nms.py [--frames 500 --boxes 300 --small-frames 100 --small-boxes 60]

Times are CPU seconds of this process (``time.process_time``: other processes' load on a
shared machine does not count), the fastest of ``--repeats`` runs (the loop runs once).
"""

import argparse
import time

import numpy as np

from temporal_roi_align.postprocessing import seq_nms_arrays


def synthetic_video(num_frames, boxes_per_frame, num_classes=30, num_tracks=12, seed=0):
    """Per-frame XYXY boxes, scores and classes of a 1000x600 video; each track has
    ``boxes_per_frame // 25`` duplicates per frame (at least 2), clutter fills the rest."""
    rng = np.random.default_rng(seed)
    duplicates = max(2, boxes_per_frame // 25)
    width, height = 1000.0, 600.0
    tracks = []
    for _ in range(num_tracks):
        start = int(rng.integers(0, num_frames // 2))
        stop = int(rng.integers(start + num_frames // 4, num_frames + 1))
        tracks.append(
            dict(
                frames=(start, stop),
                cls=int(rng.integers(0, num_classes)),
                origin=rng.uniform([100, 100], [width - 100, height - 100]),
                velocity=rng.normal(0, 1.5, size=2),
                size=rng.uniform(40, 140, size=2),
                score=rng.uniform(0.4, 0.95),
            )
        )
    boxes, scores, classes = [], [], []
    for t in range(num_frames):
        frame_boxes, frame_scores, frame_classes = [], [], []
        for track in tracks:
            start, stop = track["frames"]
            if not start <= t < stop or rng.random() < 0.03:  # gaps break links
                continue
            center = np.clip(track["origin"] + track["velocity"] * (t - start), 0, [width, height])
            size = track["size"] * rng.uniform(0.85, 1.15, size=(duplicates, 1))
            jitter = rng.normal(0, 0.12, size=(duplicates, 2)) * track["size"]
            centers = center + jitter
            frame_boxes.append(np.concatenate([centers - size / 2, centers + size / 2], axis=1))
            quality = 0.3 if rng.random() < 0.1 else 1.0  # motion blur: a score dip
            frame_scores.append(track["score"] * quality * rng.uniform(0.5, 1.0, size=duplicates))
            frame_classes.append(np.full(duplicates, track["cls"]))
        num_clutter = max(0, boxes_per_frame - sum(len(s) for s in frame_scores))
        xy = rng.uniform([0, 0], [width, height], size=(num_clutter, 2))
        wh = rng.uniform(20, 200, size=(num_clutter, 2))
        frame_boxes.append(np.concatenate([xy, xy + wh], axis=1))
        frame_scores.append(rng.beta(1, 12, size=num_clutter))
        frame_classes.append(rng.integers(0, num_classes, size=num_clutter))
        boxes.append(np.concatenate(frame_boxes)[:boxes_per_frame])
        scores.append(np.concatenate(frame_scores)[:boxes_per_frame])
        classes.append(np.concatenate(frame_classes)[:boxes_per_frame])
    return boxes, scores, classes


def iou_row(box, boxes):
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def loop_seq_nms(boxes, scores, classes, link_iou=0.5, nms_iou=0.3):
    """One sequence at a time, each found by redoing the whole dynamic programme over Python lists."""
    num_frames = len(boxes)
    kept = [{} for _ in range(num_frames)]
    for c in np.unique(np.concatenate(classes)):
        members = [np.flatnonzero(frame_classes == c) for frame_classes in classes]
        cls_boxes = [b[m] for b, m in zip(boxes, members)]
        cls_scores = [s[m].tolist() for s, m in zip(scores, members)]
        links = [
            [list(np.flatnonzero(iou_row(b, cls_boxes[t + 1]) >= link_iou)) for b in cls_boxes[t]]
            for t in range(num_frames - 1)
        ]
        active = [[True] * len(s) for s in cls_scores]
        while any(any(frame) for frame in active):
            best = [[-np.inf] * len(s) for s in cls_scores]
            pred = [[-1] * len(s) for s in cls_scores]
            for t in range(num_frames):
                for i, score in enumerate(cls_scores[t]):
                    if active[t][i]:
                        best[t][i] = score
            for t in range(num_frames - 1):
                for i, successors in enumerate(links[t]):
                    if not active[t][i] or best[t][i] <= 0:
                        continue
                    for j in successors:
                        if active[t + 1][j] and best[t][i] + cls_scores[t + 1][j] > best[t + 1][j]:
                            best[t + 1][j] = best[t][i] + cls_scores[t + 1][j]
                            pred[t + 1][j] = i
            end_value, t, i = max((v, t, i) for t, row in enumerate(best) for i, v in enumerate(row))
            sequence = [(t, i)]
            while pred[t][i] >= 0:
                t, i = t - 1, pred[t][i]
                sequence.append((t, i))
            value = float(np.mean([cls_scores[t][i] for t, i in sequence]))
            for t, i in sequence:
                kept[t][int(members[t][i])] = value
                for j in np.flatnonzero(iou_row(cls_boxes[t][i], cls_boxes[t]) >= nms_iou):
                    active[t][j] = False
                active[t][i] = False
    return kept


def fastest(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=300)
    parser.add_argument("--small-frames", type=int, default=100)
    parser.add_argument("--small-boxes", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    for num_classes in (30, 1):
        video = synthetic_video(args.frames, args.boxes, num_classes=num_classes)
        seconds, (keep, _) = fastest(lambda video=video: seq_nms_arrays(*video), args.repeats)
        num_kept = sum(len(k) for k in keep)
        classes = "1 class" if num_classes == 1 else f"{num_classes} classes"
        print(
            f"seq_nms_arrays, {args.frames} frames x {args.boxes} boxes, {classes}: "
            f"{seconds:.2f} s ({num_kept} of {args.frames * args.boxes} boxes kept)"
        )

    small = synthetic_video(args.small_frames, args.small_boxes, num_classes=3)
    fast_seconds, (keep, new_scores) = fastest(lambda: seq_nms_arrays(*small), args.repeats)
    loop_seconds, expected = fastest(lambda: loop_seq_nms(*small), 1)
    got = [dict(zip(k.tolist(), s.tolist())) for k, s in zip(keep, new_scores)]
    same_boxes = all(sorted(g) == sorted(e) for g, e in zip(got, expected))
    max_diff = max((abs(g[i] - e[i]) for g, e in zip(got, expected) for i in g if i in e), default=0.0)
    print(
        f"{args.small_frames} frames x {args.small_boxes} boxes, 3 classes: "
        f"seq_nms_arrays {fast_seconds * 1e3:.0f} ms, "
        f"loop {loop_seconds:.2f} s, ratio {loop_seconds / fast_seconds:.0f}x; "
        f"same kept boxes: {same_boxes}, max score difference {max_diff:.1e}"
    )


if __name__ == "__main__":
    main()
