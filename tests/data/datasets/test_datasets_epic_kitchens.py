"""EPIC-KITCHENS-55 object detection loading, from fixture trees in the distributed format."""

import logging
import os
import pickle
import random
import shutil

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from temporal_roi_align.config import add_video_config
from temporal_roi_align.data import VideoDatasetMapper, frame_file_name
from temporal_roi_align.data.datasets import (
    EPIC_KITCHENS_55_SPLITS,
    NumberedFrames,
    load_epic_kitchens_55,
)
from temporal_roi_align.data.datasets.epic_kitchens import parse_bounding_boxes
from temporal_roi_align.engine import setup_cfg

from helpers import REPO
from helpers.dataset_files import CLASSES_CSV, LABELS_ROWS, epic_tree, image_path


@pytest.fixture
def epic_root(tmp_path):
    return epic_tree(str(tmp_path / "epic_kitchens"))


def by_image_id(dicts):
    return {d["image_id"]: d for d in dicts}


def test_box_order_is_top_left_height_width():
    # The README's example row: (top 76, left 1260, height 462, width 186).
    assert parse_bounding_boxes("[(76, 1260, 462, 186)]") == [[1260, 76, 1446, 538]]
    assert parse_bounding_boxes("[]") == []
    assert parse_bounding_boxes("[(1, 2, 3, 4), (5, 6, 7, 8)]") == [[2, 1, 6, 4], [6, 5, 14, 12]]


def test_load_train_one_dict_per_annotated_frame(epic_root, caplog):
    with caplog.at_level(logging.WARNING):
        dicts = load_epic_kitchens_55(epic_root, "train", dataset_name="test_epic_load")
    meta = MetadataCatalog.get("test_epic_load")
    assert meta.thing_classes == ["Nothing", "pan", "pan:dust", "tap"]
    assert meta.thing_dataset_id_to_contiguous_id == {0: 0, 1: 1, 2: 2, 3: 3}

    p01 = [d for d in dicts if d["video_id"] == "P01_01"]
    assert [(d["image_id"], d["frame_id"], d["video_length"]) for d in p01] == [
        ("P01_01/0000000001", 0, 4),
        ("P01_01/0000000031", 1, 4),
        ("P01_01/0000000061", 2, 4),
        ("P01_01/0000000121", 3, 4),
    ]
    assert p01[1]["file_name"] == image_path(epic_root, "train", "P01", "P01_01", 31)
    assert all((d["height"], d["width"]) == (48, 64) for d in p01)
    # Frame 1: the boxes of its two rows, in row order; (40, 50, 20, 20) is clipped to the
    # 64x48 image and (10, 70, 5, 5) lies outside it (dropped, with a warning).
    first = p01[0]["annotations"]
    assert [(a["category_id"], a["bbox"]) for a in first] == [
        (1, [20.0, 10.0, 60.0, 40.0]),
        (3, [0.0, 0.0, 5.0, 5.0]),
        (3, [50.0, 40.0, 64.0, 48.0]),
    ]
    assert all(a["bbox_mode"] == BoxMode.XYXY_ABS and a["iscrowd"] == 0 for a in first)
    assert "dropped 1 instances" in caplog.text and "EPIC_train_object_labels.csv:4" in caplog.text
    # Frames whose only rows are `[]` are negative frames.
    assert p01[1]["annotations"] == [] and p01[2]["annotations"] == []
    assert p01[3]["annotations"][0]["bbox"] == [2.0, 1.0, 6.0, 4.0]


def test_frame_list_is_the_annotated_frames(epic_root):
    dicts = load_epic_kitchens_55(epic_root, "train")
    d = by_image_id(dicts)["P01_01/0000000061"]
    names = [frame_file_name(d, i) for i in range(d["video_length"])]
    assert names == [image_path(epic_root, "train", "P01", "P01_01", n) for n in (1, 31, 61, 121)]
    assert all(os.path.isfile(n) for n in names)
    assert names[d["frame_id"]] == d["file_name"]
    # One small object per video, shared by its dicts (a tuple of names would grow each dict).
    assert isinstance(d["video_frames"], NumberedFrames)
    assert all(x["video_frames"] is d["video_frames"] for x in dicts if x["video_id"] == "P01_01")
    with pytest.raises(IndexError):
        frame_file_name(d, 4)


def test_video_with_two_image_sizes_is_split(epic_root, caplog):
    with caplog.at_level(logging.WARNING):
        dicts = load_epic_kitchens_55(epic_root, "train")
    p26 = {d["image_id"]: d for d in dicts if d["image_id"].startswith("P26_01/")}
    got = {i: (d["video_id"], d["frame_id"], d["video_length"], d["height"], d["width"]) for i, d in p26.items()}
    assert got == {
        "P26_01/0000000001": ("P26_01@64x48", 0, 2, 48, 64),
        "P26_01/0000000031": ("P26_01@32x24", 0, 1, 24, 32),
        "P26_01/0000000061": ("P26_01@64x48", 1, 2, 48, 64),
    }
    assert "P26_01 has images of 2 sizes" in caplog.text


def small_cfg():
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (24,), 200
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 24, 200
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.SUPPORT.NUM_TRAIN = 2
    cfg.INPUT.SUPPORT.NUM_TEST = 3
    return cfg


def test_mapper_reads_supports_of_the_same_video_and_size(epic_root):
    dicts = load_epic_kitchens_55(epic_root, "train")
    cfg = small_cfg()
    for is_train in (True, False):
        mapper = VideoDatasetMapper(cfg, is_train=is_train)
        for d in dicts:  # the mapper raises on a support of another size than its target
            out = mapper(d)
            frames = [frame_file_name(d, i) for i in range(d["video_length"])]
            assert len(out["supports"]) == (2 if is_train else 3)
            for s in out["supports"]:
                assert s["file_name"] in frames
                assert s["image"].shape == out["image"].shape
            if d["video_length"] > 1:
                assert d["file_name"] not in [s["file_name"] for s in out["supports"]]
            if is_train:
                assert len(out["instances"]) == len(d["annotations"])
    lone = by_image_id(dicts)["P26_01/0000000031"]  # the only frame of its size
    out = VideoDatasetMapper(cfg, is_train=False)(lone)
    assert [s["file_name"] for s in out["supports"]] == [lone["file_name"]] * 3


def test_test_splits_have_no_annotations(epic_root):
    s1 = load_epic_kitchens_55(epic_root, "test_s1", dataset_name="test_epic_s1")
    assert [(d["image_id"], d["frame_id"], d["video_length"]) for d in s1] == [
        ("P01_11/0000000001", 0, 3),
        ("P01_11/0000000031", 1, 3),
        ("P01_11/0000000061", 2, 3),
    ]
    assert all("annotations" not in d for d in s1)
    assert MetadataCatalog.get("test_epic_s1").thing_classes[3] == "tap"
    assert [frame_file_name(s1[0], i) for i in range(3)] == [
        image_path(epic_root, "test", "P01", "P01_11", n) for n in (1, 31, 61)
    ]
    s2 = load_epic_kitchens_55(epic_root, "test_s2")
    assert [d["image_id"] for d in s2] == ["P09_01/0000000001", "P09_01/0000000031"]
    assert all("annotations" not in d for d in s2)


def test_participants_select_train_rows(epic_root):
    dicts = load_epic_kitchens_55(epic_root, "train", participants=["P26"])
    assert {d["image_id"].split("/")[0] for d in dicts} == {"P26_01"}
    with pytest.raises(ValueError, match="train split only"):
        load_epic_kitchens_55(epic_root, "test_s1", participants=["P01"])
    with pytest.raises(ValueError, match="split must be"):
        load_epic_kitchens_55(epic_root, "val")


MALFORMED = [
    ('1,pan,P01,P01_01,1,"[(1, 2, 3)]"', r":3: bounding_boxes must be a list of \(top, left"),
    ('1,pan,P01,P01_01,1,"[(1, 2, 3, 4)"', r":3: bounding_boxes must be"),
    ("1,pan,P01,P01_01,1,\"[('a', 2, 3, 4)]\"", r":3: bounding_boxes must be"),
    ("1,pan,P01,P01_01,1,(1, 2, 3, 4)", r":3: expected 6 fields"),
    ("1,pan,P01,P01_01,x1,[]", r":3: frame must be an integer, got 'x1'"),
    ("1,pan,P01,P01_01,0,[]", r":3: frame 0 is not a frame number"),
    ("1,pan,P01,P01_01,[]", r":3: expected 6 fields"),
    ("9,pan,P01,P01_01,1,[]", r":3: noun_class 9 is not a noun_id"),
    ("one,pan,P01,P01_01,1,[]", r":3: noun_class must be an integer"),
    ("1,pan,P02,P01_01,1,[]", r":3: video P01_01 belongs to P01, not P02"),
]


@pytest.mark.parametrize("row, message", MALFORMED)
def test_malformed_row_names_file_and_line(tmp_path, row, message):
    root = epic_tree(str(tmp_path), labels_rows=[LABELS_ROWS[0], row])
    with pytest.raises(ValueError, match=r"EPIC_train_object_labels\.csv" + message):
        load_epic_kitchens_55(root, "train")


def test_malformed_header_and_classes(tmp_path):
    header = "noun_class,noun,participant_id,video_id,frame\n"
    root = epic_tree(str(tmp_path / "a"), labels_rows=["1,pan,P01,P01_01,1"], labels_header=header)
    with pytest.raises(ValueError, match=r"labels\.csv:1: missing columns \['bounding_boxes'\]"):
        load_epic_kitchens_55(root, "train")
    root = epic_tree(str(tmp_path / "b"), classes=CLASSES_CSV.replace("\n3,tap", "\nthree,tap"))
    with pytest.raises(ValueError, match=r"EPIC_noun_classes\.csv:5: noun_id must be an integer"):
        load_epic_kitchens_55(root, "train")
    root = epic_tree(str(tmp_path / "c"), classes=CLASSES_CSV.replace("\n3,tap", "\n2,tap"))
    with pytest.raises(ValueError, match=r"EPIC_noun_classes\.csv:5: noun_id 2 appears twice"):
        load_epic_kitchens_55(root, "train")


def test_missing_or_broken_images(epic_root):
    os.remove(image_path(epic_root, "train", "P01", "P01_01", 31))
    with pytest.raises(FileNotFoundError, match=r"labels\.csv:5: image .*0000000031\.jpg does not"):
        load_epic_kitchens_55(epic_root, "train")
    with open(image_path(epic_root, "train", "P01", "P01_01", 31), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(OSError, match=r"0000000031\.jpg: cannot read image"):
        load_epic_kitchens_55(epic_root, "train")
    with open(os.path.join(epic_root, "annotations", "EPIC_test_s2_object_video_list.csv"), "a") as f:
        f.write("P09_02,P09\n")
    with pytest.raises(FileNotFoundError, match=r"list\.csv:3: image folder .*P09_02 does not"):
        load_epic_kitchens_55(epic_root, "test_s2")


def test_numbered_frames_match_the_list_of_names():
    rng = random.Random(0)
    for _ in range(50):
        numbers = sorted(rng.sample(range(1, 400), rng.randint(1, 30)))
        numbers += [numbers[-1] + 30 * k for k in range(1, rng.randint(1, 5))]
        frames = NumberedFrames("/v/{:010d}.jpg", numbers)
        assert list(frames) == [f"/v/{n:010d}.jpg" for n in numbers]
        assert frames.numbers == numbers and len(frames) == len(numbers)
        assert frames[-1] == f"/v/{numbers[-1]:010d}.jpg"
        with pytest.raises(IndexError):
            frames[len(numbers)]
    with pytest.raises(ValueError, match="must increase"):
        NumberedFrames("{}", [1, 31, 31])


def test_numbered_frames_stay_small_however_long_the_video():
    # A 2-hour video sampled every 30th frame (as the test images are) is one run.
    frames = NumberedFrames("/x/P01_11/{:010d}.jpg", range(1, 432000, 30))
    assert len(frames) == 14400 and frames[14399] == "/x/P01_11/0000431971.jpg"
    assert len(pickle.dumps(frames)) < 300


@pytest.fixture(autouse=True)
def forget_fake_classes():
    """The fake data loaded under the registered names records its 4 classes in their metadata:
    forgotten after each test, as setup_cfg checks NUM_CLASSES against them."""
    yield
    for name in EPIC_KITCHENS_55_SPLITS:
        if name in MetadataCatalog.list():
            for key in ("thing_classes", "thing_dataset_id_to_contiguous_id"):
                MetadataCatalog.get(name).__dict__.pop(key, None)


def test_registered_names_read_datasets_root(epic_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", os.path.dirname(epic_root))
    train = DatasetCatalog.get("epic_kitchens_55_train")
    assert len(train) == 7
    assert MetadataCatalog.get("epic_kitchens_55_train").thing_classes[1] == "pan"
    assert MetadataCatalog.get("epic_kitchens_55_val").evaluator_type == "vid"
    val = DatasetCatalog.get("epic_kitchens_55_val")
    assert {d["image_id"][:3] for d in val} == {"P26"}
    assert {d["image_id"][:3] for d in DatasetCatalog.get("epic_kitchens_55_train_p01_p25")} == {"P01"}
    assert len(DatasetCatalog.get("epic_kitchens_55_test_s1")) == 3
    assert len(DatasetCatalog.get("epic_kitchens_55_test_s2")) == 2


@pytest.mark.parametrize("name", sorted(EPIC_KITCHENS_55_SPLITS))
def test_registered_name_without_data_says_what_and_how(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    message = str(e.value)
    assert name in message and os.path.join(str(tmp_path), "epic_kitchens") in message
    assert "epic-kitchens-55-annotations" in message and "datasets/README.md" in message
    os.makedirs(tmp_path / "epic_kitchens" / "annotations")
    with pytest.raises(FileNotFoundError, match="EPIC_noun_classes.csv does not exist"):
        DatasetCatalog.get(name)
    epic_tree(str(tmp_path / "epic_kitchens"))
    shutil.rmtree(tmp_path / "epic_kitchens" / "object_detection_images")
    with pytest.raises(FileNotFoundError, match=r"image folder .*object_detection_images/(train|test) does"):
        DatasetCatalog.get(name)


@pytest.mark.parametrize("model", ["single_frame", "selsa", "selsa_troi"])
def test_configs(model):
    cfg = setup_cfg(os.path.join(REPO, "configs", "EPICKitchens", f"{model}_R_101_DC5.yaml"))
    # EPIC_noun_classes.csv has 352 classes (noun_id 0..351).
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 352
    assert cfg.MODEL.RESNETS.DEPTH == 101
    assert cfg.DATASETS.TRAIN == ("epic_kitchens_55_train",)
    assert cfg.DATASETS.TEST == ("epic_kitchens_55_test_s1", "epic_kitchens_55_test_s2")
    assert all(n in DatasetCatalog.list() for n in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)
    assert cfg.INPUT.SUPPORT.NUM_TEST == (0 if model == "single_frame" else 14)
    assert cfg.MODEL.TEMPORAL_ROI_ALIGN.ENABLED == (model == "selsa_troi")
    assert (cfg.MODEL.ROI_BOX_HEAD.NAME == "SelsaBoxHead") == (model != "single_frame")
