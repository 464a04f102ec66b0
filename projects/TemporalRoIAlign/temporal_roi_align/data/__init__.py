"""Video datasets, frame-group mapper and loaders. Importing this registers the builtin
datasets (see :mod:`.datasets.builtin` and datasets/README.md)."""

from .build import build_video_test_loader, build_video_train_loader
from .dataset_mapper import VideoDatasetMapper, read_frame
from .datasets import builtin as _builtin  # noqa: F401  registers the builtin names
from .datasets.common import datasets_root, frame_file_name
from .samplers import VideoInferenceSampler
from .support_frames import SUPPORT_MODES, SupportSelector, sample_train_supports, select_test_supports
from .toy import TOY_CATEGORIES, default_toy_root, ensure_toy_vid, is_degraded, make_toy_vid
from .transforms import build_test_augmentation

__all__ = [
    "SUPPORT_MODES",
    "SupportSelector",
    "VideoDatasetMapper",
    "VideoInferenceSampler",
    "build_video_train_loader",
    "build_video_test_loader",
    "build_test_augmentation",
    "datasets_root",
    "default_toy_root",
    "ensure_toy_vid",
    "frame_file_name",
    "is_degraded",
    "make_toy_vid",
    "read_frame",
    "select_test_supports",
    "sample_train_supports",
    "TOY_CATEGORIES",
]
