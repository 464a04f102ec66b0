"""AP50 under frame weights and the video bootstrap, against COCOeval and hand-computed cases."""

import contextlib
import io

import numpy as np
import pytest
import torch
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
def test_unweighted_ap50_is_the_evaluators(seed, register_vid_dicts):
    dicts, detections = random_dataset(seed)
    results = evaluator_results(register_vid_dicts(dicts, ["a", "b", "c"]), dicts, detections)
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
    values, draws = bootstrap_ytvis(["A", "B"], categories, gt, [found, found], samples=60, seed=0)
    np.testing.assert_allclose(values[:, 0], both)
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])  # paired
    assert set(np.round(draws[:, 0, 0], 6)) == {0.0, round(both, 6), 100.0}
    _, only_a = bootstrap_ytvis(["A"], categories, gt[:1], [found], samples=5)
    np.testing.assert_allclose(only_a[:, 0], 100.0)


def ytvis_instances(seed):
    """random_case of the YouTube-VIS tests as instance dicts, with at least one crowd, a video
    without predictions (8) and one without anything (9): (video ids, ground truth, predictions)."""
    from helpers.ytvis_cases import random_case, rle

    videos, gts, dts = random_case(seed)

    def rles(masks):
        return [rle(m) if m is not None else None for m in masks]

    ground_truth = [
        {"video_id": v, "category_id": c, "iscrowd": int(crowd or i == 0), "segmentations": rles(masks)}
        for i, (v, c, masks, crowd) in enumerate(gts)
    ]
    predictions = [
        {"video_id": v, "category_id": c, "score": round(s, 1), "segmentations": rles(masks)}
        for v, c, s, masks in dts
        if v != 8
    ]
    return [v for v, *_ in videos] + [9], ground_truth, predictions


def redrawn_ytvis_metrics(video_ids, categories, ground_truth, predictions, weights):
    """ytvis_metrics with video_ids[i] copied weights[i] times, the copies numbered in the
    videos' sorted order."""
    from temporal_roi_align.evaluation.ytvis_metric import ytvis_metrics

    count = dict(zip(video_ids, weights))
    first = dict(zip(sorted(video_ids), np.cumsum([0] + [count[v] for v in sorted(video_ids)]).tolist()))

    def copied(instances):
        return [dict(x, video_id=first[x["video_id"]] + k) for x in instances for k in range(count[x["video_id"]])]

    return ytvis_metrics(list(range(sum(weights))), categories, copied(ground_truth), copied(predictions))


def assert_same_metrics(fast, slow, names):
    for name in names:
        assert (np.isnan(fast[name]) and np.isnan(slow[name])) or abs(fast[name] - slow[name]) < 1e-9, name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ytvis_table_equals_evaluating_redrawn_videos(seed):
    from temporal_roi_align.evaluation.bootstrap import YTVISTable
    from temporal_roi_align.evaluation.ytvis_metric import ytvis_metrics

    from helpers.ytvis_cases import CATEGORIES

    video_ids, ground_truth, predictions = ytvis_instances(seed)
    table = YTVISTable(video_ids, CATEGORIES, ground_truth, predictions)
    assert table.video_ids == sorted(video_ids)
    assert_same_metrics(table.metrics(), ytvis_metrics(video_ids, CATEGORIES, ground_truth, predictions), table.METRICS)
    rng = np.random.default_rng(seed)
    for weights in (rng.permutation([0, 1, 3, 1, 3, 0]), rng.permutation([3, 0, 0, 1, 1, 1])):
        slow = redrawn_ytvis_metrics(video_ids, CATEGORIES, ground_truth, predictions, weights)
        fast = table.metrics([dict(zip(video_ids, weights))[v] for v in table.video_ids])
        assert_same_metrics(fast, slow, table.METRICS)
        assert 0 < fast["AP"] < 100
    no_ground_truth = table.metrics([0, 0, 0, 1, 0, 1])  # videos 5 and 9 only
    assert all(np.isnan(v) for v in no_ground_truth.values())


def test_ytvis_table_ranks_tied_scores_by_video_then_copy():
    """Video A: an object found with score 0.5; video B: a false positive with score 0.5. With A
    counted twice, COCOeval ranks the tied detections A, A, B (videos in sorted order, the copies
    of a video together): recall 1 at precision 1, AP 100. Interleaving the copies (A, B, A) would
    give precision 2/3 above recall 0.5."""
    from pycocotools import mask as mask_util

    from temporal_roi_align.evaluation.bootstrap import YTVISTable

    mask = np.zeros((16, 16), np.uint8, order="F")
    mask[4:12, 2:8] = 1
    rle = mask_util.encode(mask)
    gt = [{"video_id": "A", "category_id": 1, "iscrowd": 0, "segmentations": [rle]}]
    found = [dict(gt[0], score=0.5), {"video_id": "B", "category_id": 1, "score": 0.5, "segmentations": [rle]}]
    table = YTVISTable(["B", "A"], [(1, "thing")], gt, found)
    assert table.metrics([2, 1])["AP"] == 100.0
    slow = redrawn_ytvis_metrics(["B", "A"], [(1, "thing")], gt, found, [1, 2])
    assert slow["AP"] == 100.0


def test_ytvis_bootstrap_equals_evaluating_its_redraws():
    from temporal_roi_align.evaluation.bootstrap import bootstrap_ytvis

    from helpers.ytvis_cases import CATEGORIES

    video_ids, ground_truth, predictions = ytvis_instances(3)
    video_ids = video_ids[::-1]  # not sorted
    weaker = [p for p in predictions if p["score"] < 0.8]
    _, draws = bootstrap_ytvis(video_ids, CATEGORIES, ground_truth, [predictions, weaker], ("AP75", "AP"), 3, seed=5)
    rng = np.random.default_rng(5)  # the redraws: as many videos as there are, with replacement
    for s in range(3):
        weights = np.bincount(rng.integers(len(video_ids), size=len(video_ids)), minlength=len(video_ids))
        for j, instances in enumerate([predictions, weaker]):
            slow = redrawn_ytvis_metrics(video_ids, CATEGORIES, ground_truth, instances, weights)
            assert_same_metrics(dict(zip(("AP75", "AP"), draws[s, j])), slow, ("AP75", "AP"))
    with pytest.raises(ValueError, match=r"metrics \['APs'\] are not among \['AP', 'AP50', 'AP75'\]"):
        bootstrap_ytvis(video_ids, CATEGORIES, ground_truth, [predictions], ("AP", "APs"))


def frame_coco_ap(frames, categories, ground_truth, predictions):
    """pycocotools' segm AP with each (video, frame) of ``frames`` as a COCO image: the reference
    protocol of the per-frame mask AP."""
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    index = {f: i for i, f in enumerate(frames)}
    images = [{"id": i, "height": 16, "width": 16} for i in range(len(frames))]
    annotations, results = [], []
    for inst in ground_truth:
        for t, seg in enumerate(inst["segmentations"]):
            if seg is not None and (inst["video_id"], t) in index:
                area = float(mask_util.area({**seg, "counts": seg["counts"].encode()}))
                annotations.append(
                    dict(id=len(annotations) + 1, image_id=index[inst["video_id"], t], category_id=inst["category_id"],
                         iscrowd=inst["iscrowd"], segmentation=seg, area=area)
                )  # fmt: skip
    for inst in predictions:
        for t, seg in enumerate(inst["segmentations"]):
            if seg is not None and (inst["video_id"], t) in index:
                results.append(
                    dict(image_id=index[inst["video_id"], t], category_id=inst["category_id"], score=inst["score"],
                         segmentation=seg)
                )  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c, _ in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0] * 100


def test_per_frame_mask_ap_equals_coco_on_frames():
    """bootstrap_ytvis(frames=...) gives pycocotools' segm AP with the frames as images, and
    redraws the frames by video. No crowd: a crowd region's IoU is YouTube-VIS's (plain) here,
    COCO's (intersection over the detection's area) there."""
    from temporal_roi_align.evaluation.bootstrap import bootstrap_ytvis

    from helpers.ytvis_cases import CATEGORIES

    video_ids, ground_truth, predictions = ytvis_instances(4)
    ground_truth = [dict(g, iscrowd=0) for g in ground_truth]
    lengths = {g["video_id"]: len(g["segmentations"]) for g in ground_truth}
    every = [(v, t) for v in video_ids if v in lengths for t in range(lengths[v])]
    some = every[::2]
    for frames in (every, some):
        values, draws = bootstrap_ytvis(video_ids, CATEGORIES, ground_truth, [predictions], ("AP",), 40, frames=frames)
        assert values[0, 0] == pytest.approx(frame_coco_ap(frames, CATEGORIES, ground_truth, predictions), abs=1e-9)
        assert len(set(np.round(draws[:, 0, 0], 6))) > 5
    only_first = [(v, t) for v, t in every if v == video_ids[0]]
    _, draws = bootstrap_ytvis(video_ids, CATEGORIES, ground_truth, [predictions], ("AP",), 40, frames=only_first)
    # A redraw without the first video has no frame to score (nan); the others score its frames.
    value = frame_coco_ap(only_first, CATEGORIES, ground_truth, predictions)
    assert set(np.round(draws[:, 0, 0][np.isfinite(draws[:, 0, 0])], 6)) == {round(value, 6)}
