"""COCO-style video JSON loading, and the compact frame lists the loaders share."""

import logging

import pytest
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

from temporal_roi_align.data import frame_file_name
from temporal_roi_align.data.datasets import compact_frame_list, load_coco_video_json

from helpers.dataset_files import coco_video_json


def test_load_coco_video_json(tmp_path, caplog):
    json_file = coco_video_json(tmp_path)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_video_json(json_file, "/img", dataset_name="test_coco_video_load")
    assert MetadataCatalog.get("test_coco_video_load").thing_classes == ["airplane", "dog"]
    by_id = {d["image_id"]: d for d in dicts}
    d = by_id[11]
    assert (d["video_id"], d["frame_id"], d["video_length"], d["file_name"]) == (
        7,
        1,
        3,
        "/img/val/a/000001.JPEG",
    )
    assert d["video_frames"] == "/img/val/a/{:06d}.JPEG"  # consecutive frames: a pattern
    assert [frame_file_name(d, i) for i in range(3)] == [f"/img/val/a/00000{i}.JPEG" for i in range(3)]
    dog, plane = d["annotations"]
    assert dog == {
        "bbox": [1.0, 2.0, 11.0, 7.0],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": 1,
        "iscrowd": 0,
        "track_id": 5,
    }
    assert plane["bbox"] == [25.0, 15.0, 30.0, 20.0] and plane["category_id"] == 0  # clipped
    assert "dropped 1 instances" in caplog.text and "image 11" in caplog.text  # the box outside
    assert by_id[20]["video_frames"] == ("/img/val/b/img_a.jpg",)
    det = by_id[30]
    assert (det["video_length"], det["frame_id"], det["video_id"]) == (1, 0, "image/30")
    assert det["annotations"][0]["track_id"] == 4  # no instance_id: the annotation id
    assert det["annotations"][0]["segmentation"] == [[0, 0, 4, 0, 4, 4]]  # invalid polygon dropped


def test_key_frames_only_but_all_frames_known(tmp_path):
    dicts = load_coco_video_json(coco_video_json(tmp_path), "/img", key_frame_field="is_vid_train_frame")
    assert [(d["image_id"], d["video_length"]) for d in dicts] == [(11, 3)]


def test_bad_json_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json: annotation file does not exist"):
        load_coco_video_json(str(tmp_path / "absent.json"), "/img")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_coco_video_json(str(broken), "/img")
    with pytest.raises(ValueError, match=r"vid\.json: missing list 'images'"):
        load_coco_video_json(coco_video_json(tmp_path, images=None), "/img")


def test_unknown_category_is_an_error(tmp_path):
    bad = {"id": 9, "image_id": 10, "category_id": 3, "instance_id": 1, "bbox": [0, 0, 1, 1]}
    json_file = coco_video_json(tmp_path, annotations=[bad])
    with pytest.raises(ValueError, match=r"vid\.json: annotation 9 has category_id 3, not one of \[1, 2\]"):
        load_coco_video_json(json_file, "/img")


def test_classes_conflicting_with_registered_metadata(tmp_path):
    MetadataCatalog.get("test_coco_video_conflict").thing_classes = ["cat"]
    with pytest.raises(ValueError, match="differ from the classes registered"):
        load_coco_video_json(coco_video_json(tmp_path), "/img", dataset_name="test_coco_video_conflict")


@pytest.mark.parametrize(
    "files, expected",
    [
        (["d/000000.JPEG", "d/000001.JPEG"], "d/{:06d}.JPEG"),
        ([f"d/{i}.jpg" for i in range(11)], "d/{:01d}.jpg"),  # unpadded
        (["{x}/00.png", "{x}/01.png"], "{{x}}/{:02d}.png"),
        (
            ["d/00000.jpg", "d/00005.jpg"],
            ("d/00000.jpg", "d/00005.jpg"),
        ),  # YouTube-VIS: every 5th frame
        (["d/000001.JPEG", "d/000002.JPEG"], ("d/000001.JPEG", "d/000002.JPEG")),  # not from 0
        (["a/0.jpg", "b/1.jpg"], ("a/0.jpg", "b/1.jpg")),
    ],
)
def test_compact_frame_list(files, expected):
    frames = compact_frame_list(files)
    assert frames == expected
    d = {"video_frames": frames, "video_length": len(files), "video_id": 0}
    assert [frame_file_name(d, i) for i in range(len(files))] == files
