"""VideoPredictor as a Detectron2 user expects it: DefaultPredictor's outputs, the tools' CPU
fallback and weight checks, the classes of the config's datasets; the README's examples run."""

import logging
import os
import re
import types

import cv2
import pytest
import torch
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from temporal_roi_align.checkpoint import CheckpointError
from temporal_roi_align.data import TOY_VIS_CATEGORIES
from temporal_roi_align.data.datasets import register_ytvis_instances
from temporal_roi_align.evaluation import to_ytvis_records
from temporal_roi_align.predictor import VideoPredictor, dataset_metadata

from helpers import REPO
from helpers.clips import clip_frames, write_clip
from helpers.configs import predictor_cfg


def save_weights(cfg, path):
    """A checkpoint that fits the model of ``cfg`` (random weights)."""
    torch.manual_seed(0)
    cfg = cfg.clone()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


def test_outputs_are_default_predictor_dicts(monkeypatch):
    predictor = VideoPredictor(predictor_cfg(), check_weights=False)
    frames = clip_frames(count=3)[1]
    outputs = predictor.predict_video(frames)
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(set(o) == {"instances"} and isinstance(o["instances"], Instances) for o in outputs)
    assert outputs[0]["instances"].image_size == (72, 96) and len(outputs[0]["instances"]) > 0

    streamed = predictor.iter_video(frames)
    assert isinstance(streamed, types.GeneratorType)
    for a, b in zip(streamed, outputs):
        torch.testing.assert_close(a["instances"].scores, b["instances"].scores)
    online = list(predictor.predict_stream(iter(frames)))
    assert len(online) == 3 and all(isinstance(o["instances"], Instances) for o in online)


def test_runs_on_the_cpu_with_a_warning_without_cuda(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = predictor_cfg()
    assert cfg.MODEL.DEVICE == "cuda"
    with caplog.at_level(logging.WARNING, logger="temporal_roi_align"):
        predictor = VideoPredictor(cfg, check_weights=False)
    assert "MODEL.DEVICE is 'cuda' but CUDA is not available: running on the CPU" in caplog.text
    assert predictor.cfg.MODEL.DEVICE == "cpu" and predictor.model.device.type == "cpu"
    assert cfg.MODEL.DEVICE == "cuda", "the caller's config is left as it was"
    assert len(predictor.predict_video(clip_frames(count=2)[1])) == 2


def test_weights_are_checked_by_default(tmp_path, caplog):
    cfg = predictor_cfg()
    with pytest.raises(CheckpointError, match="no weights were loaded"):
        VideoPredictor(cfg)
    weights = save_weights(cfg, str(tmp_path / "model.pth"))
    cfg.MODEL.WEIGHTS = weights
    VideoPredictor(cfg)  # whole weights pass

    state = torch.load(weights)
    del state["model"]["roi_heads.box_predictor.cls_score.weight"]
    torch.save(state, tmp_path / "partial.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial.pth do not fit the VideoRCNN for evaluation"):
        VideoPredictor(cfg)
    with caplog.at_level(logging.WARNING):
        VideoPredictor(cfg, allow_partial_weights=True)
    assert "box_predictor.cls_score.weight" in caplog.text and "running anyway" in caplog.text


def test_metadata_has_the_classes_of_the_configs_datasets(vis_toy_root, caplog, new_dataset_name):
    """Loaded once when the dataset was registered without them; else the training set's, else
    numbers with a warning."""
    name = new_dataset_name("custom_vis")  # registered without its classes: they are in its JSON
    register_ytvis_instances(
        name, {}, os.path.join(vis_toy_root, "valid.json"), os.path.join(vis_toy_root, "valid", "JPEGImages")
    )
    names = [n for _, n in TOY_VIS_CATEGORIES]
    metadata = dataset_metadata(predictor_cfg("masktrack", **{"DATASETS.TEST": (name,)}))
    assert metadata.thing_classes == names
    assert metadata.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}

    # The test set is not registered here: the training set's classes serve.
    cfg = predictor_cfg("masktrack", **{"DATASETS.TEST": ("nowhere",), "DATASETS.TRAIN": (name,)})
    assert dataset_metadata(cfg).thing_classes == names
    with caplog.at_level(logging.WARNING):
        cfg = predictor_cfg("masktrack", **{"DATASETS.TEST": ("nowhere",), "DATASETS.TRAIN": ("ytvis_2019_train",)})
        assert dataset_metadata(cfg).get("thing_classes") is None
    assert (
        "No class names: 'nowhere' is not registered; 'ytvis_2019_train' has 40 classes, the model 3. "
        "Classes are shown as numbers." in caplog.text
    )


def tracked_instances(classes, track_ids, size=(4, 5)):
    instances = Instances(size)
    n = len(classes)
    instances.pred_boxes = Boxes(torch.zeros(n, 4))
    instances.scores = torch.full((n,), 0.5)
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    instances.pred_track_ids = torch.tensor(track_ids, dtype=torch.int64)
    masks = torch.zeros(n, *size, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    instances.pred_masks = masks
    return instances


def test_to_ytvis_records_uses_the_datasets_category_ids():
    metadata = Metadata(thing_dataset_id_to_contiguous_id={10: 0, 20: 1, 30: 2})
    frames = (
        {"instances": tracked_instances([2, 0], [0, 1])},
        tracked_instances([2], [0]),  # an Instances works too
    )
    records = to_ytvis_records(iter(frames), 7, metadata, frame_ids=[0, 2], num_frames=4)
    assert [(r["video_id"], r["category_id"]) for r in records] == [(7, 30), (7, 10)]
    assert [s is not None for s in records[0]["segmentations"]] == [True, False, True, False]
    assert [r["category_id"] for r in to_ytvis_records(frames, 7)] == [2, 0]  # no metadata: the model's classes
    with pytest.raises(ValueError, match="frame 2 is not in a video of num_frames=2"):
        to_ytvis_records(frames, 7, frame_ids=[0, 2], num_frames=2)
    with pytest.raises(ValueError, match="frame_ids has 1 ids, frames_instances more frames"):
        to_ytvis_records(frames, 7, frame_ids=[0])
    detector = tracked_instances([1], [0])  # a detector's output: no masks, no track ids
    detector.remove("pred_masks")
    detector.remove("pred_track_ids")
    with pytest.raises(ValueError, match=r"frame 0: the model's instances lack \['pred_masks', 'pred_track_ids'\]"):
        to_ytvis_records([detector], 1)


def readme_python_blocks():
    """The ```python blocks of the README's section on whole-video inference."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Whole-video inference", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_examples_run(tmp_path, monkeypatch, vis_toy_root, capsys):
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    # The files the examples name, relative to the repository root as in the README.
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
    os.makedirs(tmp_path / "datasets")
    os.symlink(vis_toy_root, tmp_path / "datasets" / "toy_vis")
    for config, folder in (("troi", "vid/troi"), ("masktrack", "vis/masktrack")):
        save_weights(predictor_cfg(config), str(tmp_path / "output" / "quickstart" / folder / "model_final.pth"))
    write_clip(tmp_path / "in.mp4", 3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the examples' "cuda" runs on the CPU

    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert len(namespace["outputs"]) == 3
    assert cv2.imread("frame0.jpg").shape == (72, 96, 3)
    detections = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"\[\('(domestic_cat|horse|motorcycle)', 0\.\d+\).*\]", detections)

    exec(compile(blocks[1], "README.md", "exec"), namespace)
    ap = float(capsys.readouterr().out.splitlines()[-1])
    assert 0 <= ap <= 100
    records = namespace["records"]
    assert records and {r["category_id"] for r in records} <= {1, 2, 3}
    assert all(len(r["segmentations"]) == 5 and r["video_id"] == 1 for r in records)
