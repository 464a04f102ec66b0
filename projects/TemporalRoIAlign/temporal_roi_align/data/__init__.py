"""Video datasets, frame-group mapper and loaders. Importing this registers the builtin
datasets (see :mod:`.datasets.builtin` and datasets/README.md)."""

from .build import build_video_test_loader, build_video_train_loader
from .dataset_mapper import VideoDatasetMapper, read_frame
from .datasets import builtin as _builtin  # noqa: F401  registers the builtin names
from .datasets.common import datasets_root, frame_file_name
from .samplers import VideoInferenceSampler
from .support_frames import SUPPORT_MODES, SupportSelector, sample_train_supports, select_test_supports
from .toy import (
    TOY_CATEGORIES,
    TOY_VIS_CATEGORIES,
    ToySpec,
    default_toy_root,
    default_toy_vis_root,
    ensure_toy_vid,
    ensure_toy_vis,
    is_degraded,
    load_toy_vid,
    load_toy_vis,
    make_toy_vid,
    make_toy_vis,
    register_toy_vid,
    register_toy_vis,
)
from .transforms import build_test_augmentation
from .vis_dataset_mapper import VISDatasetMapper, index_frame_annotations

__all__ = [
    "SUPPORT_MODES",
    "SupportSelector",
    "VISDatasetMapper",
    "VideoDatasetMapper",
    "VideoInferenceSampler",
    "build_video_train_loader",
    "build_video_test_loader",
    "build_test_augmentation",
    "datasets_root",
    "default_toy_root",
    "default_toy_vis_root",
    "ensure_toy_vid",
    "ensure_toy_vis",
    "frame_file_name",
    "index_frame_annotations",
    "is_degraded",
    "load_toy_vid",
    "load_toy_vis",
    "make_toy_vid",
    "make_toy_vis",
    "read_frame",
    "register_toy_vid",
    "register_toy_vis",
    "select_test_supports",
    "sample_train_supports",
    "TOY_CATEGORIES",
    "TOY_VIS_CATEGORIES",
    "ToySpec",
]
