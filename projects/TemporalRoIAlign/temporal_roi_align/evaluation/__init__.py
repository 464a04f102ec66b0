from .motion import MOTION_RANGES, motion_buckets, motion_ious
from .vid_devkit import devkit_ap, devkit_aps, iou_thresholds, pixel_iou, voc_ap
from .vid_evaluation import VIDEvaluator

__all__ = [
    "MOTION_RANGES",
    "VIDEvaluator",
    "devkit_ap",
    "devkit_aps",
    "iou_thresholds",
    "motion_buckets",
    "motion_ious",
    "pixel_iou",
    "voc_ap",
]
