"""tools/check_dataset.py: every frame on disk, box, class and video length of a registered
dataset checked before a long run, with counts, examples and an exit code."""

import os

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from helpers import load_tool

check_dataset = load_tool("check_dataset")


def test_clean_dataset_is_ok(toy_copy, capsys):
    assert check_dataset.main(["toy_vid_val", "toy_vid_train"]) == 0
    out = capsys.readouterr().out
    assert "toy_vid_val: 16 dataset dicts, 2 videos, 16 frame files" in out and out.count(": OK") == 2


def test_broken_frames_are_counted_with_examples(toy_copy, capsys):
    videos = sorted(os.listdir(toy_copy / "Data" / "VID" / "val"))
    first, second = (toy_copy / "Data" / "VID" / "val" / v for v in videos)
    data = (first / "000001.JPEG").read_bytes()
    (first / "000001.JPEG").write_bytes(data[: len(data) * 3 // 5])  # cut short: the header still reads
    (first / "000002.JPEG").write_bytes(b"not an image")
    Image.new("RGB", (20, 10)).save(second / "000003.JPEG", "JPEG")  # another size than its XML says
    assert check_dataset.main(["toy_vid_val", "--examples", "1"]) == 1
    out = capsys.readouterr().out
    assert "toy_vid_val: 16 dataset dicts, 2 videos, 16 frame files, " in out and "3 problems" in out
    assert (
        f"truncated image (no end marker): 1\n      {first / '000001.JPEG'} (frame 1 of video VID/val/{videos[0]})"
        in out
    )
    assert f"unreadable image: 1\n      {first / '000002.JPEG'}: cannot read image" in out
    assert (
        f"image size differs from its dataset dict: 1\n      {second / '000003.JPEG'}: 20x10, the dict says 80x64"
        in out
    )
    # --full decodes: the file cut short is unreadable too.
    assert check_dataset.main(["toy_vid_val", "--full"]) == 1
    assert "unreadable image: 2" in capsys.readouterr().out


def test_a_dataset_that_does_not_load(toy_copy, capsys):
    split = toy_copy / "ImageSets" / "VID_val_videos.txt"
    split.write_text(split.read_text().replace(" 8\n", " 9\n", 1))
    assert check_dataset.main(["toy_vid_val"]) == 1
    out = capsys.readouterr().out
    assert "dataset does not load: 1" in out and "VID_val_videos.txt:1: video length 9, but" in out


def test_boxes_classes_and_video_length_of_a_custom_dataset(tmp_path, capsys, new_dataset_name):
    for i in range(3):
        Image.new("RGB", (40, 30)).save(tmp_path / f"{i:03d}.jpg")
    pattern = str(tmp_path / "{:03d}.jpg")

    def frame(i, annotations):
        return {
            "file_name": pattern.format(i),
            "image_id": i,
            "height": 30,
            "width": 40,
            "video_id": "v",
            "frame_id": i,
            "video_length": 2,
            "video_frames": pattern,
            "annotations": annotations,
        }

    def box(b, c=0, mode=BoxMode.XYXY_ABS):
        return {"bbox": b, "bbox_mode": mode, "category_id": c}

    dicts = [
        frame(0, [box([1, 1, 5, 5]), box([float("nan"), 1, 5, 5]), box([50, 1, 60, 5])]),
        frame(1, [box([0, 0, 10, 10], c=2), box([0, 0, 10, 10], c=-1), box([1, 1, 4, 4], mode=BoxMode.XYWH_ABS)]),
    ]
    # A video listed by file names (COCO-style JSON), one of them missing: a support-only frame.
    listed = (pattern.format(0), str(tmp_path / "gone.jpg"))
    dicts.append(dict(frame(0, []), image_id=9, video_id="w", video_frames=listed))
    name = new_dataset_name("check_dataset")
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).thing_classes = ["a", "b"]
    assert check_dataset.main([name]) == 1
    out = capsys.readouterr().out
    assert "3 dataset dicts, 2 videos, 3 frame files, 6 boxes: 6 problems" in out
    assert f"missing image: 1\n      {tmp_path / 'gone.jpg'} (frame 1 of video w)" in out
    assert "box not finite: 1" in out and "box without area inside the image: 1" in out
    assert "class id out of range: 2" in out and "category_id 2, 2 thing_classes" in out
    assert (
        f"more frames on disk than video_length: 1\n      video v: video_length 2, but {tmp_path / '002.jpg'} exists"
        in out
    )


def test_unknown_name():
    assert check_dataset.main(["no_such_dataset"]) == 2


def test_full_checks_every_mask(tmp_path, capsys, new_dataset_name):
    Image.new("RGB", (40, 30)).save(tmp_path / "000.jpg")
    good = mask_util.encode(np.ones((30, 40), np.uint8, order="F"))
    other_size = mask_util.encode(np.ones((31, 40), np.uint8, order="F"))
    masks = [good, dict(other_size, size=[30, 40]), dict(good, counts=good["counts"][:-1]), [[1, 1, 9, 1, 9, 9]]]
    dicts = [
        {
            "file_name": str(tmp_path / "000.jpg"),
            "image_id": 0,
            "height": 30,
            "width": 40,
            "annotations": [
                {"bbox": [1, 1, 9, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "segmentation": m}
                for m in masks
            ],
        }
    ]
    name = new_dataset_name("check_dataset")
    DatasetCatalog.register(name, lambda: dicts)
    assert check_dataset.main([name]) == 0  # without --full, masks are not read
    assert check_dataset.main([name, "--full"]) == 1
    out = capsys.readouterr().out
    assert "mask of another size or corrupt: 2" in out
    assert "000.jpg (annotation 1): invalid segmentation: its RLE counts cover 1240 pixels, not the mask's 30x40" in out
    assert "000.jpg (annotation 2): invalid segmentation" in out
