"""Fixtures of the evaluator tests: datasets registered for one test."""

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from temporal_roi_align.data.datasets import register_ytvis_instances


@pytest.fixture
def register_vid_dicts(new_dataset_name):
    """``register(dicts, classes)``: registers the dataset dicts with their class names; returns the name."""

    def register(dicts, classes):
        name = new_dataset_name("vid_evaluator")
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).thing_classes = classes
        return name

    return register


@pytest.fixture
def register_ytvis_json(new_dataset_name):
    """``register(json_file)``: registers a YouTube-VIS JSON (no frame files); returns the name."""

    def register(json_file):
        name = new_dataset_name("ytvis_evaluator")
        register_ytvis_instances(name, {}, json_file, "/nonexistent/JPEGImages")
        return name

    return register
