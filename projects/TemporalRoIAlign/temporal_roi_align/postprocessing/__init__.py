"""Video-level post-processing of per-frame detections."""

from .build import POSTPROCESSORS, build_video_postprocessor
from .seq_nms import RESCORE_MODES, seq_nms, seq_nms_arrays

__all__ = ["POSTPROCESSORS", "RESCORE_MODES", "build_video_postprocessor", "seq_nms", "seq_nms_arrays"]
