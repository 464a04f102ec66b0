import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from temporal_roi_align.evaluation import (
    MOTION_RANGES,
    VIDEvaluator,
    devkit_ap,
    motion_buckets,
    motion_ious,
)

from helpers.vid_cases import frame_dict, run


def ap(points):
    """101-point interpolated AP in % from (recall, precision) points sorted by recall."""
    total = 0.0
    for r in range(101):
        total += max((p for rc, p in points if rc >= r / 100 - 1e-12), default=0.0)
    return total / 101 * 100


A, B, C = (10, 10, 50, 50), (100, 10, 140, 50), (200, 10, 240, 50)
FAR = (250, 60, 290, 90)  # overlaps no ground truth


def test_perfect_predictions(register_vid_dicts, tmp_path, caplog):
    dicts = [
        frame_dict(0, 0, 0, [(A, 0, 0), (B, 1, 1)]),
        frame_dict(1, 0, 1, [(A, 0, 0), (B, 1, 1)]),
    ]
    dicts[1]["annotations"][0].update(bbox=[10, 10, 40, 40], bbox_mode=BoxMode.XYWH_ABS)
    name = register_vid_dicts(dicts, ["cat", "dog"])
    preds = {i: [(A, 0.5, 0), (B, 0.25, 1)] for i in (0, 1)}
    with caplog.at_level(logging.INFO):
        res = run(name, preds, output_dir=str(tmp_path))["bbox"]
    for key in ("AP50", "AP", "AP75", "AP50-cat", "AP50-dog", "AP50-devkit", "AP50-slow"):
        assert res[key] == pytest.approx(100.0), key
    # Both tracks stand still (motion IoU 1): no medium or fast object.
    assert math.isnan(res["AP50-medium"]) and math.isnan(res["AP50-fast"])
    assert list(res)[:7] == ["AP50", "AP", "AP75", "AP50-devkit", "AP50-slow", "AP50-medium", "AP50-fast"]
    assert len(res) == 9  # no subset by default
    assert "AP50-devkit: ImageNet VID devkit" in caplog.text  # the protocols are logged

    # Valid JSON: nan is written as null.
    text = (tmp_path / "vid_results.json").read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in vid_results.json"))
    assert saved["bbox"]["AP50"] == pytest.approx(100.0)
    assert saved["bbox"]["AP50-medium"] is None
    dets = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert len(dets) == 4
    assert dets[0] == {"image_id": 0, "category_id": 0, "bbox": [10, 10, 40, 40], "score": 0.5}


def test_missing_class_and_class_without_ground_truth(register_vid_dicts):
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0), (B, 1, 1)])]
    name = register_vid_dicts(dicts, ["cat", "dog", "bird"])
    # cat perfect, dog missed, a bird false positive (bird has no ground truth).
    res = run(name, {0: [(A, 0.9, 0), (C, 0.9, 2)]})["bbox"]
    assert res["AP50-cat"] == pytest.approx(100.0)
    assert res["AP50-dog"] == 0.0
    assert math.isnan(res["AP50-bird"])
    assert res["AP50"] == pytest.approx(50.0)
    assert res["AP"] == pytest.approx(50.0)


def test_false_positive_ranked_above_true_positive(register_vid_dicts):
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0)]), frame_dict(1, 0, 1, [(A, 0, 0)])]
    name = register_vid_dicts(dicts, ["cat"])
    # Ranked: TP 0.9, FP 0.8 (IoU 1/3 with A), TP 0.7 -> precision 1, 1/2, 2/3 at recall .5, .5, 1.
    shifted = (30, 10, 70, 50)
    preds = {0: [(A, 0.9, 0), (shifted, 0.8, 0)], 1: [(A, 0.7, 0)]}
    res = run(name, preds)["bbox"]
    expected = ap([(0.5, 1.0), (1.0, 2 / 3)])
    assert expected == pytest.approx((51 + 50 * 2 / 3) / 101 * 100)
    assert res["AP50"] == pytest.approx(expected)
    assert res["AP50-cat"] == pytest.approx(expected)


def test_zero_predictions(register_vid_dicts):
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0)]), frame_dict(1, 0, 1, [(B, 1, 1)])]
    name = register_vid_dicts(dicts, ["cat", "dog"])
    res = run(name, {0: [], 1: []})["bbox"]
    for key in ("AP50", "AP", "AP75", "AP50-cat", "AP50-dog"):
        assert res[key] == 0.0, key
    assert run(name, {}) == {}  # nothing processed, as COCOEvaluator


def test_only_processed_frames_are_evaluated(register_vid_dicts, caplog):
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0)]), frame_dict(1, 0, 1, [(A, 0, 0)])]
    name = register_vid_dicts(dicts, ["cat"])
    with caplog.at_level(logging.WARNING):
        res = run(name, {0: [(A, 0.9, 0)], 7: [(A, 0.9, 0)]}, distributed=True)["bbox"]
    assert res["AP50"] == pytest.approx(100.0)  # frame 1 was not processed
    assert "1 of 2 images" in caplog.text
    assert "not in" in caplog.text  # image 7 is not in the dataset


def test_motion_buckets_as_fgfa(register_vid_dicts):
    slow, medium, fast = (0, 10, 40, 50), (100, 10, 140, 50), (200, 10, 240, 50)
    dicts = [
        frame_dict(0, 0, 0, [(slow, 0, 0), (medium, 0, 1), (fast, 0, 2), ((0, 60, 40, 90), 0, 3)]),
        frame_dict(1, 0, 1, [(slow, 0, 0), ((104, 10, 144, 50), 0, 1), ((220, 10, 260, 50), 0, 2)]),
    ]
    name = register_vid_dicts(dicts, ["car"])
    # Motion IoU (41 x 41-pixel boxes): track 0 still, 1; track 1 moves 4 px, 37 * 41 / (2 * 41 *
    # 41 - 37 * 41) = 37 / 45 = 0.82; track 2 moves 20 px, 21 / 61 = 0.34; track 3 is alone: 1.
    ious = motion_ious(dicts)
    assert {k: motion_buckets(v) for k, v in ious.items()} == {
        (0, 0): ("slow",),
        (1, 0): ("slow",),
        (0, 1): ("medium",),
        (1, 1): ("medium",),
        (0, 2): ("fast",),
        (1, 2): ("fast",),
        (0, 3): ("slow",),
    }
    assert ious[0, 1] == pytest.approx(37 / 45) and ious[0, 2] == pytest.approx(21 / 61)
    # A false positive on top, touching no object, then every object found except the fast ones.
    hits = [(b["bbox"], 0.5, 0) for b in dicts[0]["annotations"] if b["track_id"] != 2]
    preds = {
        0: [((260, 60, 290, 90), 0.9, 0)] + hits,
        1: [(b["bbox"], 0.5, 0) for b in dicts[1]["annotations"] if b["track_id"] != 2],
    }
    res = run(name, preds)["bbox"]
    # The FP ties (IoU 0 with all 4 objects of frame 0): weight = share of the frame's objects
    # outside the bucket: slow 2/4, medium 3/4, fast 3/4. Detections of other buckets' objects
    # count for nothing.
    # slow: FP .5, then TPs (3 objects: tracks 0 twice, 3): precision 1/1.5, 2/2.5, 3/3.5 at
    # recall 1/3, 2/3, 1; the envelope is 6/7 everywhere.
    assert res["AP50-slow"] == pytest.approx(6 / 7 * 100)
    # medium: FP .75, 2 TPs: 1/1.75, 2/2.75 = 8/11 at recall 1/2, 1: AP 8/11.
    assert res["AP50-medium"] == pytest.approx(8 / 11 * 100)
    assert res["AP50-fast"] == 0.0
    # All objects: a full FP, then 5 TPs over 7 objects; precision 5/6 up to recall 5/7.
    assert res["AP50-devkit"] == pytest.approx(5 / 7 * 5 / 6 * 100)
    # The headline (COCO-style) is the same here: 101-point AP, the envelope is 5/6 up to 5/7.
    assert res["AP50"] == pytest.approx(ap([(5 / 7, 5 / 6)]))


def test_devkit_threshold_for_small_objects(register_vid_dicts):
    # A 10 x 10-pixel object (XYXY 0..9 inclusive) and a detection 5 px to the right: devkit IoU
    # 50 / 150 >= its threshold 100 / (20 * 20) = 0.25: found. COCO: 4 * 9 / (81 + 81 - 36) =
    # 0.29 < 0.5: missed.
    dicts = [frame_dict(0, 0, 0, [((0, 0, 9, 9), 0, 0)])]
    res = run(register_vid_dicts(dicts, ["cat"]), {0: [((5, 0, 14, 9), 0.9, 0)]})["bbox"]
    assert res["AP50-devkit"] == pytest.approx(100.0)
    assert res["AP50"] == 0.0


def test_motion_breakdown_off(register_vid_dicts):
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0)])]
    del dicts[0]["annotations"][0]["track_id"]  # not needed without the breakdown
    name = register_vid_dicts(dicts, ["cat"])
    res = run(name, {0: [(A, 0.9, 0)]}, motion_breakdown=False)["bbox"]
    assert not any(k in res for k in ("AP50-slow", "AP50-medium", "AP50-fast"))
    assert res["AP50-devkit"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="track_id"):
        run(name, {0: [(A, 0.9, 0)]})


def test_subsets(register_vid_dicts):
    dicts = [
        frame_dict(0, 0, 0, [(A, 0, 0)], hard=False),
        frame_dict(1, 0, 1, [(A, 0, 0)], hard=True),
        frame_dict(2, 0, 2, [(A, 0, 0)], hard=True),
    ]
    name = register_vid_dicts(dicts, ["cat"])
    # Easy frame: perfect. Hard frames: a FP above the TP in one, a miss in the other.
    preds = {0: [(A, 0.9, 0)], 1: [(FAR, 0.95, 0), (A, 0.6, 0)], 2: []}
    subsets = {"hard": lambda d: d["hard"], "easy": lambda d: not d["hard"]}
    res = run(name, preds, subsets=subsets)["bbox"]
    assert res["AP50-hard"] == pytest.approx(ap([(0.5, 0.5)]))
    assert res["AP50-hard"] == pytest.approx(51 * 0.5 / 101 * 100)
    assert res["AP50-easy"] == pytest.approx(100.0)
    # Overall: FP 0.95, TP 0.9, TP 0.6 over 3 objects.
    assert res["AP50"] == pytest.approx(ap([(1 / 3, 0.5), (2 / 3, 2 / 3)]))
    assert "AP50-hard" not in run(name, preds)["bbox"]  # no subset unless passed

    # A subset with no evaluated frame is nan.
    partial = run(name, {0: [(A, 0.9, 0)]}, subsets=subsets)["bbox"]
    assert math.isnan(partial["AP50-hard"])


def test_crowd_ground_truth_is_ignored_by_every_protocol(register_vid_dicts):
    """COCOeval's crowd rule and the devkit's (VOC's "difficult") agree: a crowd box is no
    positive and the detections on it (two here) count neither way. The devkit used to count it
    as an object: AP50 100, AP50-devkit 50."""
    dicts = [frame_dict(0, 0, 0, [(A, 0, 0), (B, 0, 1)]), frame_dict(1, 0, 1, [(A, 0, 0), (B, 0, 1)])]
    for d in dicts:
        d["annotations"][1]["iscrowd"] = 1
    name = register_vid_dicts(dicts, ["cat"])
    preds = {i: [(B, 0.95, 0), (B, 0.93, 0), (A, 0.9, 0)] for i in (0, 1)}
    res = run(name, preds)["bbox"]
    for key in ("AP50", "AP50-devkit", "AP50-slow"):
        assert res[key] == pytest.approx(100.0), key
    only_crowd = register_vid_dicts([frame_dict(0, 0, 0, [(B, 0, 1)])], ["cat"])
    dicts_only = DatasetCatalog.get(only_crowd)
    dicts_only[0]["annotations"][0]["iscrowd"] = 1
    res = run(only_crowd, {0: [(B, 0.95, 0)]})["bbox"]
    assert math.isnan(res["AP50"]) and math.isnan(res["AP50-devkit"]) and math.isnan(res["AP50-slow"])


def test_result_key_clash_is_rejected(register_vid_dicts):
    name = register_vid_dicts([frame_dict(0, 0, 0, [])], ["slow", "cat"])
    with pytest.raises(ValueError, match="slow"):
        VIDEvaluator(name, distributed=False)
    name = register_vid_dicts([frame_dict(0, 0, 0, [])], ["cat"])
    with pytest.raises(ValueError, match="devkit"):
        VIDEvaluator(name, distributed=False, subsets={"devkit": bool})
    with pytest.raises(ValueError, match="cat"):
        VIDEvaluator(name, distributed=False, subsets={"cat": bool})


def random_case():
    """12 frames (3 videos) of 4 objects of 3 classes moving a few px per frame, with jittered
    and random detections: (dataset dicts, predictions for :func:`run`)."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    def boxes(n):
        xy = rand(n, 2) * 200
        return torch.cat([xy, xy + 10 + rand(n, 2) * 60], 1)

    dicts, preds = [], {}
    for i in range(12):
        if i % 4 == 0:
            gt_boxes, speed = boxes(4), torch.randn(4, 2, generator=gen).repeat(1, 2) * 2
        gt_boxes = gt_boxes + speed
        dicts.append(frame_dict(i, i // 4, i % 4, [(b, k % 3, k) for k, b in enumerate(gt_boxes.tolist())]))
        jittered = (gt_boxes + torch.randn(4, 4, generator=gen) * 4).tolist()
        preds[i] = [(b, float(rand(1)), k % 3) for k, b in enumerate(jittered + boxes(3).tolist())]
    return dicts, preds


def test_devkit_metrics_are_the_pure_functions(register_vid_dicts):
    dicts, preds = random_case()
    res = run(register_vid_dicts(dicts, ["a", "b", "c"]), preds)["bbox"]
    motion = motion_ious(dicts)
    frames = [
        {
            "gt_boxes": [a["bbox"] for a in d["annotations"]],
            "gt_classes": [a["category_id"] for a in d["annotations"]],
            "gt_motion": [motion[d["image_id"], i] for i in range(len(d["annotations"]))],
            "boxes": [b for b, _, _ in preds[d["image_id"]]],
            "scores": [s for _, s, _ in preds[d["image_id"]]],
            "classes": [c for _, _, c in preds[d["image_id"]]],
        }
        for d in dicts
    ]
    buckets = {b for m in motion.values() for b in motion_buckets(m)}
    assert buckets == set(MOTION_RANGES)  # every bucket has objects
    for name, motion_range in [("devkit", None)] + list(MOTION_RANGES.items()):
        aps = devkit_ap(frames, 3, motion_range)
        assert res[f"AP50-{name}"] == pytest.approx(np.nanmean(aps) * 100, rel=1e-12), name
    assert 0 < res["AP50-devkit"] < 100


def test_matches_plain_cocoeval(register_vid_dicts):
    """AP, AP50, AP75 agree with pycocotools' own COCOeval.summarize() on random data."""
    dicts, preds = random_case()
    res = run(register_vid_dicts(dicts, ["a", "b", "c"]), preds)["bbox"]

    def xywh(box):
        x0, y0, x1, y1 = box
        return [x0, y0, x1 - x0, y1 - y0]

    annotations = []
    for d in dicts:
        for a in d["annotations"]:
            x, y, w, h = xywh(a["bbox"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": d["image_id"],
                    "category_id": a["category_id"],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": [{"id": d["image_id"]} for d in dicts],
        "categories": [{"id": k} for k in range(3)],
        "annotations": annotations,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(
            [
                {"image_id": i, "category_id": c, "bbox": xywh(b), "score": s}
                for i, dets in preds.items()
                for b, s, c in dets
            ]
        )
        E = COCOeval(gt, dt, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    assert 0 < res["AP"] < res["AP50"] < 100
    assert res["AP"] == pytest.approx(E.stats[0] * 100, abs=1e-3)
    assert res["AP50"] == pytest.approx(E.stats[1] * 100, abs=1e-3)
    assert res["AP75"] == pytest.approx(E.stats[2] * 100, abs=1e-3)
