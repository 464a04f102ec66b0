"""DATALOADER.SKIP_BAD_FRAMES: a training frame group with an unreadable target or support frame
is skipped, counted and logged, and the loader draws another one; without it (and in
evaluation) the error names the file."""

import logging
import shutil

import pytest
from detectron2.data import DatasetCatalog

from temporal_roi_align.data import VideoDatasetMapper, build_video_train_loader
from temporal_roi_align.data.build import SkippingMapDataset

from helpers.configs import small_cfg


@pytest.fixture
def broken_toy(vid_toy_root, tmp_path, monkeypatch):
    """A copy of the toy dataset whose training videos but the last have unreadable frames (a
    truncated file, as an interrupted copy leaves it); $DETECTRON2_DATASETS points at it."""
    root = str(tmp_path / "toy_vid")
    shutil.copytree(vid_toy_root, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    videos = sorted({d["video_id"] for d in DatasetCatalog.get("toy_vid_train")})
    broken = []
    for d in DatasetCatalog.get("toy_vid_train"):
        if d["video_id"] != videos[-1]:
            with open(d["file_name"], "r+b") as f:
                f.truncate(100)
            broken.append(d["file_name"])
    return videos[-1], broken


def test_mapper_skips_a_group_with_an_unreadable_support(broken_toy, caplog):
    good_video, broken = broken_toy
    dicts = DatasetCatalog.get("toy_vid_train")
    cfg = small_cfg(NUM_TRAIN=2)
    target = next(d for d in dicts if d["file_name"] not in broken)
    with pytest.raises(OSError, match=r"cannot read image"):  # default: the error, naming the file
        VideoDatasetMapper(cfg, True)(next(d for d in dicts if d["file_name"] in broken))
    cfg.DATALOADER.SKIP_BAD_FRAMES = True
    mapper = VideoDatasetMapper(cfg, True)
    assert mapper(target)["supports"]  # a good group is mapped as always
    with caplog.at_level(logging.WARNING):
        assert mapper(next(d for d in dicts if d["file_name"] in broken)) is None
        assert mapper(next(d for d in dicts if d["file_name"] in broken)) is None
    assert "skipped the frame group of" in caplog.text and "cannot read image" in caplog.text
    assert "2 skipped so far by this data loading process" in caplog.text
    assert mapper.skipped == 2
    # Evaluation does not skip: a frame left out would change the metrics.
    assert VideoDatasetMapper(cfg, False).skip_bad_frames is False


def test_train_loader_draws_other_groups(broken_toy, caplog):
    good_video, _ = broken_toy
    cfg = small_cfg(NUM_TRAIN=2)
    cfg.DATASETS.TRAIN = ("toy_vid_train",)
    cfg.DATALOADER.SKIP_BAD_FRAMES = True
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    with caplog.at_level(logging.WARNING):
        batches = [b for b, _ in zip(build_video_train_loader(cfg), range(3))]
    assert {d["video_id"] for b in batches for d in b} == {good_video}
    assert "DATALOADER.SKIP_BAD_FRAMES" in caplog.text


def test_skipping_map_dataset():
    dataset = SkippingMapDataset(list(range(10)), lambda x: None if x % 3 else x)
    assert [dataset[i] for i in (0, 3, 6, 9)] == [0, 3, 6, 9]
    assert all(dataset[i] in (0, 3, 6, 9) for i in range(10))  # another element for a skipped one
    with pytest.raises(RuntimeError, match="all 4 elements of the training set were skipped"):
        SkippingMapDataset([1, 2, 4, 5], lambda x: None)[0]
