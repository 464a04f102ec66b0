"""The generated toy dataset: format, determinism, degradations, regeneration, CLI."""

import filecmp
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import partial

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from temporal_roi_align.data import TOY_CATEGORIES, ensure_toy_vid, make_toy_vid
from temporal_roi_align.data.datasets import load_imagenet_vid
from temporal_roi_align.data.toy import DEGRADATIONS, ToySpec, generation, load_toy_vid

from helpers import REPO

TINY = dict(num_train_videos=2, num_val_videos=1, frames_per_video=4, val_frames_per_video=5, image_size=(48, 64))


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_layout_in_imagenet_vid_format(vid_toy_root, vid_toy_kwargs):
    k = vid_toy_kwargs
    videos = sorted(os.listdir(os.path.join(vid_toy_root, "Data", "VID", "train")))
    assert videos == [f"toy_train_{i:04d}" for i in range(k["num_train_videos"])]
    frames = sorted(os.listdir(os.path.join(vid_toy_root, "Data", "VID", "val", "toy_val_0001")))
    assert frames == [f"{t:06d}.JPEG" for t in range(k["val_frames_per_video"])]
    image = cv2.imread(os.path.join(vid_toy_root, "Data", "VID", "val", "toy_val_0001", "000000.JPEG"))
    assert image.shape == (*k["image_size"], 3)
    root = ET.parse(os.path.join(vid_toy_root, "Annotations", "VID", "val", "toy_val_0001", "000002.xml")).getroot()
    assert root.find("size/width").text == str(k["image_size"][1])
    for obj in root.findall("object"):
        assert obj.find("name").text in {w for _, w in TOY_CATEGORIES}
        assert {c.tag for c in obj} >= {"trackid", "bndbox", "occluded", "generated"}
    assert root.find("degradation") is not None
    with open(os.path.join(vid_toy_root, "ImageSets", "VID_val_videos.txt")) as f:
        assert f.read().split() == [
            "val/toy_val_0000",
            "1",
            "0",
            "8",
            "val/toy_val_0001",
            "9",
            "0",
            "8",
        ]


def test_registered_names_and_degradations(vid_toy_datasets_env):
    assert MetadataCatalog.get("toy_vid_train").thing_classes == [c for c, _ in TOY_CATEGORIES]
    train, val = DatasetCatalog.get("toy_vid_train"), DatasetCatalog.get("toy_vid_val")
    assert len(train) == 3 * 6 and len(val) == 2 * 8
    for d in train + val:
        assert d["annotations"] and d["degradation"] in ("",) + DEGRADATIONS
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= d["width"] and 0 <= y0 < y1 <= d["height"]
            assert a["occluded"] == int(d["degradation"] == "occlusion")
    for video in {d["video_id"] for d in val}:
        kinds = [d["degradation"] for d in val if d["video_id"] == video]
        assert sum(k != "" for k in kinds) == round(0.35 * 8)  # the rest stay clear
    assert {a["category_id"] for d in train for a in d["annotations"]} == {0, 1, 2}
    classes = {}
    for d in train + val:
        for a in d["annotations"]:
            classes.setdefault((d["video_id"], a["track_id"]), set()).add(a["category_id"])
    assert all(len(c) == 1 for c in classes.values())  # a track keeps its class


def test_blur_makes_frames_harder(tmp_path):
    root = make_toy_vid(
        str(tmp_path / "t"),
        **dict(TINY, num_val_videos=4, val_frames_per_video=20, degradation_prob=0.5),
    )
    dicts = load_toy_vid(root, "val")

    def sharpness(d):
        gray = cv2.imread(d["file_name"], cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return cv2.Laplacian(gray, cv2.CV_32F).var()

    clear = np.median([sharpness(d) for d in dicts if d["degradation"] == ""])
    blurred = [sharpness(d) for d in dicts if d["degradation"] in ("motion_blur", "defocus")]
    assert blurred and max(blurred) < 0.5 * clear


def test_deterministic_given_seed(tmp_path):
    a = make_toy_vid(str(tmp_path / "a"), **TINY, seed=1)
    b = make_toy_vid(str(tmp_path / "b"), **TINY, seed=1)
    c = make_toy_vid(str(tmp_path / "c"), **TINY, seed=2)
    files = all_files(a)
    assert files == all_files(b) == all_files(c)
    assert filecmp.cmpfiles(a, b, files, shallow=False)[0] == files
    assert filecmp.cmpfiles(a, c, files, shallow=False)[1]  # another seed, other pictures


def test_num_classes_limits_the_classes(tmp_path):
    root = make_toy_vid(str(tmp_path / "t"), **dict(TINY, num_train_videos=6), num_classes=1)
    dicts = load_imagenet_vid(root, "ImageSets/VID_train_15frames.txt", categories=TOY_CATEGORIES)
    assert {a["category_id"] for d in dicts for a in d["annotations"]} == {0}


@pytest.mark.parametrize(
    "name, value",
    [
        ("num_train_videos", -1),
        ("num_val_videos", -1),
        ("frames_per_video", 0),
        ("val_frames_per_video", 0),
        ("image_size", (31, 64)),
        ("image_size", (64,)),
        ("num_classes", 0),
        ("num_classes", len(TOY_CATEGORIES) + 1),
        ("max_objects", 0),
        ("degradation_prob", 1.5),
        ("difficulty", -0.5),
        ("seed", -1),
    ],
)
def test_a_bad_argument_is_named_and_nothing_is_written(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"argument {name} must be .*, got {re.escape(repr(value))}"):
        ensure_toy_vid(str(tmp_path / "t"), **dict(TINY, **{name: value}))
    assert not os.listdir(tmp_path)


def test_ensure_regenerates_only_when_parameters_change(tmp_path):
    root = str(tmp_path / "toy_vid")
    ensure_toy_vid(root, **TINY)
    stamp = os.path.join(root, "toy_vid.json")
    first = os.stat(stamp).st_mtime_ns
    ensure_toy_vid(root, **TINY)
    assert os.stat(stamp).st_mtime_ns == first
    ensure_toy_vid(root, **dict(TINY, num_val_videos=2))
    with open(stamp) as f:
        assert json.load(f)["num_val_videos"] == 2
    assert len(os.listdir(os.path.join(root, "Data", "VID", "val"))) == 2
    assert sorted(os.listdir(tmp_path)) == ["toy_vid"]  # no temporary folder left


def test_never_overwrites_other_data(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        ensure_toy_vid(str(tmp_path / "mine"), **TINY)
    assert (tmp_path / "mine" / "keep.txt").exists()


def test_registered_names_generate_on_first_use(tmp_path, monkeypatch, vid_toy_root, vid_toy_kwargs):
    # A toy dataset already there is used as it is, whatever its arguments.
    monkeypatch.setenv("DETECTRON2_DATASETS", os.path.dirname(vid_toy_root))
    assert len(DatasetCatalog.get("toy_vid_val")) == vid_toy_kwargs["num_val_videos"] * 8
    # None there: the default one is made (a smaller default here, for speed).
    monkeypatch.setattr(generation, "ToySpec", partial(ToySpec, **TINY))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert len(DatasetCatalog.get("toy_vid_val")) == 1 * 5
    assert len(DatasetCatalog.get("toy_vid_train")) == 2 * 4
    with open(tmp_path / "toy_vid" / "toy_vid.json") as f:
        assert json.load(f)["num_train_videos"] == 2


def test_cli_default_size_is_the_library_default(tmp_path):
    script = os.path.join(REPO, "tools", "make_toy_vid.py")
    out = subprocess.run(
        [sys.executable, script, "--root", str(tmp_path / "toy_vid")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count(str(tmp_path / "toy_vid")) == 1  # "toy_vid ready at ...", once
    dicts = load_imagenet_vid(str(tmp_path / "toy_vid"), "ImageSets/VID_train_15frames.txt", categories=TOY_CATEGORIES)
    assert len(dicts) == 24 * 15
    assert {d["height"] for d in dicts} == {128} and {d["width"] for d in dicts} == {160}
    # The command's defaults are the library's: the registered names take this dataset as it is.
    stamp = os.path.join(tmp_path, "toy_vid", "toy_vid.json")
    before = os.path.getmtime(stamp)
    ensure_toy_vid(str(tmp_path / "toy_vid"))
    assert os.path.getmtime(stamp) == before


def test_cli_options_set_every_field_of_the_spec(tmp_path):
    options = "--train-videos 1 --val-videos 2 --frames 3 --val-frames 4 --size 40 56 --num-classes 2 --max-objects 3"
    options += " --degradation-prob 0.5 --difficulty 0.25 --seed 7"
    script = os.path.join(REPO, "tools", "make_toy_vid.py")
    out = subprocess.run(
        [sys.executable, script, "--root", str(tmp_path / "t"), *options.split()], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "t" / "toy_vid.json") as f:
        assert json.load(f) == dict(
            num_train_videos=1,
            num_val_videos=2,
            frames_per_video=3,
            val_frames_per_video=4,
            image_size=[40, 56],
            num_classes=2,
            max_objects=3,
            degradation_prob=0.5,
            difficulty=0.25,
            seed=7,
            version=3,
        )
