"""ImageNet VID/DET loading from fixture trees in the official on-disk format."""

import logging
import os
import shutil
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from temporal_roi_align.data import frame_file_name
from temporal_roi_align.data.datasets import VID_CATEGORIES, load_imagenet_vid

from helpers import REPO, load_script
from helpers.dataset_files import CAT, DOG, HORSE, vid_xml, write_split, write_video

PERSON = "n00007846"  # a DET class outside the 30 VID classes


prepare_imagenet_vid_splits = load_script(
    os.path.join(REPO, "datasets", "prepare_imagenet_vid.py")
).prepare_imagenet_vid_splits


def write_det(root, image, objects, size=(50, 40)):
    for kind in ("Data", "Annotations"):
        os.makedirs(os.path.dirname(os.path.join(root, kind, "DET", image)), exist_ok=True)
    Image.new("RGB", size).save(os.path.join(root, "Data", "DET", image + ".JPEG"), "JPEG")
    with open(os.path.join(root, "Annotations", "DET", image + ".xml"), "w") as f:
        f.write(vid_xml(*size, [(None, w, b) for w, b in objects], track=False))


@pytest.fixture
def vid_root(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(
        root,
        "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000",
        5,
        lambda t: [(0, CAT, (2, 3, 20, 30)), (1, HORSE, (10, 10, 39, 31))],
    )
    write_video(root, "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001", 1)
    write_video(
        root,
        "val/ILSVRC2015_val_00000000",
        4,
        lambda t: [] if t == 2 else [(3, DOG, (0, 0, 10, 10))],
    )
    return root


def test_load_vid_train_listed_frames(vid_root):
    split = write_split(
        vid_root,
        "VID_train_15frames.txt",
        [
            "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000 1 1 5",
            "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000 1 3 5",
            "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001 1 0 1",
        ],
    )
    dicts = load_imagenet_vid(vid_root, split)
    assert [(d["frame_id"], d["video_length"]) for d in dicts] == [(1, 5), (3, 5), (0, 1)]
    d = dicts[0]
    video = "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    assert d["file_name"] == os.path.join(vid_root, "Data", "VID", video, "000001.JPEG")
    assert (d["height"], d["width"], d["video_id"], d["image_id"]) == (
        32,
        40,
        f"VID/{video}",
        f"VID/{video}/000001",
    )
    assert "degradation" not in d
    cat, horse = d["annotations"]
    names = [c for c, _ in VID_CATEGORIES]
    assert cat["bbox"] == [2, 3, 20, 30] and cat["bbox_mode"] == BoxMode.XYXY_ABS
    assert (cat["category_id"], cat["track_id"], cat["iscrowd"]) == (
        names.index("domestic_cat"),
        0,
        0,
    )
    assert (horse["category_id"], horse["track_id"]) == (names.index("horse"), 1)
    # The dict knows every frame of its video, also frames the split file does not list.
    assert [os.path.isfile(frame_file_name(d, i)) for i in range(5)] == [True] * 5
    assert frame_file_name(d, 1) == d["file_name"]
    with pytest.raises(IndexError):
        frame_file_name(d, 5)


def test_load_vid_val_all_frames(vid_root):
    split = write_split(vid_root, "VID_val_videos.txt", ["val/ILSVRC2015_val_00000000 1 0 4"])
    dicts = load_imagenet_vid(vid_root, split, all_frames=True)
    assert [d["frame_id"] for d in dicts] == [0, 1, 2, 3]
    assert dicts[2]["annotations"] == []  # a frame without objects is kept
    assert dicts[0]["annotations"][0]["track_id"] == 3


def test_load_det_images_are_one_frame_videos(tmp_path, caplog):
    root = str(tmp_path)
    write_det(
        root,
        "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001",
        [(PERSON, (0, 0, 5, 5)), (DOG, (1, 2, 30, 20)), (DOG, (5, 5, 9, 9))],
    )
    write_det(root, "train/ILSVRC2013_train/n02084071/n02084071_1", [(DOG, (3, 3, 8, 8))])
    split = write_split(
        root,
        "DET_train_30classes.txt",
        ["train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001 1", "train/ILSVRC2013_train/n02084071/n02084071_1 2"],
    )
    dicts = load_imagenet_vid(root, split, subset="DET")
    d = dicts[0]
    assert (d["frame_id"], d["video_length"], d["height"], d["width"]) == (0, 1, 40, 50)
    assert frame_file_name(d, 0) == d["file_name"] and os.path.isfile(d["file_name"])
    # The person is skipped (not a VID class); DET objects get their index in the file as track id.
    assert [a["track_id"] for a in d["annotations"]] == [1, 2]
    assert len({x["video_id"] for x in dicts}) == 2


def test_box_outside_image_is_clipped_or_dropped(tmp_path, caplog):
    root = str(tmp_path)
    write_video(
        root,
        "val/v",
        1,
        lambda t: [(0, CAT, (-5, 2, 50, 20)), (1, DOG, (45, 0, 60, 10)), (2, DOG, (8, 8, 8, 20))],
    )
    split = write_split(root, "val.txt", ["val/v 1 0 1"])
    with caplog.at_level(logging.WARNING):
        (d,) = load_imagenet_vid(root, split)
    assert [a["bbox"] for a in d["annotations"]] == [[0, 2, 40, 20]]
    assert "dropped 2 instances" in caplog.text and "v/000000.xml" in caplog.text


def test_unknown_class_in_vid_is_skipped_with_warning(tmp_path, caplog):
    root = str(tmp_path)
    write_video(root, "val/v", 1, lambda t: [(0, "n99999999", (0, 0, 5, 5)), (1, CAT, (0, 0, 5, 5))])
    split = write_split(root, "val.txt", ["val/v 1 0 1"])
    with caplog.at_level(logging.WARNING):
        (d,) = load_imagenet_vid(root, split)
    assert [a["track_id"] for a in d["annotations"]] == [1]
    assert "n99999999" in caplog.text


@pytest.mark.parametrize(
    "content, reason",
    [
        ("<annotation><size><width>4", "not valid XML"),
        (
            "<annotation><object><name>n02121808</name></object></annotation>",
            "missing <size/width>",
        ),
        (vid_xml(40, 32, [(0, CAT, ("a", 0, 5, 5))]), "<bndbox/xmin> is not a number"),
    ],
)
def test_bad_xml_names_file_and_reason(tmp_path, content, reason):
    root = str(tmp_path)
    write_video(root, "val/v", 2)
    xml_file = os.path.join(root, "Annotations", "VID", "val", "v", "000001.xml")
    with open(xml_file, "w") as f:
        f.write(content)
    split = write_split(root, "val.txt", ["val/v 1 0 2"])
    with pytest.raises(ValueError, match=reason) as e:
        load_imagenet_vid(root, split, all_frames=True)
    assert xml_file in str(e.value)


def test_missing_annotation_file(tmp_path):
    root = str(tmp_path)
    write_video(root, "val/v", 2)
    xml_file = os.path.join(root, "Annotations", "VID", "val", "v", "000001.xml")
    os.remove(xml_file)
    with pytest.raises(FileNotFoundError, match="annotation file does not exist") as e:
        load_imagenet_vid(root, write_split(root, "val.txt", ["val/v 1 0 2"]), all_frames=True)
    assert xml_file in str(e.value)


def test_split_file_errors(tmp_path):
    root = str(tmp_path)
    write_video(root, "val/v", 2)
    split = write_split(root, "val.txt", ["val/v 1 0 2", "val/missing 3 0 7"])
    with pytest.raises(FileNotFoundError, match=r"val\.txt:2: video directory .*val/missing does not exist"):
        load_imagenet_vid(root, split)
    with pytest.raises(
        ValueError, match=r"bad\.txt:1: frame 2 is outside a video of 2 frames \(.*0-based file number 0\.\.1.*mmtrack"
    ):
        load_imagenet_vid(root, write_split(root, "bad.txt", ["val/v 1 2 2"]))
    with pytest.raises(ValueError, match=r"short\.txt:1: expected"):
        load_imagenet_vid(root, write_split(root, "short.txt", ["val/v 1"]))
    with pytest.raises(FileNotFoundError, match="nope.txt: split file does not exist"):
        load_imagenet_vid(root, "ImageSets/nope.txt")


def test_prepare_splits_from_raw_tree(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000", 40)
    write_video(root, "train/ILSVRC2015_VID_train_0001/ILSVRC2015_train_00001000", 3)
    write_video(root, "val/ILSVRC2015_val_00000000", 6)
    write_video(root, "val/ILSVRC2015_val_00000001", 2)
    write_det(root, "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001", [(DOG, (1, 1, 9, 9))])
    write_det(root, "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000002", [(PERSON, (1, 1, 9, 9))])
    write_det(
        root,
        "train/ILSVRC2013_train/n02084071/n02084071_7",
        [(PERSON, (0, 0, 4, 4)), (DOG, (1, 1, 9, 9))],
    )
    written = prepare_imagenet_vid_splits(root)
    assert written == {
        "VID_train_15frames.txt": 18,
        "VID_val_videos.txt": 2,
        "DET_train_30classes.txt": 2,
    }
    with open(os.path.join(root, "ImageSets", "VID_val_videos.txt")) as f:
        assert f.read().split("\n")[:2] == [
            "val/ILSVRC2015_val_00000000 1 0 6",
            "val/ILSVRC2015_val_00000001 7 0 2",
        ]

    train = load_imagenet_vid(root, "ImageSets/VID_train_15frames.txt")
    long_video = [d["frame_id"] for d in train if d["video_length"] == 40]
    assert len(long_video) == 15 and long_video == sorted(set(long_video)) and long_video[-1] >= 36
    assert [d["frame_id"] for d in train if d["video_length"] == 3] == [0, 1, 2]
    assert len(load_imagenet_vid(root, "ImageSets/VID_val_videos.txt", all_frames=True)) == 8
    det = load_imagenet_vid(root, "ImageSets/DET_train_30classes.txt", subset="DET")
    assert sorted(d["video_id"] for d in det) == [
        "DET/train/ILSVRC2013_train/n02084071/n02084071_7",
        "DET/train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001",
    ]


def test_prepare_without_det_tree_says_how_to_go_on(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "train/a/b", 2)
    write_video(root, "val/c", 2)
    with pytest.raises(FileNotFoundError, match="with_det=False / --no-det"):
        prepare_imagenet_vid_splits(root)


def test_prepare_with_a_wrong_root_keeps_existing_split_files(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "train/a/b", 2)
    write_video(root, "val/c", 2)
    assert prepare_imagenet_vid_splits(root, with_det=False)["VID_val_videos.txt"] == 1
    split = os.path.join(root, "ImageSets", "VID_val_videos.txt")
    with open(split) as f:
        before = f.read()
    shutil.rmtree(os.path.join(root, "Data", "VID", "val", "c"))  # now a tree without val videos
    with pytest.raises(FileNotFoundError, match="val holds no video"):
        prepare_imagenet_vid_splits(root, with_det=False)
    with open(split) as f:
        assert f.read() == before
    assert sorted(os.listdir(os.path.join(root, "ImageSets"))) == ["VID_train_15frames.txt", "VID_val_videos.txt"]


def test_prepare_cli_and_registration_touch_no_other_path(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "train/a/b", 2)
    write_video(root, "val/c", 2)
    script = os.path.join(REPO, "datasets", "prepare_imagenet_vid.py")
    # Importing the package registers every builtin dataset without touching $DETECTRON2_DATASETS.
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "absent"))
    out = subprocess.run(
        [sys.executable, script, "--root", root, "--no-det"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "VID_train_15frames.txt: 2 lines" in out.stdout
    assert not (tmp_path / "absent").exists()


# toy_vid_* and toy_vis_* are made on first use (test_toy_vid.py, test_toy_vis.py).
BUILTIN = [
    "imagenet_vid_train_15frames", "imagenet_det_train_30classes", "imagenet_vid_val",
    "imagenet_vid_train_15frames_cocofmt", "imagenet_vid_val_cocofmt",
    "ytvis_2019_train", "ytvis_2019_val", "ytvis_2021_train", "ytvis_2021_val",
]  # fmt: skip


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_missing_dataset_says_what_and_how(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    message = str(e.value)
    assert str(tmp_path) in message and name in message
    assert "datasets/README.md" in message


def test_builtin_vid_metadata_and_loading(tmp_path, monkeypatch):
    assert MetadataCatalog.get("imagenet_vid_val").thing_classes == [c for c, _ in VID_CATEGORIES]
    assert len(MetadataCatalog.get("imagenet_det_train_30classes").thing_wnids) == 30
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "val/ILSVRC2015_val_00000000", 3)
    write_split(root, "VID_val_videos.txt", ["val/ILSVRC2015_val_00000000 1 0 3"])
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert [d["frame_id"] for d in DatasetCatalog.get("imagenet_vid_val")] == [0, 1, 2]


def test_prepare_refuses_a_video_whose_frames_are_not_jpeg_named(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, "train/a/b", 2)
    write_video(root, "val/c", 2)
    write_video(root, "val/d", 2)
    for name in os.listdir(os.path.join(root, "Data", "VID", "val", "d")):
        if name.endswith(".JPEG"):
            src = os.path.join(root, "Data", "VID", "val", "d", name)
            os.rename(src, src[: -len(".JPEG")] + ".jpg")
    with pytest.raises(ValueError, match=r"val/d: holds images but no \.JPEG frames"):
        prepare_imagenet_vid_splits(root, with_det=False)
