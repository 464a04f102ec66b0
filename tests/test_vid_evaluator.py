import contextlib
import io
import json
import logging
import math
import uuid

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode, Boxes, Instances
from temporal_roi_align.evaluation import VIDEvaluator, motion_bucket, motion_ious

XYXY = BoxMode.XYXY_ABS


def frame(image_id, video_id, frame_id, anns, degradation=""):
    """A dataset dict; anns are (box XYXY, category_id, track_id)."""
    return {
        "file_name": f"{video_id}/{frame_id:06d}.JPEG",
        "image_id": image_id,
        "height": 100,
        "width": 300,
        "video_id": video_id,
        "frame_id": frame_id,
        "video_length": 20,
        "degradation": degradation,
        "annotations": [
            {"bbox": list(box), "bbox_mode": XYXY, "category_id": c, "track_id": t}
            for box, c, t in anns
        ],
    }


@pytest.fixture
def register():
    names = []

    def _register(dicts, classes):
        name = f"test_vid_evaluator_{uuid.uuid4().hex}"
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).thing_classes = classes
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def instances(dets):
    """Instances from (box XYXY, score, class) tuples."""
    inst = Instances((100, 300))
    inst.pred_boxes = Boxes(torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([d[1] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[2] for d in dets], dtype=torch.int64)
    return inst


def run(name, predictions, **kwargs):
    """Evaluate {image_id: [(box, score, class), ...]}; every listed image is processed."""
    kwargs.setdefault("distributed", False)
    evaluator = VIDEvaluator(name, **kwargs)
    evaluator.reset()
    for image_id, dets in predictions.items():
        evaluator.process([{"image_id": image_id}], [{"instances": instances(dets)}])
    return evaluator.evaluate()


def ap(points):
    """101-point interpolated AP in % from (recall, precision) points sorted by recall."""
    total = 0.0
    for r in range(101):
        total += max((p for rc, p in points if rc >= r / 100 - 1e-12), default=0.0)
    return total / 101 * 100


A, B, C = (10, 10, 50, 50), (100, 10, 140, 50), (200, 10, 240, 50)
FAR = (250, 60, 290, 90)  # overlaps no ground truth


def test_motion_ious_hand_made_tracks():
    dicts = [
        # Video 1, track 0: frames 0, 5 (moved 4 px), 12 (back), 30 (alone).
        frame(0, 1, 0, [((0, 0, 40, 10), 0, 0), ((50, 0, 60, 10), 0, 1)]),
        frame(1, 1, 5, [((4, 0, 44, 10), 0, 0)]),
        frame(2, 1, 12, [((0, 0, 40, 10), 0, 0)]),
        frame(3, 1, 30, [((0, 0, 40, 10), 0, 0)]),
        # Video 2 reuses track id 0: it is another object.
        frame(4, 2, 1, [((0, 0, 40, 10), 0, 0)]),
    ]
    # XYWH boxes are converted: (4, 0, 44, 10) in frame 5.
    dicts[1]["annotations"][0].update(bbox=[4, 0, 40, 10], bbox_mode=BoxMode.XYWH_ABS)
    shifted = 36 / 44  # IoU of two 40x10 boxes 4 px apart
    ious = motion_ious(dicts)
    assert ious[0, 0] == pytest.approx(shifted)  # frame 12 is 12 frames away
    assert ious[1, 0] == pytest.approx(shifted)  # mean over frames 0 (36/44) and 12 (36/44)
    assert ious[2, 0] == pytest.approx(shifted)
    assert math.isnan(ious[3, 0])  # no neighbour within 10 frames
    assert math.isnan(ious[0, 1])  # track 1 appears once
    assert math.isnan(ious[4, 0])  # video 2 has a single frame
    assert set(ious) == {(0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (4, 0)}

    wide = motion_ious(dicts, frame_range=12)
    assert wide[0, 0] == pytest.approx((shifted + 1.0) / 2)  # frames 5 and 12
    assert wide[1, 0] == pytest.approx(shifted)


def test_motion_bucket_boundaries():
    assert motion_bucket(1.0) == "slow"
    assert motion_bucket(0.91) == "slow"
    assert motion_bucket(0.9) == "medium"
    assert motion_bucket(0.7) == "medium"
    assert motion_bucket(0.69) == "fast"
    assert motion_bucket(0.0) == "fast"
    assert motion_bucket(float("nan")) is None


def test_perfect_predictions(register, tmp_path):
    dicts = [
        frame(0, 0, 0, [(A, 0, 0), (B, 1, 1)]),
        frame(1, 0, 1, [(A, 0, 0), (B, 1, 1)]),
    ]
    dicts[1]["annotations"][0].update(bbox=[10, 10, 40, 40], bbox_mode=BoxMode.XYWH_ABS)
    name = register(dicts, ["cat", "dog"])
    preds = {i: [(A, 0.5, 0), (B, 0.25, 1)] for i in (0, 1)}
    res = run(name, preds, output_dir=str(tmp_path))["bbox"]
    for key in ("AP50", "AP", "AP75", "AP50-cat", "AP50-dog", "AP50-slow"):
        assert res[key] == pytest.approx(100.0), key
    assert math.isnan(res["AP50-medium"]) and math.isnan(res["AP50-fast"])
    assert "AP50-degraded" not in res  # no degraded frame in the dataset
    assert list(res)[:3] == ["AP50", "AP", "AP75"]

    saved = json.loads((tmp_path / "vid_results.json").read_text())
    assert saved["bbox"]["AP50"] == pytest.approx(100.0)
    dets = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert len(dets) == 4
    assert dets[0] == {"image_id": 0, "category_id": 0, "bbox": [10, 10, 40, 40], "score": 0.5}


def test_missing_class_and_class_without_ground_truth(register):
    dicts = [frame(0, 0, 0, [(A, 0, 0), (B, 1, 1)])]
    name = register(dicts, ["cat", "dog", "bird"])
    # cat perfect, dog missed, a bird false positive (bird has no ground truth).
    res = run(name, {0: [(A, 0.9, 0), (C, 0.9, 2)]})["bbox"]
    assert res["AP50-cat"] == pytest.approx(100.0)
    assert res["AP50-dog"] == 0.0
    assert math.isnan(res["AP50-bird"])
    assert res["AP50"] == pytest.approx(50.0)
    assert res["AP"] == pytest.approx(50.0)


def test_false_positive_ranked_above_true_positive(register):
    dicts = [frame(0, 0, 0, [(A, 0, 0)]), frame(1, 0, 1, [(A, 0, 0)])]
    name = register(dicts, ["cat"])
    # Ranked: TP 0.9, FP 0.8 (IoU 1/3 with A), TP 0.7 -> precision 1, 1/2, 2/3 at recall .5, .5, 1.
    shifted = (30, 10, 70, 50)
    preds = {0: [(A, 0.9, 0), (shifted, 0.8, 0)], 1: [(A, 0.7, 0)]}
    res = run(name, preds)["bbox"]
    expected = ap([(0.5, 1.0), (1.0, 2 / 3)])
    assert expected == pytest.approx((51 + 50 * 2 / 3) / 101 * 100)
    assert res["AP50"] == pytest.approx(expected)
    assert res["AP50-cat"] == pytest.approx(expected)


def test_zero_predictions(register):
    dicts = [frame(0, 0, 0, [(A, 0, 0)]), frame(1, 0, 1, [(B, 1, 1)])]
    name = register(dicts, ["cat", "dog"])
    res = run(name, {0: [], 1: []})["bbox"]
    for key in ("AP50", "AP", "AP75", "AP50-cat", "AP50-dog"):
        assert res[key] == 0.0, key
    assert run(name, {}) == {}  # nothing processed, as COCOEvaluator


def test_only_processed_frames_are_evaluated(register, caplog):
    dicts = [frame(0, 0, 0, [(A, 0, 0)]), frame(1, 0, 1, [(A, 0, 0)])]
    name = register(dicts, ["cat"])
    with caplog.at_level(logging.WARNING):
        res = run(name, {0: [(A, 0.9, 0)], 7: [(A, 0.9, 0)]}, distributed=True)["bbox"]
    assert res["AP50"] == pytest.approx(100.0)  # frame 1 was not processed
    assert "1 of 2 images" in caplog.text
    assert "not in" in caplog.text  # image 7 is not in the dataset


def test_motion_buckets_count_only_their_objects(register):
    slow, medium, fast = (0, 10, 40, 50), (100, 10, 140, 50), (200, 10, 240, 50)
    dicts = [
        # Motion IoU: slow 1.0, medium 36/44 = 0.82, fast 20/60 = 0.33; track 3 has no neighbour.
        frame(0, 0, 0, [(slow, 0, 0), (medium, 0, 1), (fast, 0, 2), ((0, 60, 40, 90), 0, 3)]),
        frame(1, 0, 1, [(slow, 0, 0), ((104, 10, 144, 50), 0, 1), ((220, 10, 260, 50), 0, 2)]),
    ]
    name = register(dicts, ["car"])
    buckets = {k: motion_bucket(v) for k, v in motion_ious(dicts).items()}
    assert buckets == {
        (0, 0): "slow", (1, 0): "slow",
        (0, 1): "medium", (1, 1): "medium",
        (0, 2): "fast", (1, 2): "fast",
        (0, 3): None,
    }  # fmt: skip
    # A false positive on top, then every object found except the fast ones.
    hits = [(b["bbox"], 0.5, 0) for b in dicts[0]["annotations"] if b["track_id"] != 2]
    preds = {
        0: [((260, 60, 290, 90), 0.9, 0)] + hits,
        1: [(b["bbox"], 0.5, 0) for b in dicts[1]["annotations"] if b["track_id"] != 2],
    }
    res = run(name, preds)["bbox"]
    # Per bucket: FP, TP, TP over 2 objects; detections of other buckets are not counted.
    assert res["AP50-slow"] == pytest.approx(ap([(0.5, 0.5), (1.0, 2 / 3)]))
    assert res["AP50-slow"] == pytest.approx(2 / 3 * 100)
    assert res["AP50-medium"] == pytest.approx(2 / 3 * 100)
    assert res["AP50-fast"] == 0.0
    # Overall: FP then 5 TPs over 7 objects; precision 5/6 up to recall 5/7.
    assert res["AP50"] == pytest.approx(ap([(5 / 7, 5 / 6)]))


def test_motion_breakdown_off(register):
    name = register([frame(0, 0, 0, [(A, 0, 0)])], ["cat"])
    res = run(name, {0: [(A, 0.9, 0)]}, motion_breakdown=False)["bbox"]
    assert not any(k in res for k in ("AP50-slow", "AP50-medium", "AP50-fast"))


def test_degraded_subset(register):
    dicts = [
        frame(0, 0, 0, [(A, 0, 0)]),
        frame(1, 0, 1, [(A, 0, 0)], degradation="motion_blur"),
        frame(2, 0, 2, [(A, 0, 0)], degradation="defocus"),
    ]
    name = register(dicts, ["cat"])
    # Clean frame: perfect. Degraded frames: a FP above the TP in one, a miss in the other.
    preds = {0: [(A, 0.9, 0)], 1: [(FAR, 0.95, 0), (A, 0.6, 0)], 2: []}
    res = run(name, preds)["bbox"]
    assert res["AP50-degraded"] == pytest.approx(ap([(0.5, 0.5)]))
    assert res["AP50-degraded"] == pytest.approx(51 * 0.5 / 101 * 100)
    # Overall: FP 0.95, TP 0.9, TP 0.6 over 3 objects.
    assert res["AP50"] == pytest.approx(ap([(1 / 3, 0.5), (2 / 3, 2 / 3)]))

    custom = run(name, preds, subsets={"clean": lambda d: not d["degradation"]})["bbox"]
    assert custom["AP50-clean"] == pytest.approx(100.0)
    assert "AP50-degraded" not in custom

    # A subset with no evaluated frame is nan.
    partial = run(name, {0: [(A, 0.9, 0)]})["bbox"]
    assert math.isnan(partial["AP50-degraded"])


def test_crowd_ground_truth_is_ignored(register):
    dicts = [frame(0, 0, 0, [(A, 0, 0), (B, 0, 1)])]
    dicts[0]["annotations"][1]["iscrowd"] = 1
    name = register(dicts, ["cat"])
    res = run(name, {0: [(B, 0.95, 0), (A, 0.9, 0)]})["bbox"]
    assert res["AP50"] == pytest.approx(100.0)


def test_result_key_clash_is_rejected(register):
    name = register([frame(0, 0, 0, [])], ["slow", "cat"])
    with pytest.raises(ValueError, match="slow"):
        VIDEvaluator(name, distributed=False)


def test_matches_plain_cocoeval(register):
    """AP, AP50, AP75 agree with pycocotools' own COCOeval.summarize() on random data."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    def boxes(n):
        xy = rand(n, 2) * 200
        return torch.cat([xy, xy + 10 + rand(n, 2) * 60], 1)

    dicts, preds = [], {}
    for i in range(12):
        gt_boxes = boxes(4)
        dicts.append(
            frame(i, i // 4, i % 4, [(b, k % 3, k) for k, b in enumerate(gt_boxes.tolist())])
        )
        jittered = (gt_boxes + torch.randn(4, 4, generator=gen) * 4).tolist()
        preds[i] = [(b, float(rand(1)), k % 3) for k, b in enumerate(jittered + boxes(3).tolist())]
    res = run(register(dicts, ["a", "b", "c"]), preds)["bbox"]

    def xywh(box):
        x0, y0, x1, y1 = box
        return [x0, y0, x1 - x0, y1 - y0]

    annotations = []
    for d in dicts:
        for a in d["annotations"]:
            x, y, w, h = xywh(a["bbox"])
            annotations.append(
                {"id": len(annotations) + 1, "image_id": d["image_id"],
                 "category_id": a["category_id"], "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
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
