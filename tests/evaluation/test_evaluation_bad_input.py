"""Evaluators: outputs of a broken model are errors naming the frame (they used to be dropped or
counted as false positives without a word), and result files are written whole or not at all."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.structures import Instances

from temporal_roi_align.evaluation import VIDEvaluator, YTVISEvaluator, vid_evaluation, ytvis_evaluation

from helpers.vid_cases import frame_dict, instances, run
from helpers.ytvis_cases import A, H, W, frame_inputs, gt_json

NAN, INF = float("nan"), float("inf")
GOOD = ((10, 10, 50, 50), 0.9, 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (((10, 10, 50, 50), NAN, 0), "1 detections with a non-finite score"),
        (((NAN, 10, 50, 50), 0.95, 0), "1 detections with a non-finite box"),
        (((10, 10, INF, 50), 0.95, 0), "1 detections with a non-finite box"),
        (((10, 10, 50, 50), 0.95, 2), r"1 detections of classes \[2\] outside 0\.\.1 \(2 thing_classes of"),
        (((10, 10, 50, 50), 0.95, -1), r"1 detections of classes \[-1\] outside 0\.\.1"),
    ],
)
def test_vid_evaluator_refuses_broken_detections(register_vid_dicts, bad, message):
    d = frame_dict(1, "v", 0, [((10, 10, 50, 50), 0, 0)])
    evaluator = VIDEvaluator(register_vid_dicts([d], ["a", "b"]), distributed=False)
    evaluator.reset()
    with pytest.raises(ValueError, match=rf"VIDEvaluator: image 1 \(v/000000\.JPEG\): {message}"):
        evaluator.process([d], [{"instances": instances([GOOD, bad])}])


def test_vid_results_are_written_atomically(register_vid_dicts, tmp_path, monkeypatch):
    name = register_vid_dicts([frame_dict(1, "v", 0, [((10, 10, 50, 50), 0, 0)])], ["a", "b"])
    run(name, {1: [GOOD]}, output_dir=str(tmp_path), motion_breakdown=False)
    before = {f: (tmp_path / f).read_text() for f in os.listdir(tmp_path)}
    assert sorted(before) == ["coco_instances_results.json", "vid_results.json"]

    def interrupted(obj, f, **kwargs):
        f.write('{"bbox": {"AP')
        raise KeyboardInterrupt

    monkeypatch.setattr(vid_evaluation.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(name, {1: [GOOD]}, output_dir=str(tmp_path), motion_breakdown=False)
    assert {f: (tmp_path / f).read_text() for f in os.listdir(tmp_path)} == before


def test_ytvis_results_are_written_atomically(register_ytvis_json, tmp_path, monkeypatch):
    path = gt_json(tmp_path, [(1, H, W, 1)], [(1, 1, [A], 0)])
    data = json.loads(open(path).read())
    del data["annotations"]  # a test split: results.json and submission.zip are written
    (tmp_path / "test.json").write_text(json.dumps(data))
    name = register_ytvis_json(str(tmp_path / "test.json"))
    out = tmp_path / "out"

    def evaluate(score):
        evaluator = YTVISEvaluator(name, str(out), distributed=False)
        evaluator.reset()
        inst = Instances((H, W))
        inst.pred_masks = torch.from_numpy(A[None])
        inst.scores, inst.pred_classes = torch.tensor([score]), torch.zeros(1, dtype=torch.int64)
        inst.pred_track_ids = torch.zeros(1, dtype=torch.int64)
        evaluator.process([frame_inputs(name)[1, 0]], [{"instances": inst}])
        return evaluator.evaluate()

    evaluate(0.9)
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert sorted(before) == ["results.json", "submission.zip"]

    def broken_zip(*args, **kwargs):
        raise OSError("disk full")

    # New results whose submission cannot be made: neither file changes, they stay a pair.
    monkeypatch.setattr(ytvis_evaluation.zipfile, "ZipFile", broken_zip)
    with pytest.raises(OSError, match="disk full"):
        evaluate(0.5)
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_ytvis_evaluator_refuses_nan_scores(register_ytvis_json, tmp_path):
    name = register_ytvis_json(gt_json(tmp_path, [(1, H, W, 1)], [(1, 1, [A], 0)]))
    evaluator = YTVISEvaluator(name, distributed=False)
    evaluator.reset()
    inst = Instances((H, W))
    inst.pred_masks = torch.from_numpy(np.stack([A, A]))
    inst.scores, inst.pred_classes = torch.tensor([0.5, NAN]), torch.zeros(2, dtype=torch.int64)
    inst.pred_track_ids = torch.arange(2)
    with pytest.raises(ValueError, match=r"YTVISEvaluator: video 1 frame 0: 1 detections with a non-finite score"):
        evaluator.process([frame_inputs(name)[1, 0]], [{"instances": inst}])
