"""Motion IoU and FGFA's motion buckets (evaluation/motion.py)."""

import numpy as np
import pytest
from detectron2.structures import BoxMode

from temporal_roi_align.evaluation import MOTION_RANGES, motion_buckets, motion_ious, pixel_iou


def frame(image_id, video_id, frame_id, anns):
    """anns: (XYXY box, track_id)."""
    return {
        "image_id": image_id,
        "video_id": video_id,
        "frame_id": frame_id,
        "annotations": [
            {"bbox": list(box), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "track_id": t} for box, t in anns
        ],
    }


def test_motion_ious_hand_made_tracks():
    dicts = [
        # Video 1, track 0: frames 0, 5 (moved 4 px), 12 (back), 30 (alone).
        frame(0, 1, 0, [((0, 0, 40, 10), 0), ((50, 0, 60, 10), 1)]),
        frame(1, 1, 5, [((4, 0, 44, 10), 0)]),
        frame(2, 1, 12, [((0, 0, 40, 10), 0)]),
        frame(3, 1, 30, [((0, 0, 40, 10), 0)]),
        # Video 2 reuses track id 0: it is another object.
        frame(4, 2, 1, [((0, 0, 40, 10), 0)]),
    ]
    # XYWH boxes are converted: (4, 0, 44, 10) in frame 5.
    dicts[1]["annotations"][0].update(bbox=[4, 0, 40, 10], bbox_mode=BoxMode.XYWH_ABS)
    # Two 41 x 11-pixel boxes 4 px apart share 37 x 11 pixels: IoU 37 / (82 - 37).
    shifted = 37 / 45
    ious = motion_ious(dicts)
    assert ious[0, 0] == pytest.approx(shifted)  # frame 12 is 12 frames away
    assert ious[1, 0] == pytest.approx(shifted)  # mean over frames 0 and 12
    assert ious[2, 0] == pytest.approx(shifted)
    # No box of the track within 10 frames: 1 (slow), as FGFA's file has it (not 0).
    assert ious[3, 0] == 1.0
    assert ious[0, 1] == 1.0  # track 1 appears once
    assert ious[4, 0] == 1.0  # video 2 has a single frame
    assert set(ious) == {(0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (4, 0)}

    wide = motion_ious(dicts, frame_range=12)
    assert wide[0, 0] == pytest.approx((shifted + 1.0) / 2)  # frames 5 and 12
    assert wide[1, 0] == pytest.approx(shifted)


def test_motion_iou_epsilon_and_cap_as_in_fgfa_file():
    # Jumps with no overlap: (0 + 1e-10) / k, k = number of neighbours (FGFA's file has exactly
    # 1e-10 / k for such objects). A box that never moves: (k + 1e-10) / k capped at exactly 1.
    dicts = [frame(i, 0, i, [((i * 100, 0, i * 100 + 9, 9), 0), ((0, 50, 9, 59), 1)]) for i in (0, 1, 2)]
    ious = motion_ious(dicts)
    assert ious[1, 0] == 1e-10 / 2 and ious[0, 0] == 1e-10 / 2
    assert all(ious[i, 1] == 1.0 for i in range(3))
    assert [motion_buckets(ious[i, 0]) for i in range(3)] == [("fast",)] * 3


def test_motion_buckets_include_both_bounds():
    assert MOTION_RANGES == {"slow": (0.9, 1.0), "medium": (0.7, 0.9), "fast": (0.0, 0.7)}
    assert motion_buckets(1.0) == ("slow",)
    assert motion_buckets(0.95) == ("slow",)
    assert motion_buckets(0.9) == ("slow", "medium")
    assert motion_buckets(0.8) == ("medium",)
    assert motion_buckets(0.7) == ("medium", "fast")
    assert motion_buckets(0.69) == ("fast",)
    assert motion_buckets(0.0) == ("fast",)


def test_bad_tracks_are_reported():
    dicts = [frame(0, 0, 0, [((0, 0, 9, 9), 0)])]
    del dicts[0]["annotations"][0]["track_id"]
    with pytest.raises(ValueError, match=r"image 0, annotation 0: no \['track_id'\]"):
        motion_ious(dicts)
    dicts = [frame(0, 0, 0, [((0, 0, 9, 9), 3), ((20, 0, 29, 9), 3)])]
    with pytest.raises(ValueError, match="track 3 has two boxes in frame 0"):
        motion_ious(dicts)


def test_matches_loop_reference_on_random_tracks():
    rng = np.random.default_rng(0)
    dicts, boxes = [], {}  # (video, track, frame) -> box
    for video in range(3):
        # Tracks move at 0-3 px per frame with jitter; track 2 is rare (objects without neighbours).
        start, speed = rng.integers(0, 50, (3, 2)), rng.integers(0, 4, (3, 2))
        for t in sorted(rng.choice(60, 30, replace=False).tolist()):  # frames with gaps
            anns = []
            for track, present in enumerate([0.8, 0.8, 0.1]):
                if rng.random() < present:
                    xy = start[track] + speed[track] * t + rng.integers(-1, 2, 2)
                    box = tuple(np.concatenate([xy, xy + 20 + rng.integers(0, 3, 2)]).tolist())
                    boxes[video, track, t] = box
                    anns.append((box, track))
            dicts.append(frame(len(dicts), video, t, anns))
    ious = motion_ious(dicts)
    for d in dicts:
        for i, ann in enumerate(d["annotations"]):
            t, key = d["frame_id"], (d["video_id"], ann["track_id"])
            neighbours = [
                pixel_iou(ann["bbox"], boxes[key + (f,)])
                for f in range(t - 10, t + 11)
                if f != t and key + (f,) in boxes
            ]
            expected = min(1.0, (sum(neighbours) + 1e-10) / len(neighbours)) if neighbours else 1.0
            assert ious[d["image_id"], i] == pytest.approx(expected, rel=1e-12, abs=0)
    buckets = [b for value in ious.values() for b in motion_buckets(value)]
    assert {"slow", "medium", "fast"} <= set(buckets)
    assert any(value == 1.0 for value in ious.values())
