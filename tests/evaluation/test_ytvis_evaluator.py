"""YouTube-VIS video mask AP: hand-computed cases, equality with the official API, bad input,
and YTVISEvaluator end to end on a registered YouTube-VIS JSON."""

import contextlib
import copy
import importlib.util
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.structures import Instances

from temporal_roi_align.evaluation import (
    YTVIS_METRICS,
    YTVISEvaluator,
    evaluate_ytvis,
    video_ground_truth,
    video_mask_ious,
    video_predictions,
)
from temporal_roi_align.evaluation.ytvis_metric import mean_area

from helpers.ytvis_cases import (
    A_SHIFTED,
    CATEGORIES,
    A,
    H,
    W,
    box_mask,
    frame_inputs,
    gt_json,
    random_case,
    results_json,
    rle,
)

# ---------------------------------------------------------------------------------------------
# Helpers


def score(tmp_path, videos, gts, dts, **kwargs):
    return evaluate_ytvis(gt_json(tmp_path, videos, gts, **kwargs), results_json(tmp_path, dts))


def ap101(points):
    """101-point interpolated AP in % from (recall, precision) points."""
    total = sum(max((p for r, p in points if r >= t / 100 - 1e-12), default=0.0) for t in range(101))
    return total / 101 * 100


# ---------------------------------------------------------------------------------------------
# Hand-computed cases


def test_video_iou_sums_over_frames_and_skips_frames_where_both_are_absent():
    g = [rle(A), rle(A), None, rle(A)]
    # One frame wrong: I = 20 + 20 + 10, U = 20 + 20 + 30.
    assert video_mask_ious([[rle(A), rle(A), None, rle(A_SHIFTED)]], [g])[0, 0] == 50 / 70
    # Frame 2 (both absent) adds nothing; a detection where the object is absent adds to U.
    assert video_mask_ious([[rle(A), rle(A), None, rle(A)]], [g])[0, 0] == 1.0
    assert video_mask_ious([[rle(A), rle(A), rle(A), rle(A)]], [g])[0, 0] == 60 / 80
    # A detection absent where the object is present: its area only in U.
    assert video_mask_ious([[None, rle(A), None, rle(A)]], [g])[0, 0] == 40 / 60
    # Nothing anywhere: 0, not nan. Empty inputs: empty matrices.
    empty = rle(np.zeros((H, W), bool))
    assert video_mask_ious([[empty, None, None, None]], [[empty, None, None, None]])[0, 0] == 0.0
    assert video_mask_ious([], [g]).shape == (0, 1)
    assert video_mask_ious([g, g], []).shape == (2, 0)


def test_video_iou_matches_merge_on_large_frames():
    rng = np.random.default_rng(0)
    h, w = 1080, 1920  # areas up to 2e6: the integer intersection is recovered exactly

    def mask():
        y, x = rng.integers(0, 500, 2)
        m = box_mask(h, w, y, x, y + rng.integers(100, 1000), x + rng.integers(100, 1900))
        m[y : y + 64, x : x + 64] &= rng.random((64, 64)) < 0.5  # ragged corner
        return m

    d = [[rle(mask()), rle(mask())] for _ in range(2)]
    g = [[rle(mask()), rle(mask())] for _ in range(2)]
    ious = video_mask_ious(d, g)
    assert (ious > 0).all()
    for i, j in np.ndindex(2, 2):
        inter = sum(float(mask_util.area(mask_util.merge([a, b], True))) for a, b in zip(d[i], g[j]))
        union = sum(float(mask_util.area(mask_util.merge([a, b], False))) for a, b in zip(d[i], g[j]))
        assert ious[i, j] == inter / union


def test_perfect_predictions_score_100(tmp_path):
    videos = [(1, H, W, 3), (2, H, W, 2)]
    gts = [(1, 1, [A, None, A], 0), (1, 2, [None, A_SHIFTED, A], 0), (2, 1, [A, A], 0)]
    res = score(tmp_path, videos, gts, [(v, c, 0.5, m) for v, c, m, _ in gts])
    for k in YTVIS_METRICS:
        if k in ("APm", "APl", "ARm", "ARl"):
            assert math.isnan(res[k]), k  # every object is small
        else:
            assert res[k] == pytest.approx(100.0), k
    assert res["AP-cat"] == pytest.approx(100.0) and res["AP-dog"] == pytest.approx(100.0)


def test_one_frame_wrong_matches_below_its_video_iou(tmp_path):
    videos = [(1, H, W, 3)]
    res = score(tmp_path, videos, [(1, 1, [A, A, A], 0)], [(1, 1, 0.9, [A, A, A_SHIFTED])])
    # IoU 50/70 = 0.714: a match at thresholds 0.50 ... 0.70 (5 of 10), a miss above.
    assert res["AP50"] == pytest.approx(100.0)
    assert res["AP75"] == pytest.approx(0.0)
    assert res["AP"] == pytest.approx(50.0)
    assert res["AR1"] == pytest.approx(50.0)


def test_class_mismatch_is_a_miss_and_a_false_positive(tmp_path):
    videos = [(1, H, W, 2)]
    res = score(tmp_path, videos, [(1, 1, [A, A], 0)], [(1, 2, 0.9, [A, A])])
    assert res["AP"] == pytest.approx(0.0)
    assert res["AP-cat"] == pytest.approx(0.0)
    assert math.isnan(res["AP-dog"])  # no ground truth: not in the mean


def test_duplicates_are_false_positives(tmp_path):
    videos = [(1, H, W, 2), (2, H, W, 2)]
    gts = [(1, 1, [A, A], 0), (2, 1, [A, None], 0)]
    dts = [(1, 1, 0.9, [A, A]), (1, 1, 0.8, [A, A]), (2, 1, 0.7, [A, None])]
    res = score(tmp_path, videos, gts, dts)
    # Ranked: TP, FP (duplicate), TP -> (recall, precision) (0.5, 1), (1, 2/3).
    assert res["AP"] == pytest.approx(ap101([(0.5, 1.0), (1.0, 2 / 3)]))
    assert res["AR1"] == pytest.approx(100.0)  # the duplicate is not the top-1 of its video


def test_max_detections_per_video(tmp_path):
    videos = [(1, H, W, 1)]
    B = box_mask(H, W, 5, 6, 9, 11)
    res = score(tmp_path, videos, [(1, 1, [A], 0), (1, 1, [B], 0)], [(1, 1, 0.9, [A]), (1, 1, 0.8, [B])])
    assert res["AR1"] == pytest.approx(50.0)
    assert res["AR10"] == pytest.approx(100.0)


def test_crowd_ground_truth_is_ignored_and_absorbs_detections(tmp_path):
    videos = [(1, H, W, 2)]
    B = box_mask(H, W, 5, 6, 9, 11)
    gts = [(1, 1, [A, A], 0), (1, 1, [B, B], 1)]
    dts = [(1, 1, 0.95, [B, B]), (1, 1, 0.9, [B, B]), (1, 1, 0.5, [A, A])]
    res = score(tmp_path, videos, gts, dts)
    assert res["AP"] == pytest.approx(100.0)  # both detections on the crowd are dropped
    only_crowd = score(tmp_path, videos, gts[1:], dts)
    assert math.isnan(only_crowd["AP"])


def test_area_is_the_mean_over_non_empty_frames(tmp_path):
    assert mean_area([None, 0, 10, 20]) == 15.0
    assert mean_area([None, 0]) == 0.0
    # 128 x 128 = 128² px: in both "small" and "medium" (bounds inclusive), not "large".
    side = 130
    big = box_mask(side, side, 0, 0, 128, 128)
    empty = np.zeros((side, side), bool)
    videos = [(1, side, side, 3)]
    gts = [(1, 1, [big, empty, None], 0)]  # mean over the one non-empty frame
    res = score(tmp_path, videos, gts, [(1, 1, 0.9, [big, empty, None])])
    assert res["APs"] == pytest.approx(100.0)
    assert res["APm"] == pytest.approx(100.0)
    assert math.isnan(res["APl"])


def test_area_ranges_use_the_json_areas(tmp_path):
    path = gt_json(tmp_path, [(1, H, W, 2)], [(1, 1, [A, A], 0)])
    data = json.loads(open(path).read())
    data["annotations"][0]["areas"] = [200**2, None]  # medium, although the mask is small
    open(path, "w").write(json.dumps(data))
    res = evaluate_ytvis(path, results_json(tmp_path, [(1, 1, 0.9, [A, A])]))
    assert res["APm"] == pytest.approx(100.0)
    assert math.isnan(res["APs"]) and math.isnan(res["APl"])


def test_ground_truth_without_a_mask_is_a_missed_object(tmp_path):
    """An object whose masks are all empty or null stays ground truth (it can never be found), as
    in the official API; the loader keeps it in "video_tracks"."""
    empty = np.zeros((H, W), bool)
    gts = [(1, 1, [A, A], 0), (1, 1, [empty, None], 0), (1, 1, [None, None], 0)]
    res = score(tmp_path, [(1, H, W, 2)], gts, [(1, 1, 0.9, [A, A])])
    assert res["AR100"] == pytest.approx(100 / 3) and res["AP"] == pytest.approx(ap101([(1 / 3, 1.0)]))


def test_matches_the_cocoeval_of_a_one_frame_dataset(tmp_path):
    """On one-frame videos, video AP is COCO mask AP with YouTube-VIS's area ranges."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(1)
    h, w = 40, 50

    def random_box():
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        return box_mask(h, w, y0, x0, y0 + rng.integers(4, 20), x0 + rng.integers(4, 25))

    videos = [(v, h, w, 1) for v in range(1, 7)]
    gts = [(v, int(rng.integers(1, 3)), [random_box()], 0) for v in range(1, 7) for _ in range(3)]
    dts = [(v, int(rng.integers(1, 3)), float(rng.random()), [random_box()]) for v in range(1, 7) for _ in range(5)]
    dts += [(v, c, float(rng.random()), [m[0]]) for v, c, m, _ in gts[::2]]
    res = score(tmp_path, videos, gts, dts)

    coco = COCO()
    coco.dataset = {
        "images": [{"id": v, "height": h, "width": w} for v, *_ in videos],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": v,
                "category_id": c,
                "segmentation": rle(m[0]),
                "area": float(m[0].sum()),
                "iscrowd": 0,
                "bbox": list(mask_util.toBbox(rle(m[0]))),
            }
            for i, (v, c, m, _) in enumerate(gts)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dt = coco.loadRes(
            [{"image_id": v, "category_id": c, "score": s, "segmentation": rle(m[0])} for v, c, s, m in dts]
        )
        E = COCOeval(coco, dt, "segm")
        E.params.areaRng = [[0, 1e10], [0, 128**2], [128**2, 256**2], [256**2, 1e10]]
        E.evaluate()
        E.accumulate()
        E.summarize()
    for name, s in zip(YTVIS_METRICS, E.stats):
        assert (math.isnan(res[name]) and s < 0) or res[name] == pytest.approx(s * 100, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Equality with the official YouTube-VIS API (youtubevos/cocoapi, as vendored in mmtrack 0.14.0)

MMTRACK = "mmtrack==0.14.0"
OFFICIAL_FILES = ("mmtrack/core/evaluation/ytvis.py", "mmtrack/core/evaluation/ytviseval.py")


def _official_api_dir():
    """(directory holding ytvis.py and ytviseval.py of the official API, extracted once into a
    cache dir, "") or (None, why not)."""
    cache = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "temporal_roi_align",
        "ytvis_api_mmtrack-0.14.0",
    )
    names = [os.path.basename(f) for f in OFFICIAL_FILES]
    if all(os.path.isfile(os.path.join(cache, n)) for n in names):
        return cache, ""
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(cache)) as tmp:
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--retries",
                    "0",
                    "--timeout",
                    "20",
                    "-q",
                    "-d",
                    tmp,
                    MMTRACK,
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"pip download {MMTRACK} failed: {e}"
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            return None, f"pip download {MMTRACK} failed: {last}"
        staging = os.path.join(tmp, "extracted")
        os.makedirs(staging)
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as whl:
            for member, name in zip(OFFICIAL_FILES, names):
                with open(os.path.join(staging, name), "wb") as f:
                    f.write(whl.read(member))
        try:
            os.rename(staging, cache)  # atomic: concurrent runs see both files or none
        except OSError:
            pass  # another run got there first
    return cache, ""


@pytest.fixture(scope="module")
def official_api():
    """(YTVIS, YTVISeval) classes of the official API."""
    directory, reason = _official_api_dir()
    if directory is None:
        pytest.skip(f"official YouTube-VIS API unavailable (offline?): {reason}")
    modules = []
    for name in ("ytvis", "ytviseval"):
        spec = importlib.util.spec_from_file_location(f"_official_{name}", os.path.join(directory, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # imports only numpy and pycocotools
        modules.append(module)
    return modules[0].YTVIS, modules[1].YTVISeval


def official_scores(api, gt_path, res_path):
    YTVIS, YTVISeval = api
    with open(gt_path) as f:
        gt = json.load(f)
    with open(res_path) as f:
        res = json.load(f)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()), pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "float", float, raising=False)  # removed in NumPy 1.24, used by accumulate
        ytvis = YTVIS(gt)
        E = YTVISeval(ytvis, ytvis.loadRes(copy.deepcopy(res)), "segm")
        E.evaluate()
        E.accumulate()
        E.summarize()
    out = {k: float(s * 100) if s >= 0 else float("nan") for k, s in zip(YTVIS_METRICS, E.stats)}
    for k, c in enumerate(E.params.catIds):
        p = E.eval["precision"][:, :, k, 0, -1]
        out[f"AP-{names[c]}"] = float(p[p > -1].mean() * 100) if (p > -1).any() else float("nan")
    return out


def max_abs_difference(a, b):
    assert a.keys() == b.keys()
    assert all(math.isnan(a[k]) == math.isnan(b[k]) for k in a), (a, b)
    return max(abs(a[k] - b[k]) for k in a if not math.isnan(a[k]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_official_api(tmp_path, official_api, seed):
    videos, gts, dts = random_case(seed)
    gt_path = gt_json(tmp_path, videos, gts, categories=CATEGORIES)
    res_path = results_json(tmp_path, dts)
    ours = evaluate_ytvis(gt_path, res_path)
    official = official_scores(official_api, gt_path, res_path)
    assert max_abs_difference(ours, official) < 1e-6
    assert 0 < ours["AP"] < 100  # the case is not degenerate
    assert not math.isnan(ours["APs"]) and not math.isnan(ours["APm"]) and not math.isnan(ours["APl"])


def _both_paths(tmp_path, register_ytvis_json, gt_path, dts, sizes, id_map):
    """(evaluate_ytvis on the JSON, YTVISEvaluator on the registered dataset) for the same
    predictions ``dts`` (video, category, score, masks)."""
    name = register_ytvis_json(gt_path)
    res_path = results_json(tmp_path, dts)
    out = run_evaluator(name, fake_outputs(dts, sizes, id_map), frame_inputs(name))["segm"]
    return evaluate_ytvis(gt_path, res_path), out, res_path


def _null_entries(path, annotation, frames, keys):
    data = json.loads(open(path).read())
    for f in frames:
        for key in keys:
            data["annotations"][annotation][key][f] = None
    open(path, "w").write(json.dumps(data))


@pytest.mark.parametrize(
    "fault",
    ["object without a mask anywhere", "bboxes null where the mask exists"],
)
def test_ground_truth_faults_score_as_the_official_api_by_both_paths(
    tmp_path, register_ytvis_json, official_api, fault
):
    videos = [(1, H, W, 3), (2, H, W, 2)]
    B = box_mask(H, W, 5, 6, 9, 11)
    gts = [(1, 1, [A, A, None], 0), (1, 2, [B, B, B], 0), (2, 1, [A, A_SHIFTED], 0), (2, 2, [B, None], 0)]
    gt_path = gt_json(tmp_path, videos, gts)
    if fault == "object without a mask anywhere":
        _null_entries(gt_path, 3, [0, 1], ["segmentations", "bboxes", "areas"])
    else:
        _null_entries(gt_path, 1, [0, 2], ["bboxes"])  # the masks stay: the API scores them
    dts = [(1, 1, 0.9, [A, A, None]), (1, 2, 0.8, [B, B, B]), (2, 1, 0.7, [A, A_SHIFTED]), (2, 2, 0.6, [B, None])]
    sizes = {1: (H, W, 3), 2: (H, W, 2)}
    ours, evaluator, res_path = _both_paths(tmp_path, register_ytvis_json, gt_path, dts, sizes, {1: 0, 2: 1})
    official = official_scores(official_api, gt_path, res_path)
    assert max_abs_difference(ours, official) < 1e-9
    assert max_abs_difference(evaluator, official) < 1e-9
    if fault == "object without a mask anywhere":
        assert official["AR100"] == pytest.approx(75.0)  # 3 of 4 objects found
    else:
        assert official["AP"] == pytest.approx(100.0)


def test_evaluator_of_an_empty_annotation_list_writes_the_submission(tmp_path, register_ytvis_json, caplog):
    name = register_ytvis_json(gt_json(tmp_path, [(1, H, W, 2)], []))  # "annotations": []
    outputs = fake_outputs([(1, 1, 0.8, [A, A])], {1: (H, W, 2)}, {1: 0, 2: 1})
    with caplog.at_level(logging.WARNING):
        res = run_evaluator(name, outputs, frame_inputs(name), output_dir=str(tmp_path / "out"))
    assert res == {} and (tmp_path / "out" / "submission.zip").exists()
    assert "'annotations' is an empty list: read as a split without labels" in caplog.text
    with pytest.raises(ValueError, match="has no 'annotations', or an empty list"):
        evaluate_ytvis(gt_json(tmp_path, [(1, H, W, 2)], [], name="empty.json"), results_json(tmp_path, []))


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.fixture
def good_gt(tmp_path):
    return gt_json(tmp_path, [(1, H, W, 2)], [(1, 1, [A, A], 0)])


@pytest.mark.parametrize(
    "results, match",
    [
        (
            [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [None]}],
            r"'segmentations' must have one entry per frame of video 1 \(2\), has 1",
        ),
        ([{"video_id": 9, "category_id": 1, "score": 0.9, "segmentations": [None, None]}], "unknown video_id 9"),
        (
            [{"video_id": 1, "category_id": 4, "score": 0.9, "segmentations": [None, None]}],
            r"unknown category_id 4, not one of \[1, 2\]",
        ),
        ([{"video_id": 1, "category_id": 1, "segmentations": [None, None]}], "must be an object with keys"),
        (
            [{"video_id": 1, "category_id": 1, "score": "high", "segmentations": [None, None]}],
            "'score' must be a number",
        ),
        ({"video_id": 1}, "results must be a JSON list"),
        (
            [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [rle(np.ones((H + 1, W), bool)), None]}],
            r"frame 0: mask size \[11, 12\]",
        ),
    ],
)
def test_bad_results_name_the_file_and_the_reason(tmp_path, good_gt, results, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match=match) as e:
        evaluate_ytvis(good_gt, str(path))
    assert str(path) in str(e.value)


def test_results_that_are_not_json(tmp_path, good_gt):
    path = tmp_path / "bad.json"
    path.write_text("[{'video_id': 1,")
    with pytest.raises(ValueError, match=f"{path}: results file is not valid JSON"):
        evaluate_ytvis(good_gt, str(path))
    with pytest.raises(FileNotFoundError, match="results file does not exist"):
        evaluate_ytvis(good_gt, str(tmp_path / "missing.json"))


def test_empty_results_are_scored_with_a_warning(tmp_path, good_gt, caplog):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    with caplog.at_level(logging.WARNING):
        res = evaluate_ytvis(good_gt, str(path))
    assert "is an empty list" in caplog.text and str(path) in caplog.text
    assert res["AP"] == 0.0 and res["AR10"] == 0.0


def test_ground_truth_without_annotations_points_to_the_server(tmp_path):
    path = tmp_path / "test.json"
    video = {"id": 1, "height": H, "width": W, "length": 1, "file_names": ["v1/00000.jpg"]}
    path.write_text(json.dumps({"videos": [video], "categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(ValueError, match=f"{path}: has no 'annotations'.*server"):
        evaluate_ytvis(str(path), results_json(tmp_path, []))


# ---------------------------------------------------------------------------------------------
# YTVISEvaluator end to end


def test_video_predictions_vote_the_class_and_average_the_score():
    r = rle(A)
    frames = [
        {"video_id": 4, "frame_id": 0, "detections": [(7, 1, 0.9, r), (3, 2, 0.2, r)]},
        {"video_id": 4, "frame_id": 1, "detections": [(7, 2, 0.5, r), (7, 0, 0.1, r)]},
        {"video_id": 4, "frame_id": 3, "detections": [(7, 2, 0.4, r), (3, 1, 0.4, r)]},
        {
            "video_id": 5,
            "frame_id": 0,
            "detections": [(7, 2, 0.3, r), (8, 1, 0.6, r), (8, 0, 0.6, r)],
        },
    ]
    preds, duplicates = video_predictions(frames, {4: 4, 5: 1})
    assert duplicates == 2  # track 7 twice in frame 1 of video 4; track 8 twice in video 5
    # Track 7 of video 4: classes 1, 2, 2 -> 2; track 3: classes 2, 1 (a tie) -> 1.
    assert [(p["video_id"], p["category_id"]) for p in preds] == [(4, 2), (4, 1), (5, 2), (5, 1)]
    assert preds[0]["score"] == pytest.approx((0.9 + 0.5 + 0.4) / 3)  # 0.1 duplicate dropped
    assert preds[1]["score"] == pytest.approx(0.3)
    assert preds[0]["segmentations"] == [r, r, None, r]
    assert preds[1]["segmentations"] == [r, None, None, r]
    assert preds[3]["score"] == pytest.approx(0.6)  # tie: the first one kept, class 1


def test_video_ground_truth_from_frame_dicts():
    polygon = [[0, 0, 5, 0, 5, 4, 0, 4]]
    polygon_rle = mask_util.merge(mask_util.frPyObjects(polygon, H, W))
    flat = mask_util.decode(polygon_rle).ravel(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    uncompressed = {"size": [H, W], "counts": np.diff(np.concatenate([[0], edges])).tolist()}

    def frame(frame_id, anns):
        return {
            "video_id": 3,
            "frame_id": frame_id,
            "video_length": 3,
            "height": H,
            "width": W,
            "annotations": [{"track_id": t, "category_id": c, "segmentation": s, "iscrowd": k} for t, c, s, k in anns],
        }

    dicts = [
        frame(2, [(11, 1, rle(A), 0)]),
        frame(0, [(10, 0, polygon, 1), (11, 1, rle(A_SHIFTED), 0)]),
        frame(1, []),
    ]
    dicts[0]["annotations"][0]["segmentation"] = uncompressed
    gt = video_ground_truth(dicts, "toy")
    assert [(g["video_id"], g["category_id"], g["iscrowd"]) for g in gt] == [(3, 0, 1), (3, 1, 0)]
    assert gt[0]["segmentations"][1:] == [None, None]
    assert mask_util.area(gt[0]["segmentations"][0]) == mask_util.area(polygon_rle) == 20
    assert gt[1]["segmentations"][0] == rle(A_SHIFTED) and gt[1]["segmentations"][1] is None
    assert (mask_util.decode(gt[1]["segmentations"][2]) == mask_util.decode(polygon_rle)).all()

    dicts[0]["annotations"][0]["category_id"] = 0
    with pytest.raises(ValueError, match="toy: video 3, frame 2: track 11 has category 0, 1 in"):
        video_ground_truth(dicts, "toy")


def fake_outputs(dts, sizes, id_map):
    """Per-frame tracker outputs whose video-level predictions are ``dts``: track t of a video
    has the class of ``dts`` in most of its frames (another one in a minority) and per-frame
    scores averaging the prediction's score."""
    per_frame = {}
    for t, (v, c, s, masks) in enumerate(dts):
        frames = [f for f, m in enumerate(masks) if m is not None]
        others = [k for k in id_map.values() if k != id_map[c]]
        for i, f in enumerate(frames):
            cls = others[0] if (i == 1 and len(frames) >= 3) else id_map[c]
            offset = 0.0 if len(frames) == 1 else (0.05 if i % 2 == 0 else -0.05)
            if len(frames) % 2 == 1 and i == len(frames) - 1:
                offset = 0.0
            per_frame.setdefault((v, f), []).append((t, cls, s + offset, masks[f]))
    outputs = {}
    for (v, f), dets in per_frame.items():
        h, w, _ = sizes[v]
        inst = Instances((h, w))
        inst.pred_masks = torch.from_numpy(np.stack([d[3] for d in dets]))
        inst.scores = torch.tensor([d[2] for d in dets], dtype=torch.float64)
        inst.pred_classes = torch.tensor([d[1] for d in dets])
        inst.pred_track_ids = torch.tensor([d[0] for d in dets])
        outputs[v, f] = inst
    return outputs


def run_evaluator(name, outputs, inputs, **kwargs):
    evaluator = YTVISEvaluator(name, distributed=kwargs.pop("distributed", False), **kwargs)
    evaluator.reset()
    for key, d in inputs.items():
        inst = outputs.get(key)
        if inst is None:
            inst = Instances((d["height"], d["width"]))
            inst.pred_masks = torch.zeros((0, d["height"], d["width"]), dtype=torch.bool)
            inst.scores, inst.pred_classes, inst.pred_track_ids = (torch.zeros(0) for _ in range(3))
        evaluator.process([d], [{"instances": inst}])
    return evaluator.evaluate()


def evaluator_case(tmp_path, register_ytvis_json):
    """A generated case through YTVISEvaluator: (metrics, written predictions, the track
    predictions fed in, video sizes, GT JSON path, results.json path)."""
    videos, gts, dts = random_case(4)
    gt_path = gt_json(tmp_path, videos, gts, categories=CATEGORIES)
    name = register_ytvis_json(gt_path)
    sizes = {v: (h, w, n) for v, h, w, n in videos}
    id_map = {c: i for i, (c, _) in enumerate(CATEGORIES)}
    dts = [d for d in dts if any(m is not None for m in d[3])]  # a track is detected somewhere
    outputs = fake_outputs(dts, sizes, id_map)
    out_dir = tmp_path / "out"
    res = run_evaluator(name, outputs, frame_inputs(name), output_dir=str(out_dir), distributed=True)
    results_path = str(out_dir / "results.json")
    written = json.loads(open(results_path).read())
    assert not (out_dir / "submission.zip").exists()
    return res["segm"], written, dts, sizes, gt_path, results_path


def test_evaluator_end_to_end(tmp_path, register_ytvis_json):
    res, written, dts, sizes, gt_path, results_path = evaluator_case(tmp_path, register_ytvis_json)
    # One prediction per track: majority class (in the dataset's ids), mean score, its masks.
    key = lambda v, c, s, masks: (v, c, round(s, 9), json.dumps(masks))  # noqa: E731
    assert sorted(key(p["video_id"], p["category_id"], p["score"], p["segmentations"]) for p in written) == sorted(
        key(v, c, s, [rle(m) if m is not None else None for m in masks]) for v, c, s, masks in dts
    )
    # The same numbers as scoring the written file against the JSON.
    assert max_abs_difference(res, evaluate_ytvis(gt_path, results_path)) < 1e-9
    assert 0 < res["AP"] < 100


def test_evaluator_equals_the_official_api(tmp_path, register_ytvis_json, official_api):
    res, _, _, _, gt_path, results_path = evaluator_case(tmp_path, register_ytvis_json)
    assert max_abs_difference(res, official_scores(official_api, gt_path, results_path)) < 1e-6


def test_evaluator_perfect_tracks_and_unprocessed_videos(tmp_path, register_ytvis_json, caplog):
    videos = [(1, H, W, 3), (2, H, W, 2)]
    gts = [(1, 2, [A, None, A], 0), (2, 1, [A, A], 0)]
    name = register_ytvis_json(gt_json(tmp_path, videos, gts))
    inputs = {k: d for k, d in frame_inputs(name).items() if k[0] == 1}  # video 2 never processed
    outputs = fake_outputs([(1, 2, 0.8, [A, None, A])], {1: (H, W, 3)}, {1: 0, 2: 1})
    with caplog.at_level(logging.WARNING):
        res = run_evaluator(name, outputs, inputs)["segm"]
    assert "1 of 2 videos" in caplog.text
    assert res["AP"] == pytest.approx(100.0)
    assert res["AP-dog"] == pytest.approx(100.0) and math.isnan(res["AP-cat"])


def test_evaluator_without_annotations_writes_the_submission(tmp_path, register_ytvis_json, caplog):
    videos = [(1, H, W, 3)]
    path = gt_json(tmp_path, videos, [])
    data = json.loads(open(path).read())
    del data["annotations"]
    (tmp_path / "test.json").write_text(json.dumps(data))
    name = register_ytvis_json(str(tmp_path / "test.json"))
    outputs = fake_outputs([(1, 2, 0.8, [A, None, A_SHIFTED])], {1: (H, W, 3)}, {1: 0, 2: 1})
    out_dir = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        res = run_evaluator(name, outputs, frame_inputs(name), output_dir=str(out_dir))
    assert res == {}
    assert "has no annotations" in caplog.text and "evaluation server" in caplog.text
    assert str(out_dir / "submission.zip") in caplog.text
    with zipfile.ZipFile(out_dir / "submission.zip") as zf:
        assert zf.namelist() == ["results.json"]
        submitted = json.loads(zf.read("results.json"))
    assert submitted == json.loads((out_dir / "results.json").read_text())
    assert submitted == [
        {"video_id": 1, "score": pytest.approx(0.8), "category_id": 2, "segmentations": [rle(A), None, rle(A_SHIFTED)]}
    ]


def test_evaluator_rejects_bad_outputs(tmp_path, register_ytvis_json):
    name = register_ytvis_json(gt_json(tmp_path, [(1, H, W, 1)], [(1, 1, [A], 0)]))
    evaluator = YTVISEvaluator(name, distributed=False)  # before the dataset is loaded
    evaluator.reset()
    d = frame_inputs(name)[1, 0]
    inst = Instances((H, W))
    inst.pred_masks = torch.zeros((1, H // 2, W // 2), dtype=torch.bool)
    inst.scores, inst.pred_classes = torch.ones(1), torch.zeros(1, dtype=torch.int64)
    with pytest.raises(ValueError, match="lack \\['pred_track_ids'\\]"):
        evaluator.process([d], [{"instances": inst}])
    inst.pred_track_ids = torch.zeros(1, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"masks must be at the original resolution \(10, 12\)"):
        evaluator.process([d], [{"instances": inst}])
    inst.pred_masks = torch.full((1, H, W), 0.7)
    with pytest.raises(ValueError, match="pred_masks must be binary"):
        evaluator.process([d], [{"instances": inst}])
    inst.pred_masks = torch.from_numpy(A[None])
    evaluator.process([d], [{"instances": inst}])
    assert evaluator.evaluate()["segm"]["AP"] == pytest.approx(100.0)
