from .vid_evaluation import MOTION_BUCKETS, VIDEvaluator, motion_bucket, motion_ious
from .ytvis_evaluation import YTVISEvaluator, video_ground_truth, video_predictions
from .ytvis_metric import YTVIS_METRICS, evaluate_ytvis, video_mask_ious, ytvis_metrics

__all__ = [
    "MOTION_BUCKETS",
    "VIDEvaluator",
    "YTVISEvaluator",
    "YTVIS_METRICS",
    "evaluate_ytvis",
    "motion_bucket",
    "motion_ious",
    "video_ground_truth",
    "video_mask_ious",
    "video_predictions",
    "ytvis_metrics",
]
