"""The generated toy VIS dataset (YouTube-VIS JSON format) and its registered names."""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from temporal_roi_align.data import (
    TOY_VIS_CATEGORIES,
    ensure_toy_vis,
    is_degraded,
    load_toy_vis,
    make_toy_vid,
    make_toy_vis,
)
from temporal_roi_align.data.datasets import load_ytvis_json
from temporal_roi_align.data.toy.scene import Scene, load_sprites, load_textures
from temporal_roi_align.evaluation import evaluate_ytvis

from helpers import REPO

TINY = dict(num_train_videos=1, num_val_videos=1, frames_per_video=3, val_frames_per_video=3, image_size=(48, 64))


def read_json(root, split):
    with open(os.path.join(root, f"{split}.json")) as f:
        return json.load(f)


def test_layout_and_annotations_in_the_youtube_vis_format(vis_toy_root, vis_toy_kwargs):
    assert sorted(os.listdir(vis_toy_root)) == ["toy_vis.json", "train", "train.json", "valid", "valid.json"]
    for split, videos, frames in (("train", 3, 6), ("valid", 2, 5)):
        data = read_json(vis_toy_root, split)
        assert data["categories"] == [{"id": i, "name": n, "supercategory": "object"} for i, n in TOY_VIS_CATEGORIES]
        assert [v["id"] for v in data["videos"]] == list(range(1, videos + 1))
        for video in data["videos"]:
            assert (video["height"], video["width"], video["length"]) == (64, 80, frames)
            assert video["file_names"] == [f"{video['name']}/{t:05d}.jpg" for t in range(frames)]
            assert len(video["degradations"]) == frames
            for name in video["file_names"]:
                assert os.path.isfile(os.path.join(vis_toy_root, split, "JPEGImages", name))
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        for ann in data["annotations"]:
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 3
            assert len(ann["bboxes"]) == len(ann["segmentations"]) == len(ann["areas"]) == frames
            assert any(ann["segmentations"])
            for box, segm, area in zip(ann["bboxes"], ann["segmentations"], ann["areas"]):
                assert (box is None) == (segm is None) == (area is None)
                if segm is None:
                    continue
                mask = mask_util.decode(segm)
                ys, xs = np.nonzero(mask)
                assert mask.shape == (64, 80) and area == mask.sum() > 0
                assert box == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]


def test_masks_of_one_frame_do_not_overlap(vis_toy_root):
    data = read_json(vis_toy_root, "train")
    for video in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        for t in range(video["length"]):
            masks = [mask_util.decode(a["segmentations"][t]) for a in anns if a["segmentations"][t]]
            if masks:
                assert np.sum(masks, axis=0).max() == 1, "each pixel belongs to at most one visible object"


def test_the_loader_and_the_metric_read_it(vis_toy_root):
    dicts = load_toy_vis(vis_toy_root, "val", dataset_name="toy_vis_test_loader")
    assert len(dicts) == 2 * 5 and {d["video_length"] for d in dicts} == {5}
    assert MetadataCatalog.get("toy_vis_test_loader").thing_classes == [n for _, n in TOY_VIS_CATEGORIES]
    data = read_json(vis_toy_root, "valid")
    degradations = [kind for v in data["videos"] for kind in v["degradations"]]
    assert [d["degradation"] for d in dicts] == degradations
    assert sum(map(is_degraded, dicts)) == sum(map(bool, degradations)) > 0
    plain = load_ytvis_json(os.path.join(vis_toy_root, "valid.json"), os.path.join(vis_toy_root, "valid", "JPEGImages"))
    assert [d["annotations"] for d in plain] == [d["annotations"] for d in dicts]
    # The ground truth as predictions scores 100 with the YouTube-VIS metric.
    results = [
        {"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0, "segmentations": a["segmentations"]}
        for a in data["annotations"]
    ]
    results_file = os.path.join(os.path.dirname(vis_toy_root), "toy_vis_gt_results.json")
    with open(results_file, "w") as f:
        json.dump(results, f)
    scores = evaluate_ytvis(os.path.join(vis_toy_root, "valid.json"), results_file)
    assert scores["AP"] == pytest.approx(100.0)


def test_deterministic_given_seed(tmp_path):
    a, b = make_toy_vis(str(tmp_path / "a"), **TINY), make_toy_vis(str(tmp_path / "b"), **TINY)
    comparison = filecmp.dircmp(a, b)
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    assert read_json(a, "train") == read_json(b, "train")
    for split in ("train", "valid"):
        for video in read_json(a, split)["videos"]:
            for name in video["file_names"]:
                assert filecmp.cmp(*(os.path.join(r, split, "JPEGImages", name) for r in (a, b)), shallow=False)
    c = make_toy_vis(str(tmp_path / "c"), **dict(TINY, seed=1))
    assert read_json(c, "train") != read_json(a, "train")


def test_the_same_videos_as_the_toy_vid_dataset(tmp_path):
    """Same arguments, same frames: the VIS toy reuses the VID toy's renderer and draws."""
    vis = make_toy_vis(str(tmp_path / "vis"), **TINY)
    vid = make_toy_vid(str(tmp_path / "vid"), **TINY)
    for split, vid_split in (("train", "train"), ("valid", "val")):
        for video in read_json(vis, split)["videos"]:
            for t, name in enumerate(video["file_names"]):
                vid_file = os.path.join(vid, "Data", "VID", vid_split, video["name"], f"{t:06d}.JPEG")
                assert filecmp.cmp(os.path.join(vis, split, "JPEGImages", name), vid_file, shallow=False)


def test_asking_the_renderer_for_masks_changes_none_of_its_outputs():
    """The toy VID's outputs stay byte-identical: rendering with masks gives the same frames,
    boxes and random state; each mask's bounding box is the object's box."""
    sprites, textures = load_sprites(), load_textures()
    videos = [Scene(np.random.default_rng([5, v]), sprites, textures, (96, 128), 12, 3, 3, v) for v in (0, 0)]
    for t in range(12):
        masks = []
        frame, objects = videos[0].render(t)
        frame_m, objects_m = videos[1].render(t, masks)
        np.testing.assert_array_equal(frame, frame_m)
        assert objects == objects_m and len(masks) == len(objects)
        for (_, _, (x0, y0, x1, y1)), mask in zip(objects, masks):
            ys, xs = np.nonzero(mask)
            assert mask.dtype == bool and (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    assert videos[0].rng.integers(1 << 30) == videos[1].rng.integers(1 << 30)


def test_ensure_regenerates_only_when_parameters_change(tmp_path):
    root = str(tmp_path / "toy_vis")
    ensure_toy_vis(root, **TINY)
    stamp = os.path.join(root, "toy_vis.json")
    first = os.path.getmtime(stamp)
    ensure_toy_vis(root, **TINY)
    assert os.path.getmtime(stamp) == first
    ensure_toy_vis(root, **dict(TINY, difficulty=0.5))
    with open(stamp) as f:
        assert json.load(f)["difficulty"] == 0.5


def test_never_overwrites_other_data_and_checks_arguments(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not a toy VIS dataset"):
        make_toy_vis(str(other), **TINY)
    assert (other / "keep.txt").read_text() == "x"
    with pytest.raises(ValueError, match="num_classes must be in 1..3"):
        make_toy_vis(str(tmp_path / "x"), num_classes=4)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="toy VIS split must be one of"):
        load_toy_vis(str(tmp_path), "test")


def test_registered_names_generate_on_first_use(tmp_path, monkeypatch, vis_toy_root):
    for name in ("toy_vis_train", "toy_vis_val"):
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "ytvis"
        assert meta.thing_classes == ["domestic_cat", "horse", "motorcycle"]
        assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
        assert meta.frame_subsets == {"degraded": is_degraded}
    # A toy VIS dataset already there is used as it is, whatever its arguments.
    monkeypatch.setenv("DETECTRON2_DATASETS", os.path.dirname(vis_toy_root))
    assert len(DatasetCatalog.get("toy_vis_train")) == 3 * 6
    # None there: the default one is made.
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("toy_vis_val")
    assert len(dicts) == 16 * 20 and os.path.isfile(tmp_path / "toy_vis" / "toy_vis.json")


def test_cli(tmp_path):
    root = tmp_path / "cli_toy_vis"
    options = "--train-videos 1 --val-videos 1 --frames 2 --val-frames 2 --size 48 64".split()
    proc = subprocess.run(
        [sys.executable, "tools/make_toy_vis.py", "--root", str(root), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "toy_vis ready at" in proc.stdout
    assert read_json(str(root), "train")["videos"][0]["length"] == 2


def test_a_spec_without_videos_gives_empty_splits(tmp_path):
    root = make_toy_vis(str(tmp_path / "t"), num_train_videos=0, num_val_videos=0)
    assert read_json(root, "train")["videos"] == read_json(root, "valid")["annotations"] == []
    assert load_toy_vis(root, "val") == []
