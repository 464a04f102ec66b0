"""VISDatasetMapper: MaskTrack R-CNN's training groups (target, reference frame, supports)."""

import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from PIL import Image

from temporal_roi_align.config import add_video_config
from temporal_roi_align.data import VideoDatasetMapper, VISDatasetMapper, index_frame_annotations
from temporal_roi_align.data.datasets import frame_record
from temporal_roi_align.engine import VideoTrainer

H, W = 16, 24


def video_dicts(folder, video_id, length, annotated=True):
    """``length`` frames whose pixels encode the frame index (left half: index, right half: 0,
    so a flip is visible), one object per frame whose box moves with the frame index."""
    os.makedirs(folder, exist_ok=True)
    files = [os.path.join(folder, f"{t:05d}.png") for t in range(length)]
    dicts = []
    for t, name in enumerate(files):
        pixels = np.zeros((H, W, 3), np.uint8)
        pixels[:, : W // 2] = t % 256
        Image.fromarray(pixels).save(name)
        mask = np.zeros((H, W), np.uint8)
        x0 = t % 12
        mask[4:10, x0 : x0 + 6] = 1
        rle = mask_util.encode(np.asfortranarray(mask))
        annotations = [
            {
                "bbox": [x0, 4, x0 + 6, 10],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": t % 2,
                "iscrowd": 0,
                "track_id": 1000 + video_id,
                "segmentation": rle,
            }
        ]
        dicts.append(
            frame_record(
                name,
                f"{video_id}/{t}",
                H,
                W,
                video_id=video_id,
                frame_id=t,
                video_length=length,
                video_frames=tuple(files),
                annotations=annotations if annotated else None,
            )
        )
    return dicts


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A registered dataset: video 7 of 260 frames and video 8 of one frame."""
    root = tmp_path_factory.mktemp("vis_mapper")
    dicts = video_dicts(str(root / "v7"), 7, 260) + video_dicts(str(root / "v8"), 8, 1)
    name = "vis_mapper_test_long_video"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
    return name, dicts


def mapper_cfg(dataset, *opts):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_list(
        [
            "DATASETS.TRAIN",
            (dataset,),
            "MODEL.MASK_ON",
            True,
            "INPUT.MASK_FORMAT",
            "bitmask",
            "INPUT.MIN_SIZE_TRAIN",
            (H,),
            "INPUT.MAX_SIZE_TRAIN",
            1000,
            "INPUT.SUPPORT.NUM_TRAIN",
            0,
            "INPUT.FORMAT",
            "RGB",
            *opts,
        ]
    )
    return cfg


def frame_index_of(image):
    """The frame index a mapped image shows, and whether it is flipped."""
    left, right = int(image[0, 0, 0]), int(image[0, 0, -1])
    return (left, False) if right == 0 else (right, True)


def test_reference_within_100_frames_never_the_target_and_from_the_same_video(long_video):
    name, dicts = long_video
    mapper = VISDatasetMapper(mapper_cfg(name, "INPUT.RANDOM_FLIP", "none"), is_train=True)
    np.random.seed(0)
    offsets = []
    for target in (0, 130, 259):
        for _ in range(40):
            out = mapper(dicts[target])
            reference = out["reference"]
            assert reference["video_id"] == 7 and reference["frame_id"] != target
            assert frame_index_of(reference["image"]) == (reference["frame_id"] % 256, False)
            offsets.append(reference["frame_id"] - target)
    assert min(offsets) >= -100 and max(offsets) <= 100
    assert min(offsets) < -80 and max(offsets) > 80, "drawn over the whole window"
    # A video of one frame: the target is its own reference.
    assert mapper(dicts[260])["reference"]["frame_id"] == 0


def test_reference_frame_range_from_the_config(long_video):
    name, dicts = long_video
    mapper = VISDatasetMapper(mapper_cfg(name, "INPUT.REFERENCE_FRAME_RANGE", 3), is_train=True)
    np.random.seed(1)
    assert {mapper(dicts[50])["reference"]["frame_id"] for _ in range(40)} == {47, 48, 49, 51, 52, 53}


def test_reference_has_the_targets_transforms_and_its_own_instances(long_video):
    name, dicts = long_video
    mapper = VISDatasetMapper(
        mapper_cfg(
            name, "INPUT.MIN_SIZE_TRAIN", (2 * H,), "INPUT.SUPPORT.NUM_TRAIN", 2, "INPUT.SUPPORT.TRAIN_FRAME_RANGE", 5
        ),
        is_train=True,
    )
    np.random.seed(2)
    flips = set()
    for _ in range(16):
        out = mapper(dicts[20])
        target, reference = out["instances"], out["reference"]
        _, flipped = frame_index_of(out["image"])
        flips.add(flipped)
        assert out["image"].shape == reference["image"].shape == (3, 2 * H, 2 * W)
        assert frame_index_of(reference["image"]) == (reference["frame_id"], flipped)
        for support in out["supports"]:
            assert frame_index_of(support["image"]) == (support["frame_id"], flipped)
            assert abs(support["frame_id"] - 20) <= 5
        # The target: boxes, classes, masks and track ids, resized (x2) and flipped alike.
        x0 = 20 % 12
        expected = [2 * (W - x0 - 6), 8, 2 * (W - x0), 20] if flipped else [2 * x0, 8, 2 * (x0 + 6), 20]
        assert target.gt_boxes.tensor.tolist() == [expected]
        assert target.gt_classes.tolist() == [0] and target.gt_track_ids.tolist() == [1007]
        assert target.gt_masks.tensor.shape == (1, 2 * H, 2 * W) and target.gt_masks.tensor.sum() == 4 * 36
        # The reference: its own frame's boxes, classes and track ids; no masks.
        r = reference["frame_id"]
        x0 = r % 12
        expected = [2 * (W - x0 - 6), 8, 2 * (W - x0), 20] if flipped else [2 * x0, 8, 2 * (x0 + 6), 20]
        assert reference["instances"].gt_boxes.tensor.tolist() == [expected]
        assert reference["instances"].gt_classes.tolist() == [r % 2]
        assert reference["instances"].gt_track_ids.tolist() == [1007]
        assert not reference["instances"].has("gt_masks")
    assert flips == {True, False}


def test_test_groups_have_no_reference(long_video):
    name, dicts = long_video
    cfg = mapper_cfg(name, "INPUT.SUPPORT.NUM_TEST", 2)
    mapper = VISDatasetMapper(cfg, is_train=False)
    out = mapper(dicts[5])
    assert "reference" not in out and "instances" not in out and len(out["supports"]) == 2
    assert mapper.frame_index == {}
    assert out.keys() == VideoDatasetMapper(cfg, is_train=False)(dicts[5]).keys()


def test_the_index_holds_every_frame_of_the_training_datasets(long_video, tmp_path):
    name, dicts = long_video
    index = index_frame_annotations([name])
    assert len(index) == 261 and index[(7, 3)] == [
        {"bbox": [3, 4, 9, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 0, "track_id": 1007}
    ]
    # Frames without annotations are indexed too (they can be references).
    unlabeled = "vis_mapper_test_unlabeled"
    other = video_dicts(str(tmp_path / "v9"), 9, 2, annotated=False)
    DatasetCatalog.register(unlabeled, lambda: other)
    assert index_frame_annotations([unlabeled]) == {(9, 0): [], (9, 1): []}
    # Two datasets sharing a video id cannot be indexed together.
    with pytest.raises(ValueError, match=f"dataset '{name}': video 7 frame 0 .* appears twice"):
        index_frame_annotations([name, name])


def test_a_target_outside_the_index_is_named(long_video, tmp_path):
    name, _ = long_video
    mapper = VISDatasetMapper(mapper_cfg(name), is_train=True)
    stray = video_dicts(str(tmp_path / "v99"), 99, 2)
    with pytest.raises(KeyError, match=r"v99/00001.png: video 99 frame 1 is not among the indexed training frames"):
        mapper(stray[1])


def test_the_trainer_picks_the_mapper_of_the_config(long_video, tmp_path):
    name, _ = long_video
    cfg = mapper_cfg(
        name, "INPUT.TRAIN_MAPPER", "VISDatasetMapper", "SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0
    )
    batch = next(iter(VideoTrainer.build_train_loader(cfg)))
    assert len(batch) == 2 and all("reference" in x for x in batch)
    cfg.INPUT.TRAIN_MAPPER = "VideoDatasetMapper"
    batch = next(iter(VideoTrainer.build_train_loader(cfg)))
    assert all("reference" not in x for x in batch)
    cfg.INPUT.TRAIN_MAPPER = "MaskTrackMapper"
    with pytest.raises(ValueError, match="INPUT.TRAIN_MAPPER must be one of .*'MaskTrackMapper'"):
        VideoTrainer.build_train_loader(cfg)
    assert torch.is_tensor(batch[0]["image"])
