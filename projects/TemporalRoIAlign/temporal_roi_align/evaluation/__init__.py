from .motion import MOTION_RANGES, motion_buckets, motion_ious
from .vid_devkit import devkit_ap, devkit_aps, iou_thresholds, pixel_iou, voc_ap
from .vid_evaluation import VIDEvaluator, dataset_frame_subsets
from .video_postprocessing import VideoPostprocessingEvaluator
from .ytvis_evaluation import YTVISEvaluator, evaluate_ytvis, to_ytvis_records, video_ground_truth, video_predictions
from .ytvis_metric import YTVIS_METRICS, video_mask_ious, ytvis_metrics

__all__ = [
    "MOTION_RANGES",
    "VIDEvaluator",
    "VideoPostprocessingEvaluator",
    "YTVISEvaluator",
    "YTVIS_METRICS",
    "dataset_frame_subsets",
    "devkit_ap",
    "devkit_aps",
    "evaluate_ytvis",
    "iou_thresholds",
    "motion_buckets",
    "motion_ious",
    "pixel_iou",
    "to_ytvis_records",
    "video_ground_truth",
    "video_mask_ious",
    "video_predictions",
    "voc_ap",
    "ytvis_metrics",
]
