"""Bad dataset files that used to load silently wrong or fail without naming the file: each is
now a ValueError/FileNotFoundError naming the file (and the line, the annotation or the image)."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from temporal_roi_align.data.datasets import (
    load_coco_video_json,
    load_epic_kitchens_55,
    load_imagenet_vid,
    load_ytvis_json,
)
from temporal_roi_align.data.datasets.epic_kitchens import parse_bounding_boxes

from helpers.dataset_files import CAT, coco_video_json, epic_tree, vid_xml, write_split, write_video, ytvis_tree

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
    # The tools end with the message (DatasetError), not a traceback.
    from temporal_roi_align.engine import errors_as_messages

    with pytest.raises(SystemExit, match=r"^DatasetError: .*train\.json: videos\[0\] must be an object, got null"):
        with errors_as_messages():
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


# ---- Issue 22: faults that loaded silently wrong or lost data ----


def _edited(json_file, edit):
    data = json.loads(open(json_file).read())
    edit(data)
    with open(json_file, "w") as f:
        json.dump(data, f)
    return json_file


def _ytvis(tmp_path, edit):
    json_file, image_root = ytvis_tree(tmp_path)
    return _edited(json_file, edit), image_root


def _empty_rle_counts(height, width):
    return mask_util.encode(np.zeros((height, width), np.uint8, order="F"))["counts"].decode()


def _first_rle(data):
    return data["annotations"][0]["segmentations"][2]  # compressed RLE of frame 2


@pytest.mark.parametrize(
    "edit, match",
    [
        # cut short: pycocotools would decode memory left uninitialised past its end
        (
            lambda d: _first_rle(d).update(counts=_first_rle(d)["counts"][:-2]),
            r"cover \d+ pixels, not the mask's 24x32",
        ),
        (lambda d: _first_rle(d).update(counts="~~~"), "are not a valid RLE string"),
        # an empty mask encoded for 25x32, labelled 24x32
        (
            lambda d: _first_rle(d).update(counts=_empty_rle_counts(25, 32)),
            r"cover 800 pixels, not the mask's 24x32 = 768",
        ),
        (lambda d: d["annotations"][0]["segmentations"][0].update(counts=[10, 5, 400]), "cover 415 pixels"),
    ],
)
def test_ytvis_corrupt_rle(tmp_path, edit, match):
    json_file, image_root = _ytvis(tmp_path, edit)
    with pytest.raises(
        ValueError, match=rf"train\.json \(annotation 100, frame [02]\): invalid segmentation: .*{match}"
    ):
        load_ytvis_json(json_file, image_root)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["annotations"][1]["bboxes"].__setitem__(1, [float("nan")] * 4), r"frame 1\): bbox must be 4"),
        (lambda d: d["annotations"][0]["bboxes"].__setitem__(1, ["a", 1, 2, 3]), r"frame 1\): bbox must be 4"),
        (lambda d: d["annotations"][0].update(iscrowd=2), "annotation 100: iscrowd must be 0 or 1, got 2"),
        (lambda d: d["annotations"][0].update(iscrowd="0"), "annotation 100: iscrowd must be 0 or 1, got '0'"),
        (
            lambda d: d["categories"].append({"id": 1, "name": "ghost"}),
            "category id 1 appears twice \\('person', 'ghost'\\)",
        ),
        (lambda d: d["videos"][0].update(length=4), "video 1: length 4, but 3 file_names"),
        (lambda d: d["annotations"][0]["areas"].__setitem__(0, float("nan")), "frame 0: area must be null or a"),
        (lambda d: d["annotations"][0]["areas"].__setitem__(2, -1), "frame 2: area must be null or a finite"),
        (lambda d: d["videos"].append(dict(d["videos"][0])), r"video id 1 appears twice \(videos\[0\], videos\[2\]\)"),
        (lambda d: d["annotations"][1].update(id=100), "annotation id 100 appears twice"),
    ],
)
def test_ytvis_faults_name_the_file_and_the_reason(tmp_path, edit, match):
    json_file, image_root = _ytvis(tmp_path, edit)
    with pytest.raises(ValueError, match=match) as e:
        load_ytvis_json(json_file, image_root)
    assert json_file in str(e.value)


def test_ytvis_null_box_where_the_mask_exists_is_taken_from_the_mask(tmp_path, caplog):
    json_file, image_root = ytvis_tree(tmp_path)
    expected = load_ytvis_json(json_file, image_root)
    _edited(json_file, lambda d: d["annotations"][0]["bboxes"].__setitem__(2, None))
    with caplog.at_level("WARNING"):
        dicts = load_ytvis_json(json_file, image_root)
    assert dicts == expected  # the box of the mask is the JSON's box
    assert "took 1 boxes from the mask, where the 'bboxes' entry is null" in caplog.text
    assert "annotation 100, frame 2" in caplog.text


def test_ytvis_empty_annotation_list_is_a_split_without_labels(tmp_path, caplog):
    json_file, image_root = ytvis_tree(tmp_path, annotations=[])
    with caplog.at_level("WARNING"):
        dicts = load_ytvis_json(json_file, image_root)
    assert all("annotations" not in d and "video_tracks" not in d for d in dicts)
    assert "'annotations' is an empty list: read as a split without labels" in caplog.text


def test_ytvis_video_tracks_keep_instances_without_a_mask(tmp_path):
    def edit(d):
        d["annotations"].append(
            {
                "id": 102,
                "video_id": 1,
                "category_id": 1,
                "areas": None,
                "bboxes": [None] * 3,
                "segmentations": [None] * 3,
            }
        )

    dicts = load_ytvis_json(*_ytvis(tmp_path, edit))
    tracks = dicts[0]["video_tracks"]
    assert [(t["track_id"], t["category_id"], t["iscrowd"]) for t in tracks] == [(100, 1, 0), (101, 0, 0), (102, 0, 0)]
    assert tracks[0]["areas"] == [112, None, 112] and tracks[2]["areas"] is None
    assert all(d["video_tracks"] is tracks for d in dicts if d["video_id"] == 1)
    assert all(102 not in [a["track_id"] for a in d["annotations"]] for d in dicts)


def test_coco_frame_ids_and_video_ids(tmp_path, caplog):
    images = json.loads(open(coco_video_json(tmp_path)).read())["images"]
    images[2]["frame_id"] = 1  # frames 1 and 1: the order would be the listing order
    with pytest.raises(ValueError, match=r"images 11 \(val/a/000001\.JPEG\) and 12 .* are both frame 1 of video 7"):
        load_coco_video_json(coco_video_json(tmp_path, images=images), "/img")
    del images[2]["frame_id"]
    with pytest.raises(ValueError, match=r"image 12: frame_id must be an integer \(its place in video 7\), got None"):
        load_coco_video_json(coco_video_json(tmp_path, images=images), "/img")
    images[2]["frame_id"] = 2
    del images[3]["video_id"]  # among images of videos: a video of its own, counted and logged
    with caplog.at_level("WARNING"):
        dicts = load_coco_video_json(coco_video_json(tmp_path, images=images), "/img")
    assert {d["image_id"]: d["video_length"] for d in dicts} == {10: 3, 11: 3, 12: 3, 20: 1, 30: 1}
    assert "loaded 2 images without video_id, among images of videos, as 1-frame videos" in caplog.text
    assert "image 20 (val/b/img_a.jpg)" in caplog.text
    caplog.clear()
    stills = [{k: v for k, v in img.items() if k not in ("video_id", "frame_id")} for img in images]
    with caplog.at_level("WARNING"):
        assert len(load_coco_video_json(coco_video_json(tmp_path, images=stills, annotations=[]), "/img")) == 5
    assert "without video_id" not in caplog.text  # a file of still images


@pytest.mark.parametrize("iscrowd, match", [(2, "got 2"), (None, "got None"), (0.5, "got 0.5")])
def test_coco_iscrowd_must_be_0_or_1(tmp_path, iscrowd, match):
    annotations = json.loads(open(coco_video_json(tmp_path)).read())["annotations"]
    annotations[1]["iscrowd"] = iscrowd
    with pytest.raises(ValueError, match=rf"vid\.json: annotation 2: iscrowd must be 0 or 1, {match}"):
        load_coco_video_json(coco_video_json(tmp_path, annotations=annotations), "/img")


def test_coco_duplicate_category_id(tmp_path):
    categories = [{"id": 2, "name": "dog"}, {"id": 1, "name": "airplane"}, {"id": 2, "name": "cat"}]
    with pytest.raises(ValueError, match=r"vid\.json: category id 2 appears twice \('dog', 'cat'\)"):
        load_coco_video_json(coco_video_json(tmp_path, categories=categories), "/img")


def test_vid_object_without_trackid(val_root):
    xml = os.path.join(val_root, "Annotations", "VID", VIDEO, "000001.xml")
    with open(xml, "w") as f:
        f.write(vid_xml(40, 32, [(None, CAT, (1, 1, 9, 9))], track=False))
    split = write_split(val_root, "VID_val_videos.txt", [f"{VIDEO} 1 0 4"])
    with pytest.raises(ValueError, match=rf"{xml}: object 0 \({CAT}\) has no <trackid>"):
        load_imagenet_vid(val_root, split, all_frames=True)


def test_vid_repeated_split_lines_are_skipped_and_counted(val_root, caplog):
    split = write_split(val_root, "train.txt", [f"{VIDEO} 1 0 4", f"{VIDEO} 2 1 4", f"{VIDEO} 3 0 4"])
    with caplog.at_level("WARNING"):
        dicts = load_imagenet_vid(val_root, split)
    assert [d["frame_id"] for d in dicts] == [0, 1]
    assert "skipped 1 lines that repeat an earlier line's frame" in caplog.text
    assert f"frame 0 of {VIDEO}, line 1 in {os.path.join(val_root, split)}:3" in caplog.text


def test_epic_repeated_rows_are_skipped_and_counted(tmp_path, caplog):
    from helpers.dataset_files import LABELS_ROWS

    root = epic_tree(str(tmp_path / "epic"), labels_rows=LABELS_ROWS + [LABELS_ROWS[0], "2,dustpan,P01,P01_01,61,[]"])
    expected = load_epic_kitchens_55(epic_tree(str(tmp_path / "clean")), "train")
    with caplog.at_level("WARNING"):
        dicts = load_epic_kitchens_55(root, "train")
    assert [d["annotations"] for d in dicts] == [d["annotations"] for d in expected]  # the pan box once
    assert "skipped 1 rows that repeat the boxes of an earlier row" in caplog.text
    assert "EPIC_train_object_labels.csv:10" in caplog.text and "the boxes of" in caplog.text
