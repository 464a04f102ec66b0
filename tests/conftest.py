"""Fixtures shared across the test folders: the small toy datasets (made once per session), a copy
of one to modify, and datasets registered for one test."""

import os
import shutil
import uuid

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

TOY_TEST_KWARGS = dict(num_train_videos=3, num_val_videos=2, frames_per_video=6, image_size=(64, 80), seed=3)


def _toy_fixtures(kind: str, **kwargs):
    """The fixtures ``<kind>_toy_kwargs``, ``<kind>_toy_root`` and ``<kind>_toy_datasets_env`` of a
    small toy dataset made once per session by ``make_toy_<kind>(**kwargs)`` under
    <tmp>/datasets/toy_<kind>. Tests must not modify it."""

    @pytest.fixture(scope="session", name=f"{kind}_toy_kwargs")
    def toy_kwargs():
        """The arguments of the toy dataset ``<kind>_toy_root``."""
        return dict(kwargs)

    @pytest.fixture(scope="session", name=f"{kind}_toy_root")
    def toy_root(tmp_path_factory):
        from temporal_roi_align import data

        make = getattr(data, f"make_toy_{kind}")
        return make(str(tmp_path_factory.mktemp("datasets") / f"toy_{kind}"), **kwargs)

    @pytest.fixture(name=f"{kind}_toy_datasets_env")
    def toy_datasets_env(request, monkeypatch):
        """Points $DETECTRON2_DATASETS at the folder holding ``<kind>_toy_root``, so the registered
        toy_<kind>_train / toy_<kind>_val names read it."""
        datasets = os.path.dirname(request.getfixturevalue(f"{kind}_toy_root"))
        monkeypatch.setenv("DETECTRON2_DATASETS", datasets)
        return datasets

    return toy_kwargs, toy_root, toy_datasets_env


vid_toy_kwargs, vid_toy_root, vid_toy_datasets_env = _toy_fixtures("vid", **TOY_TEST_KWARGS, val_frames_per_video=8)
vis_toy_kwargs, vis_toy_root, vis_toy_datasets_env = _toy_fixtures("vis", **TOY_TEST_KWARGS, val_frames_per_video=5)


@pytest.fixture
def toy_copy(vid_toy_root, tmp_path, monkeypatch):
    """A copy of ``vid_toy_root`` that the test may modify, read by the registered toy_vid_* names."""
    root = tmp_path / "toy_vid"
    shutil.copytree(vid_toy_root, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return root


@pytest.fixture
def new_dataset_name():
    """A function giving a new dataset name for the test to register; the names and their metadata
    are removed from the catalogs after the test."""
    names = []

    def new_name(prefix="test"):
        names.append(f"{prefix}_{uuid.uuid4().hex}")
        return names[-1]

    yield new_name
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
