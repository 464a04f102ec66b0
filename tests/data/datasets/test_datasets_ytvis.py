"""YouTube-VIS JSON loading, down to instances with masks from the mapper."""

import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from temporal_roi_align.config import add_video_config
from temporal_roi_align.data import VideoDatasetMapper
from temporal_roi_align.data.datasets import load_ytvis_json

from helpers.dataset_files import YTVIS_H, YTVIS_W, ytvis_tree

H, W = YTVIS_H, YTVIS_W


def test_load_ytvis_per_frame(tmp_path):
    json_file, image_root = ytvis_tree(tmp_path)
    dicts = load_ytvis_json(json_file, image_root, dataset_name="test_ytvis_load")
    assert MetadataCatalog.get("test_ytvis_load").thing_classes == ["person", "giant_panda"]
    assert [(d["video_id"], d["frame_id"], d["video_length"]) for d in dicts] == [
        (1, 0, 3),
        (1, 1, 3),
        (1, 2, 3),
        (2, 0, 1),
    ]
    assert len({d["image_id"] for d in dicts}) == 4
    assert dicts[1]["file_name"] == os.path.join(image_root, "v1/00005.jpg")
    assert dicts[0]["video_frames"] == tuple(os.path.join(image_root, f"v1/{i:05d}.jpg") for i in (0, 5, 10))
    f0, f1, f2 = (d["annotations"] for d in dicts[:3])
    assert [(a["track_id"], a["category_id"]) for a in f0] == [(100, 1), (101, 0)]
    assert f0[0]["bbox"] == [6.0, 4.0, 20.0, 12.0]
    assert isinstance(f0[0]["segmentation"]["counts"], bytes)  # uncompressed RLE converted
    assert (f0[0]["area"], f0[1]["area"], f2[0]["area"]) == (112, 20, 112)  # the JSON's areas
    assert [a["track_id"] for a in f1] == [101]  # the panda is absent (null) in frame 1
    assert [a["track_id"] for a in f2] == [100]  # the person's box lies outside frame 2
    assert dicts[3]["annotations"] == []


def test_mapper_gives_masks_and_track_ids(tmp_path):
    json_file, image_root = ytvis_tree(tmp_path)
    dicts = load_ytvis_json(json_file, image_root)
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (H,), "none"
    out = VideoDatasetMapper(cfg, is_train=True)(dicts[0])
    inst = out["instances"]
    assert inst.gt_track_ids.tolist() == [100, 101]
    assert inst.gt_masks.tensor.shape == (2, H, W)
    assert inst.gt_masks.tensor[0].sum().item() == 8 * 14
    assert sorted(s["frame_id"] for s in out["supports"]) == [1, 2]
    one_frame = VideoDatasetMapper(cfg, is_train=True)(dicts[3])  # a 1-frame video: copies of itself
    assert [s["file_name"] for s in one_frame["supports"]] == [dicts[3]["file_name"]] * 2


def test_unlabeled_split_has_no_annotations(tmp_path):
    json_file, image_root = ytvis_tree(tmp_path, with_annotations=False)
    assert all("annotations" not in d for d in load_ytvis_json(json_file, image_root))


def test_bad_ytvis_files(tmp_path):
    json_file, image_root = ytvis_tree(tmp_path)
    data = json.loads(open(json_file).read())
    for key in ("segmentations", "bboxes", "areas"):
        changed = json.loads(json.dumps(data))
        changed["annotations"][0][key].pop()
        open(json_file, "w").write(json.dumps(changed))
        with pytest.raises(ValueError, match=rf"train\.json: annotation 100 must have 3 '{key}'"):
            load_ytvis_json(json_file, image_root)
    wrong_size = json.loads(json.dumps(data))
    wrong_size["annotations"][0]["segmentations"][0]["size"] = [H, W + 1]
    open(json_file, "w").write(json.dumps(wrong_size))
    with pytest.raises(ValueError, match=r"annotation 100, frame 0\): mask size \[24, 33\] differs"):
        load_ytvis_json(json_file, image_root)
    data["annotations"] = [dict(data["annotations"][1], category_id=40)]
    open(json_file, "w").write(json.dumps(data))
    with pytest.raises(ValueError, match=r"train\.json: annotation 101 has category_id 40"):
        load_ytvis_json(json_file, image_root)
    open(json_file, "w").write("{")
    with pytest.raises(ValueError, match=r"train\.json: not valid JSON"):
        load_ytvis_json(json_file, image_root)
