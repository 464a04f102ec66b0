"""AP50 under frame weights and the video bootstrap, against COCOeval and hand-computed cases."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from temporal_roi_align.evaluation import VIDEvaluator
from temporal_roi_align.evaluation.bootstrap import AP50Table, bootstrap_ap50, percentile_interval


def random_dataset(seed, videos=5, frames=8):
    rng = np.random.default_rng(seed)
    dicts, detections = [], []
    for v in range(videos):
        for f in range(frames):
            anns = []
            for k in range(rng.integers(0, 3)):
                x, y = rng.uniform(0, 80, 2)
                w, h = rng.uniform(5, 40, 2)
                anns.append(
                    {
                        "bbox": [x, y, x + w, y + h],
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": int(rng.integers(3)),
                        "track_id": k,
                    }
                )
            d = {
                "image_id": f"{v}/{f}",
                "video_id": v,
                "frame_id": f,
                "height": 128,
                "width": 128,
                "annotations": anns,
                "odd": f % 2 == 1,
            }
            dicts.append(d)
            boxes = [(np.array(a["bbox"]) + rng.normal(0, 3, 4), a["category_id"]) for a in anns if rng.random() < 0.7]
            boxes += [(np.r_[xy, xy + 20], int(rng.integers(3))) for xy in rng.uniform(0, 80, (rng.integers(0, 5), 2))]
            for (b, c), s in zip(boxes, rng.random(len(boxes))):
                detections.append(
                    {
                        "image_id": d["image_id"],
                        "category_id": c,
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        "score": float(s),
                    }
                )
    return dicts, detections


def evaluator_results(name, dicts, detections):
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).thing_classes = ["a", "b", "c"]
    evaluator = VIDEvaluator(name, None, distributed=False, motion_breakdown=False, subsets={"odd": lambda d: d["odd"]})
    evaluator.reset()
    for d in dicts:
        mine = [x for x in detections if x["image_id"] == d["image_id"]]
        instances = Instances((128, 128))
        xywh = torch.tensor([x["bbox"] for x in mine], dtype=torch.float64).reshape(-1, 4)
        instances.pred_boxes = Boxes(BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS))
        instances.scores = torch.tensor([x["score"] for x in mine], dtype=torch.float64)
        instances.pred_classes = torch.tensor([x["category_id"] for x in mine], dtype=torch.int64)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unweighted_ap50_is_the_evaluators(seed):
    dicts, detections = random_dataset(seed)
    results = evaluator_results(f"bootstrap_test_{seed}", dicts, detections)
    table = AP50Table(dicts, detections, ["a", "b", "c"])
    assert table.ap50() == pytest.approx(results["AP50"], abs=1e-9)
    odd = AP50Table(dicts, detections, ["a", "b", "c"], image_ids={d["image_id"] for d in dicts if d["odd"]})
    assert odd.ap50() == pytest.approx(results["AP50-odd"], abs=1e-9)
    # Counting every frame twice changes nothing.
    assert table.ap50(np.full(len(dicts), 2.0)) == pytest.approx(table.ap50(), abs=1e-9)


def test_weights_equal_duplicated_frames():
    dicts, detections = random_dataset(3, videos=3, frames=3)
    table = AP50Table(dicts, detections, ["a", "b", "c"])
    weights = np.array([2, 0, 1, 1, 1, 0, 2, 1, 1], dtype=np.float64)
    copies, copied_detections = [], []
    for d, w in zip(dicts, weights):
        for c in range(int(w)):
            copies.append(dict(d, image_id=f"{d['image_id']}#{c}"))
            copied_detections += [
                dict(x, image_id=f"{d['image_id']}#{c}") for x in detections if x["image_id"] == d["image_id"]
            ]
    assert table.ap50(weights) == pytest.approx(AP50Table(copies, copied_detections, ["a", "b", "c"]).ap50(), abs=1e-9)


def test_bootstrap_of_two_videos_has_three_outcomes():
    """Video A: one object, found; video B: one object, missed. All frames: recall 0.5 at
    precision 1, AP = 51/101 recall points; redraws AA give 100, BB give 0."""
    box = {"bbox": [10.0, 10.0, 50.0, 50.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
    dicts = [
        {"image_id": v, "video_id": v, "frame_id": 0, "height": 64, "width": 64, "annotations": [box]} for v in "AB"
    ]
    detections = [{"image_id": "A", "category_id": 0, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.9}]
    table = AP50Table(dicts, detections, ["a"])
    assert table.ap50() == pytest.approx(100 * 51 / 101)
    values = bootstrap_ap50([table], samples=400, seed=1)[:, 0]
    outcomes, counts = np.unique(np.round(values, 6), return_counts=True)
    assert outcomes.tolist() == [0.0, round(100 * 51 / 101, 6), 100.0]
    assert abs(counts[1] / 400 - 0.5) < 0.1 and abs(counts[0] / 400 - 0.25) < 0.1
    assert percentile_interval(values) == (0.0, 100.0)


def test_paired_redraws_and_interval():
    dicts, detections = random_dataset(4)
    table = AP50Table(dicts, detections, ["a", "b", "c"])
    worse = AP50Table(dicts, [x for x in detections if x["score"] > 0.5], ["a", "b", "c"])
    draws = bootstrap_ap50([table, table, worse], samples=200, seed=0)
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])
    assert not np.array_equal(draws[:, 0], draws[:, 2])
    low, high = percentile_interval(draws[:, 0])
    assert low <= table.ap50() <= high
    assert all(np.isnan(percentile_interval(np.array([np.nan]))))


def test_ytvis_bootstrap_redraws_videos():
    from pycocotools import mask as mask_util

    from temporal_roi_align.evaluation.bootstrap import bootstrap_ytvis
    from temporal_roi_align.evaluation.ytvis_metric import ytvis_metrics

    def rle(x0):
        m = np.zeros((16, 16), np.uint8, order="F")
        m[4:12, x0 : x0 + 6] = 1
        r = mask_util.encode(m)
        r["counts"] = r["counts"].decode()
        return r

    gt = [{"video_id": v, "category_id": 1, "iscrowd": 0, "segmentations": [rle(2), rle(3)]} for v in ("A", "B")]
    found = [{"video_id": "A", "category_id": 1, "score": 0.9, "segmentations": [rle(2), rle(3)]}]
    categories = [(1, "thing")]
    both = ytvis_metrics(["A", "B"], categories, gt, found)["AP"]
    draws = bootstrap_ytvis(["A", "B"], categories, gt, [found, found], samples=60, seed=0)
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])  # paired
    assert set(np.round(draws[:, 0, 0], 6)) == {0.0, round(both, 6), 100.0}
    only_a = bootstrap_ytvis(["A"], categories, gt[:1], [found], samples=5)
    np.testing.assert_allclose(only_a[:, 0], 100.0)
