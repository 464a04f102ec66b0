"""The ImageNet VID devkit's AP and FGFA's motion-bucket AP, as pure functions on arrays.

Two protocols (see docs/evaluation.md):

* the devkit's (FGFA ``lib/dataset/imagenet_vid_eval.py``, ``vid_eval``): boxes are
  pixel-inclusive (a box spans ``x1 - x0 + 1`` pixels), an object counts as found by a
  detection of its class with IoU >= ``min(0.5, wh / ((w + 10)(h + 10)))``, detections are
  matched greedily by score, and AP is the area under the VOC "all points" precision envelope;
* FGFA's motion buckets (``lib/dataset/imagenet_vid_eval_motion.py``, ``vid_eval_motion``): the
  same matching over all objects, then, for a range ``[low, high]`` of motion IoU (both ends
  included), only objects in the range are positives and a detection's false-positive weight
  depends on which objects it overlaps (:func:`devkit_aps`).

Boxes are XYXY arrays of shape (N, 4) in image pixels; classes are contiguous ids in
``[0, num_classes)``. APs are fractions in [0, 1].
"""

from typing import Dict, Hashable, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["pixel_iou", "iou_thresholds", "voc_ap", "devkit_ap", "devkit_aps"]

MotionRange = Optional[Tuple[float, float]]


def pixel_iou(boxes1, boxes2):
    """IoU of pixel-inclusive XYXY boxes, as the devkit computes it (widths ``x1 - x0 + 1``).

    The arrays broadcast against each other over their leading dimensions: (N, 4) with (N, 4)
    pairs the rows; ``boxes1[:, None]`` with ``boxes2[None]`` gives the (N, M) matrix.
    Boxes that share no pixel have IoU 0. Computed in float64.
    """
    b1, b2 = np.asarray(boxes1, dtype=np.float64), np.asarray(boxes2, dtype=np.float64)
    iw = np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]) + 1
    ih = np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area1 = (b1[..., 2] - b1[..., 0] + 1) * (b1[..., 3] - b1[..., 1] + 1)
    area2 = (b2[..., 2] - b2[..., 0] + 1) * (b2[..., 3] - b2[..., 1] + 1)
    union = area1 + area2 - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def iou_thresholds(gt_boxes, default=0.5, pixel_tolerance=10):
    """Per-object IoU threshold of the devkit: ``min(default, wh / ((w + t)(h + t)))``.

    ``w, h`` are the pixel-inclusive width and height of each (G, 4) box, ``t`` the pixel
    tolerance: small objects may be found with a lower IoU.
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    w = gt_boxes[:, 2] - gt_boxes[:, 0] + 1
    h = gt_boxes[:, 3] - gt_boxes[:, 1] + 1
    return np.minimum(w * h / ((w + pixel_tolerance) * (h + pixel_tolerance)), default)


def voc_ap(recall, precision):
    """Area under the precision envelope ("all points" VOC AP, as the devkit's ``vid_ap``).

    ``recall`` and ``precision`` are the cumulative values down the ranked detections. The curve
    gets the end points (recall 0, precision 0) and (recall 1, precision 0); precision is made
    non-increasing from the right; AP = sum over recall steps of step * envelope at its end.
    Empty inputs (no detection) give 0.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def devkit_ap(frames, num_classes, motion_range: MotionRange = None):
    """Per-class devkit AP over the objects in ``motion_range`` (all objects if None).

    See :func:`devkit_aps` for ``frames``; returns an array (num_classes,), nan for classes
    without any object in the range.
    """
    return devkit_aps(frames, num_classes, {"ap": motion_range})["ap"]


def devkit_aps(
    frames: Sequence[Mapping], num_classes: int, motion_ranges: Mapping[Hashable, MotionRange]
) -> Dict[Hashable, np.ndarray]:
    """Per-class AP for several motion ranges at once (the matching is shared).

    Args:
        frames: one dict per evaluated frame with
            "gt_boxes" (G, 4) pixel-inclusive XYXY, "gt_classes" (G,), optionally "gt_ignore"
            (G,) true for crowd regions,
            "gt_motion" (G,) motion IoU of each object (only needed for a range that is not None),
            "boxes" (D, 4) XYXY, "scores" (D,), "classes" (D,): the detections.
        num_classes: number of classes; class ids are in [0, num_classes).
        motion_ranges: name -> (low, high), both included, or None for all objects.

    Returns:
        name -> array (num_classes,) of AP in [0, 1]; nan for a class with no object in the range
        (such classes stay out of a mean over classes, as in FGFA's evaluation).

    Per range, FGFA's ``vid_eval_motion`` rules:

    * positives: the objects whose motion IoU is in the range;
    * a detection matched to an object in the range is a true positive; one matched to an object
      outside the range counts neither as true nor as false positive;
    * an unmatched detection is a false positive with weight 1 if the object of best IoU with it
      (any class, matched or not) is in the range, weight 0 if that object is outside the range,
      and on a tie (e.g. no overlap with any object): in a frame with objects, the fraction of
      the frame's objects that are outside the range; in a frame without objects, the fraction
      of motion-IoU entries in the range over all frames, where FGFA's motion file gives each
      frame without objects one entry of 0 (so such frames count towards ranges containing 0).

    With None, every object is in the range: this is the devkit's plain AP (``vid_eval``).

    Objects with "gt_ignore" (crowd regions, which the devkit's VID labels never have) are
    treated as VOC's devkit treats "difficult" objects: never positives, and a detection matched
    to one counts neither as true nor as false positive; unlike objects, one such region can
    absorb several detections. This agrees with the crowd rule of the COCO-style metrics.
    Ties in score keep the order of ``frames`` and of the detections within a frame.
    """
    frames = [_checked(i, f, num_classes, motion_ranges) for i, f in enumerate(frames)]
    matches = [_match(f) for f in frames]
    results = {}
    for name, motion_range in motion_ranges.items():
        empty_weight = _empty_frame_weight(frames, motion_range)
        tp, fp, scores, classes, npos = [], [], [], [], np.zeros(num_classes)
        for frame, (order, iou, matched) in zip(frames, matches):
            in_range = _in_range(frame, motion_range)
            positive = in_range & ~frame["gt_ignore"]
            npos += np.bincount(frame["gt_classes"][positive], minlength=num_classes)
            t, f = _tp_fp(iou, matched, in_range, positive, empty_weight)
            tp.append(t)
            fp.append(f)
            scores.append(frame["scores"][order])
            classes.append(frame["classes"][order])
        results[name] = _class_aps(
            np.concatenate(tp),
            np.concatenate(fp),
            np.concatenate(scores),
            np.concatenate(classes),
            npos,
        )
    return results


def _checked(index, frame, num_classes, motion_ranges):
    """The frame's arrays as numpy, with shapes and ids checked."""
    try:
        out = {
            "gt_boxes": np.asarray(frame["gt_boxes"], dtype=np.float64).reshape(-1, 4),
            "gt_classes": np.asarray(frame["gt_classes"], dtype=np.int64).reshape(-1),
            "boxes": np.asarray(frame["boxes"], dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray(frame["scores"], dtype=np.float64).reshape(-1),
            "classes": np.asarray(frame["classes"], dtype=np.int64).reshape(-1),
            "gt_ignore": np.asarray(frame.get("gt_ignore", ()), dtype=bool).reshape(-1),
        }
    except KeyError as e:
        raise ValueError(f"frames[{index}]: missing {e}") from None
    except ValueError as e:
        raise ValueError(f"frames[{index}]: {e}") from None
    num_gt, num_det = len(out["gt_boxes"]), len(out["boxes"])
    if "gt_ignore" not in frame:
        out["gt_ignore"] = np.zeros(num_gt, dtype=bool)
    if len(out["gt_ignore"]) != num_gt:
        raise ValueError(f"frames[{index}]: {len(out['gt_ignore'])} gt_ignore for {num_gt} objects")
    if len(out["gt_classes"]) != num_gt or not len(out["scores"]) == len(out["classes"]) == num_det:
        raise ValueError(
            f"frames[{index}]: {num_gt} gt_boxes with {len(out['gt_classes'])} gt_classes, "
            f"{num_det} boxes with {len(out['scores'])} scores and {len(out['classes'])} classes"
        )
    for key in ("gt_classes", "classes"):
        bad = out[key][(out[key] < 0) | (out[key] >= num_classes)]
        if bad.size:
            raise ValueError(f"frames[{index}]: {key} {bad.tolist()} not in [0, {num_classes})")
    if any(r is not None for r in motion_ranges.values()):
        if "gt_motion" not in frame:
            raise ValueError(f"frames[{index}]: missing 'gt_motion', needed for motion ranges")
        out["gt_motion"] = np.asarray(frame["gt_motion"], dtype=np.float64).reshape(-1)
        if len(out["gt_motion"]) != num_gt:
            raise ValueError(f"frames[{index}]: {len(out['gt_motion'])} gt_motion for {num_gt} objects")
    return out


def _match(frame):
    """Greedy devkit matching of one frame; independent of the motion range.

    Detections in decreasing score take, among the objects of their class not yet taken with
    IoU >= the object's threshold, the one of highest IoU (the first on a tie); ignored objects
    (crowd regions) are never taken.
    Returns the score order, the (D, G) IoU of the ordered detections and, per ordered
    detection, the index of its object or -1.
    """
    order = np.argsort(-frame["scores"], kind="stable")
    iou = pixel_iou(frame["boxes"][order][:, None], frame["gt_boxes"][None])
    same_class = frame["classes"][order][:, None] == frame["gt_classes"][None]
    candidates = same_class & (iou >= iou_thresholds(frame["gt_boxes"]))
    matched = np.full(len(order), -1)
    taken = np.zeros(len(frame["gt_boxes"]), dtype=bool)
    for j in np.nonzero(candidates.any(axis=1))[0]:
        free = candidates[j] & ~taken
        if free.any():
            k = int(np.argmax(np.where(free, iou[j], -1.0)))
            matched[j] = k
            taken[k] = not frame["gt_ignore"][k]
    return order, iou, matched


def _in_range(frame, motion_range):
    if motion_range is None:
        return np.ones(len(frame["gt_boxes"]), dtype=bool)
    low, high = motion_range
    return (frame["gt_motion"] >= low) & (frame["gt_motion"] <= high)


def _empty_frame_weight(frames, motion_range):
    """False-positive weight of an unmatched detection in a frame without objects."""
    if motion_range is None:
        return 1.0
    low, high = motion_range
    motion = np.concatenate([f["gt_motion"] for f in frames] + [np.zeros(0)])
    num_empty = sum(1 for f in frames if len(f["gt_boxes"]) == 0)
    total = len(motion) + num_empty
    if total == 0:
        return 1.0  # no frame: nothing uses it
    in_range = np.count_nonzero((motion >= low) & (motion <= high))
    return (in_range + (num_empty if low <= 0 <= high else 0)) / total


def _tp_fp(iou, matched, in_range, positive, empty_weight):
    """True-positive and false-positive weights of one frame's ordered detections."""
    num_gt = len(in_range)
    tp = np.zeros(len(matched))
    hit = matched >= 0
    tp[hit] = positive[matched[hit]]
    best_in = np.where(in_range[None], iou, -1.0).max(axis=1, initial=-1.0)
    best_out = np.where(~in_range[None], iou, -1.0).max(axis=1, initial=-1.0)
    tie = empty_weight if num_gt == 0 else np.count_nonzero(~in_range) / num_gt
    fp = np.where(best_in > best_out, 1.0, np.where(best_out > best_in, 0.0, tie))
    fp[hit] = 0.0
    return tp, fp


def _class_aps(tp, fp, scores, classes, npos):
    order = np.argsort(-scores, kind="stable")
    tp, fp, classes = tp[order], fp[order], classes[order]
    aps = np.full(len(npos), np.nan)
    for c in np.nonzero(npos > 0)[0]:
        tp_c, fp_c = np.cumsum(tp[classes == c]), np.cumsum(fp[classes == c])
        precision = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        aps[c] = voc_ap(tp_c / npos[c], precision)
    return aps
