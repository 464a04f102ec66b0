"""The registered YouTube-VIS names: paths, the official categories in the metadata, the evaluator."""

import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from temporal_roi_align.data.datasets import YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from temporal_roi_align.engine import VideoTrainer, setup_cfg
from temporal_roi_align.evaluation import YTVISEvaluator
from temporal_roi_align.model_zoo import get_config_file

from helpers.mmtrack_reference import YTVIS_2019_CLASSES, YTVIS_2021_CLASSES

NAMES = {
    f"ytvis_{year}_{split}": (year, folder)
    for year in (2019, 2021)
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test"))
}


def test_official_category_lists():
    for categories, mmtrack in (
        (YTVIS_2019_CATEGORIES, YTVIS_2019_CLASSES),
        (YTVIS_2021_CATEGORIES, YTVIS_2021_CLASSES),
    ):
        assert [i for i, _ in categories] == list(range(1, 41))
        assert tuple(n for _, n in categories) == mmtrack
    # 2021: eagle and owl merged into bird, ape into monkey, hand removed; flying disc, squirrel, whale added.
    names_2019, names_2021 = {n for _, n in YTVIS_2019_CATEGORIES}, {n for _, n in YTVIS_2021_CATEGORIES}
    assert names_2019 - names_2021 == {"eagle", "owl", "ape", "hand", "sedan"}
    assert names_2021 - names_2019 == {"bird", "flying_disc", "squirrel", "whale", "car"}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registered_with_the_official_categories(name):
    year, _ = NAMES[name]
    categories = YTVIS_2019_CATEGORIES if year == 2019 else YTVIS_2021_CATEGORIES
    assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "ytvis"
    assert meta.thing_classes == [n for _, n in categories]
    assert meta.thing_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 41)}


@pytest.mark.parametrize("name", ["ytvis_2019_test", "ytvis_2021_val"])
def test_missing_files_are_named(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    year, folder = NAMES[name]
    expected = os.path.join(str(tmp_path), f"ytvis_{year}", f"{folder}.json")
    with pytest.raises(FileNotFoundError, match=f"Dataset '{name}': annotation file {expected} does not exist.*README"):
        DatasetCatalog.get(name)


def write_split(tmp_path, year, folder, categories):
    os.makedirs(tmp_path / f"ytvis_{year}" / folder / "JPEGImages")
    data = {
        "categories": [{"id": i, "name": n} for i, n in categories],
        "videos": [{"id": 3, "file_names": ["v/00000.jpg", "v/00005.jpg"], "height": 8, "width": 8, "length": 2}],
    }
    (tmp_path / f"ytvis_{year}" / f"{folder}.json").write_text(json.dumps(data))


def test_files_at_the_documented_paths_load(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    write_split(tmp_path, 2021, "test", YTVIS_2021_CATEGORIES)
    dicts = DatasetCatalog.get("ytvis_2021_test")
    assert [d["file_name"] for d in dicts] == [
        os.path.join(str(tmp_path), "ytvis_2021", "test", "JPEGImages", "v", f) for f in ("00000.jpg", "00005.jpg")
    ]
    assert all("annotations" not in d for d in dicts)


def test_a_json_with_other_categories_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    write_split(tmp_path, 2019, "valid", YTVIS_2021_CATEGORIES)
    json_file = os.path.join(str(tmp_path), "ytvis_2019", "valid.json")
    with pytest.raises(
        ValueError, match=f"{json_file}: categories .* differ from the classes registered for 'ytvis_2019_val'"
    ):
        DatasetCatalog.get("ytvis_2019_val")


def test_the_trainer_evaluates_them_with_the_youtube_vis_evaluator(tmp_path):
    cfg = setup_cfg(get_config_file("toy/masktrack.yaml"), ["OUTPUT_DIR", str(tmp_path)])
    for name in ("ytvis_2019_val", "ytvis_2021_test", "toy_vis_val"):
        evaluator = VideoTrainer.build_evaluator(cfg, name)
        assert isinstance(evaluator, YTVISEvaluator)
        assert evaluator._output_dir == os.path.join(str(tmp_path), "inference", name)
