"""Bad dataset files that used to load silently wrong or fail without naming the file: each is
now a ValueError/FileNotFoundError naming the file (and the line, the annotation or the image)."""

import json
import os

import pytest
from test_datasets_coco_video import coco_video_json
from test_datasets_epic_kitchens import epic_tree
from test_datasets_imagenet_vid import CAT, vid_xml, write_split, write_video
from test_datasets_ytvis import ytvis_tree

from temporal_roi_align.data.datasets import (
    load_coco_video_json,
    load_epic_kitchens_55,
    load_imagenet_vid,
    load_ytvis_json,
)
from temporal_roi_align.data.datasets.epic_kitchens import parse_bounding_boxes

VIDEO = "val/ILSVRC2015_val_00000000"


# ---- COCO-style video JSON ----


@pytest.mark.parametrize("image_id", [99, "11"])  # no such image; the string "11" is not the image 11
def test_coco_annotation_of_no_image(tmp_path, image_id):
    ann = {"id": 9, "image_id": image_id, "category_id": 1, "instance_id": 1, "bbox": [0, 0, 5, 5]}
    json_file = coco_video_json(tmp_path, annotations=[ann])
    with pytest.raises(
        ValueError, match=rf"vid\.json: annotation 9 has image_id {image_id!r}, which no image has"
    ) as e:
        load_coco_video_json(json_file, "/img")
    assert ("image 11 exists: the ids differ in type, str and int" in str(e.value)) == (image_id == "11")


def test_coco_duplicate_image_id(tmp_path):
    images = json.loads(open(coco_video_json(tmp_path)).read())["images"]
    images[2]["id"] = 11  # two images with id 11: their boxes would land on one frame
    with pytest.raises(
        ValueError, match=r"vid\.json: image id 11 appears twice \(val/a/000001\.JPEG, val/a/000002\.JPEG\)"
    ):
        load_coco_video_json(coco_video_json(tmp_path, images=images), "/img")


def test_coco_malformed_structure(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(ValueError, match=r"list\.json: expected a JSON object .*got a list"):
        load_coco_video_json(str(listed), "/img")
    with pytest.raises(ValueError, match=r"vid\.json: images\[1\] must be an object, got null"):
        load_coco_video_json(
            coco_video_json(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}, None]), "/img"
        )
    image = {"id": 1, "file_name": "a.jpg", "height": "20", "width": 30}
    with pytest.raises(ValueError, match=r"vid\.json: image 1: height must be a positive integer, got '20'"):
        load_coco_video_json(coco_video_json(tmp_path, images=[image]), "/img")
    with pytest.raises(ValueError, match=r"vid\.json: annotations\[0\] must be an object, got null"):
        load_coco_video_json(coco_video_json(tmp_path, annotations=[None]), "/img")


def test_coco_json_with_bom_is_read(tmp_path):
    json_file = coco_video_json(tmp_path)
    text = open(json_file, encoding="utf-8").read()
    with open(json_file, "w", encoding="utf-8-sig") as f:
        f.write(text)
    assert len(load_coco_video_json(json_file, "/img")) == 5


@pytest.mark.parametrize("bbox", [[float("nan"), 0, 5, 5], [0, 0, float("inf"), 5], [0, 0, 5, -float("inf")]])
def test_coco_non_finite_box(tmp_path, bbox):
    ann = {"id": 9, "image_id": 11, "category_id": 1, "instance_id": 1, "bbox": bbox}
    json_file = coco_video_json(tmp_path, annotations=[ann])  # json.dumps writes NaN/Infinity
    with pytest.raises(ValueError, match=r"vid\.json: annotation 9: bbox must be 4 finite numbers"):
        load_coco_video_json(json_file, "/img")


# ---- YouTube-VIS ----


@pytest.mark.parametrize("video_id", [7, None, "1"])
def test_ytvis_annotation_of_no_video(tmp_path, video_id):
    json_file, _ = ytvis_tree(tmp_path)
    data = json.loads(open(json_file).read())
    data["annotations"][0]["video_id"] = video_id
    if video_id is None:
        del data["annotations"][0]["video_id"]
    open(json_file, "w").write(json.dumps(data))
    with pytest.raises(ValueError, match=rf"train\.json: annotation 100 has video_id {video_id!r}, which no video has"):
        load_ytvis_json(json_file, str(tmp_path / "JPEGImages"))


def test_ytvis_non_finite_box(tmp_path):
    json_file, _ = ytvis_tree(tmp_path)
    data = json.loads(open(json_file).read())
    data["annotations"][1]["bboxes"][1] = [0, 0, float("nan"), 4]
    open(json_file, "w").write(json.dumps(data))
    with pytest.raises(ValueError, match=r"train\.json \(annotation 101, frame 1\): bbox must be 4 finite numbers"):
        load_ytvis_json(json_file, str(tmp_path / "JPEGImages"))


def test_ytvis_malformed_structure(tmp_path):
    json_file, _ = ytvis_tree(tmp_path, videos=[None])
    with pytest.raises(ValueError, match=r"train\.json: videos\[0\] must be an object, got null"):
        load_ytvis_json(json_file, str(tmp_path / "JPEGImages"))


# ---- ImageNet VID split files and XML ----


@pytest.fixture
def val_root(tmp_path):
    root = str(tmp_path / "ILSVRC2015")
    write_video(root, VIDEO, 4)
    return root


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_vid_xml_non_finite_coordinate(val_root, value):
    xml = os.path.join(val_root, "Annotations", "VID", VIDEO, "000001.xml")
    with open(xml, "w") as f:
        f.write(vid_xml(40, 32, [(0, CAT, (value, 3, 20, 30))]))
    split = write_split(val_root, "VID_val_videos.txt", [f"{VIDEO} 1 0 4"])
    with pytest.raises(ValueError, match=rf"000001\.xml: <bndbox/xmin> is not a finite number: '{value}'"):
        load_imagenet_vid(val_root, split, all_frames=True)


@pytest.mark.parametrize("all_frames", [True, False])
@pytest.mark.parametrize("length", [3, 5])
def test_vid_split_length_differs_from_disk(val_root, length, all_frames):
    # Shorter: frames left out of the evaluation; longer: a support read fails mid-training.
    split = write_split(val_root, "VID_val_videos.txt", [f"{VIDEO} 1 0 {length}"])
    with pytest.raises(
        ValueError, match=rf"VID_val_videos\.txt:1: video length {length}, but .*{VIDEO} holds 4 frames"
    ):
        load_imagenet_vid(val_root, split, all_frames=all_frames)


def test_vid_frames_on_disk_with_a_gap(val_root):
    os.remove(os.path.join(val_root, "Data", "VID", VIDEO, "000002.JPEG"))
    split = write_split(val_root, "VID_val_videos.txt", [f"{VIDEO} 1 0 3"])
    with pytest.raises(ValueError, match=r"VID_val_videos\.txt:1: .*000002\.JPEG is missing"):
        load_imagenet_vid(val_root, split, all_frames=True)


def test_vid_split_file_with_bom_is_read(val_root):
    path = os.path.join(val_root, "ImageSets", "VID_val_videos.txt")
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8-sig") as f:  # as Windows' Notepad saves it
        f.write(f"{VIDEO} 1 0 4\n")
    assert len(load_imagenet_vid(val_root, "ImageSets/VID_val_videos.txt", all_frames=True)) == 4


def test_vid_split_file_not_utf8(val_root):
    path = os.path.join(val_root, "ImageSets", "VID_val_videos.txt")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(f"{VIDEO} 1 0 4\n".encode() + b"val/caf\xe9 2 0 4\n")
    with pytest.raises(ValueError, match=r"VID_val_videos\.txt:2: not UTF-8 text \(byte 0xe9 at column 8\)"):
        load_imagenet_vid(val_root, "ImageSets/VID_val_videos.txt", all_frames=True)


# ---- EPIC-KITCHENS ----


def test_epic_infinite_box():
    with pytest.raises(ValueError, match="labels.csv:3: bounding_boxes must be a list of"):
        parse_bounding_boxes("[(1e999, 2, 3, 4)]", "labels.csv:3")  # literal_eval reads inf


def test_epic_csv_with_bom_or_not_utf8(tmp_path):
    root = epic_tree(str(tmp_path / "bom"))
    labels = os.path.join(root, "annotations", "EPIC_train_object_labels.csv")
    with open(labels, "rb") as f:
        text = f.read()
    with open(labels, "wb") as f:
        f.write(b"\xef\xbb\xbf" + text)
    assert load_epic_kitchens_55(root, "train")
    with open(labels, "wb") as f:
        f.write(text.replace(b"dustpan", b"d\xfcstpan"))
    with pytest.raises(ValueError, match=r"EPIC_train_object_labels\.csv: not UTF-8 text"):
        load_epic_kitchens_55(root, "train")
