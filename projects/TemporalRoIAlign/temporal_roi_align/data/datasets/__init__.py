"""Video dataset loaders. The builtin names are registered by ``temporal_roi_align.data``
(see :mod:`.builtin`)."""

from .coco_video import load_coco_video_json, register_coco_video_instances
from .common import DatasetError, compact_frame_list, datasets_root, frame_file_name, frame_record
from .epic_kitchens import EPIC_KITCHENS_55_SPLITS, NumberedFrames, load_epic_kitchens_55, register_epic_kitchens
from .imagenet_vid import VID_CATEGORIES, load_imagenet_vid, register_imagenet_vid, sample_key_frames
from .ytvis import (
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    load_ytvis_json,
    register_ytvis_instances,
    ytvis_metadata,
)

__all__ = [
    "DatasetError",
    "EPIC_KITCHENS_55_SPLITS",
    "NumberedFrames",
    "VID_CATEGORIES",
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "compact_frame_list",
    "datasets_root",
    "frame_file_name",
    "frame_record",
    "load_coco_video_json",
    "load_epic_kitchens_55",
    "load_imagenet_vid",
    "load_ytvis_json",
    "register_coco_video_instances",
    "register_epic_kitchens",
    "register_imagenet_vid",
    "register_ytvis_instances",
    "sample_key_frames",
    "ytvis_metadata",
]
