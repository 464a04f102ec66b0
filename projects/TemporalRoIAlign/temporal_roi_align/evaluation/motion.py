"""Motion IoU of ground-truth objects and FGFA's slow / medium / fast ranges (Zhu et al., 2017)."""

from collections import OrderedDict, defaultdict

import numpy as np
from detectron2.structures import BoxMode

from .vid_devkit import pixel_iou

__all__ = ["MOTION_RANGES", "motion_buckets", "motion_ious"]

# Motion-IoU range of each bucket, both ends included (FGFA's imagenet_vid.py,
# do_python_eval_gen): an object at exactly 0.9 is slow and medium, one at 0.7 medium and fast.
MOTION_RANGES = OrderedDict([("slow", (0.9, 1.0)), ("medium", (0.7, 0.9)), ("fast", (0.0, 0.7))])

# Added to the sum of IoUs before dividing by the number of neighbours, then capped at 1: this
# reproduces FGFA's published motion-IoU file (objects with no overlap in k neighbour frames
# have 1e-10 / k there; objects whose box never moves have exactly 1).
_EPS = 1e-10


def motion_buckets(motion_iou):
    """Names of the buckets whose range contains ``motion_iou`` (one, or two at a bound)."""
    return tuple(b for b, (low, high) in MOTION_RANGES.items() if low <= motion_iou <= high)


def motion_ious(dataset_dicts, frame_range=10):
    """Motion IoU of every ground-truth object, as in FGFA's published motion-IoU file.

    The motion IoU of an object in frame t is the mean IoU (pixel-inclusive boxes, see
    :func:`pixel_iou`) of its box with the boxes of the same track (same ``video_id`` and
    ``track_id``) in the k frames t' with 0 < |t' - t| <= frame_range where the track has a box:
    ``min(1, (sum of IoUs + 1e-10) / k)``. An object with no such frame (k = 0) gets 1, i.e.
    slow: FGFA's file has exactly 1 for objects seen in a single frame. High means slow.

    Args:
        dataset_dicts (list[dict]): Detectron2 dicts with "image_id", "video_id", "frame_id"
            and "annotations" carrying "bbox", "bbox_mode" and "track_id".
        frame_range (int): the window half-width, in frames.

    Returns:
        dict: (image_id, index of the annotation in the dict's "annotations") -> motion IoU.
    """
    tracks = defaultdict(list)  # (video_id, track_id) -> [(frame_id, key, XYXY box)]
    for d in dataset_dicts:
        for i, ann in enumerate(d.get("annotations", [])):
            missing = [k for k in ("video_id", "frame_id") if k not in d]
            missing += ["track_id"] if "track_id" not in ann else []
            if missing:
                raise ValueError(
                    f"image {d.get('image_id')!r}, annotation {i}: no {missing}, needed for the "
                    "motion IoU (motion_breakdown=False evaluates without it)"
                )
            box = BoxMode.convert(
                np.asarray([ann["bbox"]], dtype=np.float64),
                BoxMode(ann["bbox_mode"]),
                BoxMode.XYXY_ABS,
            )[0]
            tracks[d["video_id"], ann["track_id"]].append((d["frame_id"], (d["image_id"], i), box))

    result = {}
    for (video_id, track_id), entries in tracks.items():
        entries.sort(key=lambda e: e[0])
        frames = np.array([e[0] for e in entries])
        if np.any(frames[1:] == frames[:-1]):
            frame = frames[1:][frames[1:] == frames[:-1]][0]
            raise ValueError(f"video {video_id!r}: track {track_id!r} has two boxes in frame {frame}")
        boxes = np.stack([e[2] for e in entries])
        total, count = np.zeros(len(entries)), np.zeros(len(entries))
        for step in range(1, frame_range + 1):
            # Pairs (a, b) of the track's boxes `step` frames apart: each is a neighbour of the other.
            b = np.minimum(np.searchsorted(frames, frames + step), len(frames) - 1)
            a = np.nonzero(frames[b] == frames + step)[0]
            b = b[a]
            iou = pixel_iou(boxes[a], boxes[b])
            for idx in (a, b):
                np.add.at(total, idx, iou)
                np.add.at(count, idx, 1)
        values = np.minimum(1.0, (total + _EPS) / np.maximum(count, 1))
        values[count == 0] = 1.0
        for (_, key, _), value in zip(entries, values):
            result[key] = float(value)
    return result
