from .vid_evaluation import MOTION_BUCKETS, VIDEvaluator, motion_bucket, motion_ious

__all__ = ["MOTION_BUCKETS", "VIDEvaluator", "motion_bucket", "motion_ious"]
