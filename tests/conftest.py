"""Fixtures of the video data tests (test_datasets_*, test_video_mapper, test_toy_vid, test_toy_vis, ...)."""

import os

import pytest

VID_TOY_TEST_KWARGS = dict(
    num_train_videos=3,
    num_val_videos=2,
    frames_per_video=6,
    val_frames_per_video=8,
    image_size=(64, 80),
    seed=3,
)


@pytest.fixture(scope="session")
def vid_toy_kwargs():
    """The make_toy_vid arguments of ``vid_toy_root``."""
    return dict(VID_TOY_TEST_KWARGS)


@pytest.fixture(scope="session")
def vid_toy_root(tmp_path_factory):
    """A small toy dataset (ImageNet VID format), generated once per session under
    <tmp>/datasets/toy_vid. Tests must not modify it."""
    from temporal_roi_align.data import make_toy_vid

    return make_toy_vid(str(tmp_path_factory.mktemp("datasets") / "toy_vid"), **VID_TOY_TEST_KWARGS)


@pytest.fixture
def vid_toy_datasets_env(vid_toy_root, monkeypatch):
    """Points $DETECTRON2_DATASETS at the folder holding ``vid_toy_root``, so the registered
    toy_vid_train / toy_vid_val names read it."""
    monkeypatch.setenv("DETECTRON2_DATASETS", os.path.dirname(vid_toy_root))
    return os.path.dirname(vid_toy_root)


VIS_TOY_TEST_KWARGS = dict(
    num_train_videos=3,
    num_val_videos=2,
    frames_per_video=6,
    val_frames_per_video=5,
    image_size=(64, 80),
    seed=3,
)


@pytest.fixture(scope="session")
def vis_toy_kwargs():
    """The make_toy_vis arguments of ``vis_toy_root``."""
    return dict(VIS_TOY_TEST_KWARGS)


@pytest.fixture(scope="session")
def vis_toy_root(tmp_path_factory):
    """A small toy VIS dataset (YouTube-VIS format), generated once per session under
    <tmp>/datasets/toy_vis. Tests must not modify it."""
    from temporal_roi_align.data import make_toy_vis

    return make_toy_vis(str(tmp_path_factory.mktemp("datasets") / "toy_vis"), **VIS_TOY_TEST_KWARGS)


@pytest.fixture
def vis_toy_datasets_env(vis_toy_root, monkeypatch):
    """Points $DETECTRON2_DATASETS at the folder holding ``vis_toy_root``, so the registered
    toy_vis_train / toy_vis_val names read it."""
    monkeypatch.setenv("DETECTRON2_DATASETS", os.path.dirname(vis_toy_root))
    return os.path.dirname(vis_toy_root)
