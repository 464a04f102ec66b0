"""The video post-processor of a config (``VIDEO.POSTPROCESS``)."""

from functools import partial
from typing import Callable, List, Optional

from detectron2.structures import Instances

from ..config import CHOICES
from .seq_nms import RESCORE_MODES, seq_nms

__all__ = ["POSTPROCESSORS", "build_video_postprocessor"]

POSTPROCESSORS = CHOICES["VIDEO.POSTPROCESS"]


def build_video_postprocessor(cfg) -> Optional[Callable[[List[Instances]], List[Instances]]]:
    """A function from one video's per-frame detections (``Instances`` in temporal order) to
    the post-processed ones, or None for ``VIDEO.POSTPROCESS: none``."""
    kind = cfg.VIDEO.POSTPROCESS
    if kind not in POSTPROCESSORS:
        raise ValueError(f"VIDEO.POSTPROCESS must be one of {POSTPROCESSORS}, got {kind!r}")
    if kind == "none":
        return None
    options = cfg.VIDEO.SEQ_NMS
    if options.RESCORE not in RESCORE_MODES:
        raise ValueError(f"VIDEO.SEQ_NMS.RESCORE must be one of {RESCORE_MODES}, got {options.RESCORE!r}")
    for key in ("LINK_IOU", "NMS_IOU"):
        if not 0.0 <= options[key] <= 1.0:
            raise ValueError(f"VIDEO.SEQ_NMS.{key} must be in [0, 1], got {options[key]}")
    return partial(seq_nms, link_iou=options.LINK_IOU, nms_iou=options.NMS_IOU, rescore=options.RESCORE)
