"""Test-time resizing of video frames: Detectron2's, or mmtrack's for converted checkpoints."""

import cv2
import numpy as np
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image

from ..config import CHOICES, current_choice

__all__ = ["CV2ResizeTransform", "MMTrackResizeShortestEdge", "build_test_augmentation", "RESIZE_STYLES"]

RESIZE_STYLES = CHOICES["INPUT.RESIZE_STYLE"]


class CV2ResizeTransform(T.ResizeTransform):
    """:class:`ResizeTransform` whose bilinear image resize is OpenCV's INTER_LINEAR on the
    image's own dtype (no antialiasing; uint8 stays uint8), as mmtrack resizes."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if (interp or self.interp) != Image.BILINEAR:
            return super().apply_image(img, interp)
        assert img.shape[:2] == (self.h, self.w)
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)


class MMTrackResizeShortestEdge(T.Augmentation):
    """
    Resize by one factor ``min(max_size / long side, short_edge_length / short side)``, each side
    to ``int(side * factor + 0.5)``, with :class:`CV2ResizeTransform` (mmcv's ``imrescale``).

    Same target as :class:`detectron2.data.transforms.ResizeShortestEdge`, but that one scales
    twice before rounding (1280x720 -> 1000x562 where mmtrack gets 1000x563) and resizes
    uint8 images with PIL, which antialiases when shrinking.
    """

    def __init__(self, short_edge_length: int, max_size: int):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        factor = min(self.max_size / max(h, w), self.short_edge_length / min(h, w))
        return CV2ResizeTransform(h, w, int(h * factor + 0.5), int(w * factor + 0.5))


def build_test_augmentation(cfg) -> list:
    """Test-time resizing by ``INPUT.RESIZE_STYLE``: "detectron2" (``ResizeShortestEdge``) or
    "mmtrack" (:class:`MMTrackResizeShortestEdge`, for converted checkpoints)."""
    style = current_choice("INPUT.RESIZE_STYLE", cfg.INPUT.RESIZE_STYLE)
    if style == "detectron2":
        return utils.build_augmentation(cfg, is_train=False)
    if style == "mmtrack":
        return [MMTrackResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
    raise ValueError(f"INPUT.RESIZE_STYLE must be one of {RESIZE_STYLES}, got {style!r}")
