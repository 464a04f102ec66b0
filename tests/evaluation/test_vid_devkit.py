"""The ImageNet VID devkit AP and FGFA's motion-bucket AP (evaluation/vid_devkit.py) on hand-made
cases, and against a loop re-implementation of FGFA's vid_eval_motion on random data."""

import math

import numpy as np
import pytest

from temporal_roi_align.evaluation import (
    MOTION_RANGES,
    devkit_ap,
    devkit_aps,
    iou_thresholds,
    pixel_iou,
    voc_ap,
)

SLOW, MEDIUM, FAST = (MOTION_RANGES[b] for b in ("slow", "medium", "fast"))
RANGES = {"all": None, "slow": SLOW, "medium": MEDIUM, "fast": FAST}


def frame(gts=(), dets=()):
    """gts: (box, class, motion); dets: (box, score, class)."""
    return {
        "gt_boxes": np.array([g[0] for g in gts], dtype=np.float64).reshape(-1, 4),
        "gt_classes": [g[1] for g in gts],
        "gt_motion": [g[2] for g in gts],
        "boxes": np.array([d[0] for d in dets], dtype=np.float64).reshape(-1, 4),
        "scores": [d[1] for d in dets],
        "classes": [d[2] for d in dets],
    }


def test_pixel_iou_counts_pixels_inclusively():
    a = [0, 0, 9, 9]  # 10 x 10 pixels
    # Columns 5..9 shared: 5 x 10 = 50 pixels of 100 + 100 - 50.
    assert pixel_iou(a, [5, 0, 14, 9]) == pytest.approx(50 / 150)
    # One shared column (x = 9): 10 pixels of 190.
    assert pixel_iou(a, [9, 0, 18, 9]) == pytest.approx(10 / 190)
    assert pixel_iou(a, [10, 0, 19, 9]) == 0.0  # touching, no shared pixel
    assert pixel_iou(a, [50, 50, 59, 59]) == 0.0
    assert pixel_iou(a, a) == 1.0
    # Broadcasting: rows paired, or the (N, M) matrix.
    boxes = np.array([a, [5, 0, 14, 9], [10, 0, 19, 9]], dtype=float)
    assert pixel_iou(boxes, boxes).tolist() == [1.0, 1.0, 1.0]
    matrix = pixel_iou(boxes[:, None], boxes[None])
    assert matrix.shape == (3, 3) and matrix[0, 1] == pytest.approx(1 / 3) and matrix[0, 2] == 0
    assert pixel_iou(np.zeros((0, 4))[:, None], boxes[None]).shape == (0, 3)


def test_iou_threshold_of_small_objects():
    boxes = [
        [0, 0, 9, 9],  # 10 x 10: 100 / (20 * 20) = 0.25
        [0, 0, 19, 19],  # 20 x 20: 400 / (30 * 30) = 0.444
        [0, 0, 29, 19],  # 30 x 20: 600 / (40 * 30) = 0.5 exactly
        [0, 0, 99, 99],  # 100 x 100: 10000 / 12100 = 0.83, capped at 0.5
    ]
    assert iou_thresholds(boxes) == pytest.approx([0.25, 400 / 900, 0.5, 0.5])
    assert iou_thresholds(np.zeros((0, 4))).shape == (0,)


def test_small_object_found_below_iou_half():
    gt = ([0, 0, 9, 9], 0, 1.0)  # threshold 0.25
    # IoU 1/3 (columns 5..9 shared) >= 0.25: found, although below 0.5.
    assert devkit_ap([frame([gt], [([5, 0, 14, 9], 0.9, 0)])], 1)[0] == 1.0
    # IoU 2 * 10 / (200 - 20) = 0.11 < 0.25: a false positive and a miss.
    assert devkit_ap([frame([gt], [([8, 0, 17, 9], 0.9, 0)])], 1)[0] == 0.0
    # A large object keeps 0.5: IoU 1/3 misses it.
    big = ([0, 0, 99, 99], 0, 1.0)
    assert devkit_ap([frame([big], [([50, 0, 149, 99], 0.9, 0)])], 1)[0] == 0.0


def test_voc_ap_all_points():
    # Ranked TP, FP, TP over 2 objects: recall .5 .5 1, precision 1 .5 2/3.
    # Envelope from the right: 1 up to recall .5, 2/3 up to 1: AP = .5 * 1 + .5 * 2/3 = 5/6
    # (COCO's 101 points would give (51 + 50 * 2/3) / 101 = 0.835, VOC07's 11 points 0.848).
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6)
    # Recall stops at .5: the rest of the curve has precision 0.
    assert voc_ap([0.5], [1.0]) == pytest.approx(0.5)
    # A later, higher precision lifts the earlier points: 1/2 at recall .5, then 2/3 at 1.
    assert voc_ap([0.0, 0.5, 1.0], [0.0, 0.5, 2 / 3]) == pytest.approx(2 / 3)
    assert voc_ap([], []) == 0.0


def test_devkit_ap_ranks_detections_over_frames():
    a, b = [0, 0, 49, 49], [100, 0, 149, 49]
    frames = [
        frame([(a, 0, 1.0)], [(a, 0.9, 0), ([300, 0, 349, 49], 0.8, 0)]),
        frame([(b, 0, 1.0)], [(b, 0.7, 0)]),
    ]
    # TP .9, FP .8, TP .7 over 2 objects: AP 5/6 (test_voc_ap_all_points).
    assert devkit_ap(frames, 1)[0] == pytest.approx(5 / 6)
    # A second detection on a found object is a false positive; each object is found once.
    frames = [frame([(a, 0, 1.0)], [(a, 0.9, 0), (a, 0.8, 0)])]
    assert devkit_ap(frames, 1)[0] == pytest.approx(1.0)  # FP after full recall: no effect
    frames = [frame([(a, 0, 1.0)], [(a, 0.9, 1)])]  # wrong class: FP for 1, miss for 0
    aps = devkit_ap(frames, 2)
    assert aps[0] == 0.0 and math.isnan(aps[1])  # class 1 has no object: nan


def test_motion_buckets_include_both_bounds():
    # Five objects of one class, motion IoU .95, .9, .8, .7, .3; only those at .9 and .7 found.
    boxes = [[i * 100, 0, i * 100 + 49, 49] for i in range(5)]
    motion = [0.95, 0.9, 0.8, 0.7, 0.3]
    frames = [frame(list(zip(boxes, [0] * 5, motion)), [(boxes[1], 0.9, 0), (boxes[3], 0.8, 0)])]
    aps = devkit_aps(frames, 1, RANGES)
    # slow [.9, 1]: .95 and .9 -> 1 of 2 found, no FP: AP .5.
    assert aps["slow"][0] == pytest.approx(0.5)
    # medium [.7, .9]: .9, .8, .7 -> 2 of 3 found first: AP 2/3.
    assert aps["medium"][0] == pytest.approx(2 / 3)
    # fast [0, .7]: .7 and .3 -> the .7 one found; the .9 detection is on another bucket's
    # object (neither TP nor FP): AP .5.
    assert aps["fast"][0] == pytest.approx(0.5)
    assert aps["all"][0] == pytest.approx(2 / 5)


def two_objects_and_a_false_positive(fp_box):
    """A slow object S at x 0..99, a fast one F at x 200..299 (class 0), both found at .5 and .4;
    a false positive at .9. Per bucket: FP (weight w), then the bucket's TP, the other bucket's
    detection counting for nothing, over 1 object: AP = 1 / (1 + w)."""
    s, f = [0, 0, 99, 99], [200, 0, 299, 99]
    dets = [(fp_box, 0.9, 0), (s, 0.5, 0), (f, 0.4, 0)]
    return devkit_aps([frame([(s, 0, 0.95), (f, 0, 0.3)], dets)], 1, RANGES)


def test_unmatched_detection_charged_to_the_bucket_it_overlaps_most():
    # Overlaps S only (IoU 1/3 < 0.5): a full FP for slow (AP 1/2), none for fast (AP 1).
    aps = two_objects_and_a_false_positive([50, 0, 149, 99])
    assert aps["slow"][0] == pytest.approx(0.5)
    assert aps["fast"][0] == pytest.approx(1.0)
    assert math.isnan(aps["medium"][0])  # no medium object
    assert aps["all"][0] == pytest.approx(2 / 3)  # FP, TP, TP: 1/2, 2/3 at recall 1/2, 1
    # Overlaps both, F more (IoU 2000 / 24000 with S, 4000 / 22000 with F): fast only.
    fp = [80, 0, 239, 99]
    assert pixel_iou(fp, [0, 0, 99, 99]) < pixel_iou(fp, [200, 0, 299, 99]) < 0.5
    aps = two_objects_and_a_false_positive(fp)
    assert aps["slow"][0] == pytest.approx(1.0)
    assert aps["fast"][0] == pytest.approx(0.5)


def test_unmatched_detection_on_a_tie_is_a_partial_false_positive():
    # A slow object S and two fast ones F1, F2, all found (.5, .4, .3); a FP at .9 touching none
    # (IoU 0 with each: a tie). FGFA charges the fraction of the frame's objects OUTSIDE the
    # bucket: 2/3 for slow, 1/3 for fast.
    s, f1, f2 = [0, 0, 99, 99], [200, 0, 299, 99], [400, 0, 499, 99]
    gts = [(s, 0, 0.95), (f1, 0, 0.3), (f2, 0, 0.5)]
    dets = [([600, 0, 699, 99], 0.9, 0), (s, 0.5, 0), (f1, 0.4, 0), (f2, 0.3, 0)]
    aps = devkit_aps([frame(gts, dets)], 1, RANGES)
    # slow: FP 2/3 then TP: precision 1 / (1 + 2/3) = .6 at recall 1.
    assert aps["slow"][0] == pytest.approx(0.6)
    # fast: FP 1/3, S's detection (nothing), TP, TP: precision 3/4 at recall .5, 2 / (2 + 1/3)
    # = 6/7 at recall 1; the envelope is 6/7 everywhere: AP 6/7.
    assert aps["fast"][0] == pytest.approx(6 / 7)
    assert aps["all"][0] == pytest.approx(3 / 4)  # FP 1, TPs: 3/4 at recall 1


def test_unmatched_detection_in_a_frame_without_objects():
    # Frame 0: S (.95) and F (.3), both found at .5 and .4. Frame 1: no object, a FP at .9.
    # Its weight is the share of motion entries in the bucket, where FGFA's motion file gives the
    # empty frame one entry 0: entries .95, .3, 0 -> slow 1/3, fast 2/3, medium 0.
    s, f = [0, 0, 99, 99], [200, 0, 299, 99]
    frames = [
        frame([(s, 0, 0.95), (f, 0, 0.3)], [(s, 0.5, 0), (f, 0.4, 0)]),
        frame([], [([0, 0, 99, 99], 0.9, 0)]),
    ]
    aps = devkit_aps(frames, 1, RANGES)
    assert aps["slow"][0] == pytest.approx(1 / (1 + 1 / 3))
    assert aps["fast"][0] == pytest.approx(1 / (1 + 2 / 3))
    assert math.isnan(aps["medium"][0])
    assert aps["all"][0] == pytest.approx(2 / 3)  # a full FP: FP, TP, TP
    # An object at .9 counts for slow and medium: entries .9, .3, 0 -> medium 1/3.
    frames[0]["gt_motion"] = [0.9, 0.3]
    aps = devkit_aps(frames, 1, RANGES)
    assert aps["medium"][0] == pytest.approx(1 / (1 + 1 / 3))
    assert aps["slow"][0] == pytest.approx(1 / (1 + 1 / 3))


def test_overlap_with_an_object_of_another_class_decides_the_bucket():
    # Classes dog (0) and cat (1). A slow cat C, a slow dog S and a fast dog F; the dogs are
    # found; a dog detection lies on the cat (it cannot match it: other class).
    c, s, f = [0, 0, 99, 99], [200, 0, 299, 99], [400, 0, 499, 99]
    gts = [(c, 1, 0.95), (s, 0, 0.95), (f, 0, 0.3)]
    dets = [(c, 0.9, 0), (s, 0.5, 0), (f, 0.4, 0)]
    aps = devkit_aps([frame(gts, dets)], 2, RANGES)
    # It overlaps a slow object most: a full FP for the dogs' slow AP (1/2), none for fast (1).
    assert aps["slow"].tolist() == pytest.approx([0.5, 0.0])  # the cat is missed
    assert aps["fast"][0] == pytest.approx(1.0)
    # No fast cat: the cat stays out of the fast mean (1.0, not 0.5).
    assert math.isnan(aps["fast"][1])
    assert np.nanmean(aps["fast"]) == pytest.approx(1.0)
    assert np.nanmean(aps["slow"]) == pytest.approx(0.25)


def test_detection_matched_to_an_object_of_another_bucket_counts_for_nothing():
    # Matching ignores buckets: the detection takes the object of best IoU, here the fast F
    # (IoU 1) over the slow S (IoU 8000 / 12000), although S is still free; for slow it then counts for
    # nothing and S stays missed.
    s, f = [0, 0, 99, 99], [20, 0, 119, 99]
    aps = devkit_aps([frame([(s, 0, 0.95), (f, 0, 0.3)], [(f, 0.9, 0)])], 1, RANGES)
    assert aps["slow"][0] == 0.0
    assert aps["fast"][0] == 1.0


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match=r"frames\[0\].*classes \[3\] not in \[0, 2\)"):
        devkit_ap([frame([([0, 0, 9, 9], 3, 1.0)])], 2)
    with pytest.raises(ValueError, match=r"frames\[0\]: 2 gt_boxes with 1 gt_classes"):
        devkit_ap([dict(frame([([0, 0, 9, 9], 0, 1.0)] * 2), gt_classes=[0])], 1)
    no_motion = frame([([0, 0, 9, 9], 0, 1.0)])
    del no_motion["gt_motion"]
    assert devkit_ap([no_motion], 1)[0] == 0.0  # not needed without a motion range
    with pytest.raises(ValueError, match="gt_motion"):
        devkit_ap([no_motion], 1, SLOW)
    with pytest.raises(ValueError, match="missing 'scores'"):
        devkit_ap([{k: v for k, v in no_motion.items() if k != "scores"}], 1)


def fgfa_reference(frames, num_classes, motion_range):
    """FGFA's vid_eval_motion (one motion range, all areas), written from its rules with loops."""
    low, high = motion_range
    entries = [m for f in frames for m in f["gt_motion"]] + [0.0] * sum(1 for f in frames if len(f["gt_classes"]) == 0)
    empty_weight = sum(1 for m in entries if low <= m <= high) / len(entries)

    def iou(a, b):
        iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
        ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
        if iw <= 0 or ih <= 0:
            return 0.0
        ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        return iw * ih / (ua - iw * ih)

    npos = [0] * num_classes
    ranked = []  # (score, class, tp, fp)
    for f in frames:
        gts = list(zip(f["gt_boxes"].tolist(), f["gt_classes"], f["gt_motion"]))
        ignored = [not (low <= m <= high) for _, _, m in gts]
        for (_, c, _), ig in zip(gts, ignored):
            npos[c] += 0 if ig else 1
        thr = []
        for box, _, _ in gts:
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            thr.append(min(0.5, w * h / ((w + 10) * (h + 10))))
        detected = [False] * len(gts)
        dets = sorted(zip(f["boxes"].tolist(), f["scores"], f["classes"]), key=lambda d: -d[1])
        for box, score, c in dets:
            best, k_best, best_ig, best_nig = -1, -1, -1, -1
            for k, (gt_box, gt_c, _) in enumerate(gts):
                ov = iou(box, gt_box)
                if ov >= thr[k] and ov > best and not detected[k] and c == gt_c:
                    best, k_best = ov, k
                if ignored[k] and ov > best_ig:
                    best_ig = ov
                if not ignored[k] and ov > best_nig:
                    best_nig = ov
            tp = fp = 0.0
            if k_best >= 0:
                detected[k_best] = True
                tp = 0.0 if ignored[k_best] else 1.0
            elif best_nig > best_ig:
                fp = 1.0
            elif best_ig > best_nig:
                fp = 0.0
            elif not gts:
                fp = empty_weight
            else:
                fp = sum(ignored) / len(gts)
            ranked.append((score, c, tp, fp))
    ranked.sort(key=lambda r: -r[0])
    aps = []
    for c in range(num_classes):
        if npos[c] == 0:
            aps.append(float("nan"))
            continue
        tp_sum = fp_sum = 0.0
        rec, prec = [], []
        for _, rc, tp, fp in ranked:
            if rc == c:
                tp_sum, fp_sum = tp_sum + tp, fp_sum + fp
                rec.append(tp_sum / npos[c])
                prec.append(tp_sum / max(tp_sum + fp_sum, np.finfo(float).eps))
        mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        aps.append(sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1)))
    return aps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_on_random_frames(seed):
    rng = np.random.default_rng(seed)
    num_classes = 3

    def boxes(n):
        xy = rng.integers(0, 60, (n, 2))
        return np.concatenate([xy, xy + rng.integers(0, 30, (n, 2))], 1).astype(float)

    frames = []
    for _ in range(25):
        g = int(rng.integers(0, 4))
        gt_boxes = boxes(g)
        # Detections near the objects (integer jitter: exact IoU ties happen) and anywhere.
        near = gt_boxes + rng.integers(-4, 5, (g, 4)) if g else np.zeros((0, 4))
        det_boxes = np.concatenate([near, boxes(int(rng.integers(0, 4)))])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
        n = len(det_boxes)
        frames.append(
            {
                "gt_boxes": gt_boxes,
                "gt_classes": rng.integers(0, num_classes, g).tolist(),
                # Some objects exactly on the bucket bounds.
                "gt_motion": rng.choice([0.0, 0.2, 0.7, 0.8, 0.9, 0.95, 1.0], g).tolist(),
                "boxes": det_boxes,
                "scores": rng.permutation(1000)[:n].astype(float) / 1000,  # distinct
                "classes": rng.integers(0, num_classes, n).tolist(),
            }
        )
    ours = devkit_aps(frames, num_classes, dict(RANGES, all=(0.0, 1.0)))
    for name, motion_range in RANGES.items():
        expected = fgfa_reference(frames, num_classes, motion_range or (0.0, 1.0))
        np.testing.assert_allclose(ours[name], expected, rtol=1e-12, atol=1e-12, err_msg=name)
    assert all(0 < np.nanmean(ours[name]) < 1 for name in RANGES)
    # With all objects in range, the devkit's plain AP (no motion at all) is the same.
    np.testing.assert_allclose(devkit_ap(frames, num_classes), ours["all"], rtol=1e-12)
