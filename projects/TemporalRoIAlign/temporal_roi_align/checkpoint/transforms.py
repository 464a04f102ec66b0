"""The toolbox's test-time resize (``INPUT.RESIZE_STYLE: "mmcv"``), as a Detectron2 augmentation."""
import cv2
import numpy as np
from detectron2.data import transforms as T
from PIL import Image

__all__ = ["CV2ResizeTransform", "ToolboxResizeShortestEdge"]


class CV2ResizeTransform(T.ResizeTransform):
    """:class:`ResizeTransform` whose bilinear image resize is OpenCV's INTER_LINEAR on the
    image's own dtype (no antialiasing; uint8 stays uint8), as the toolbox resizes."""

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        if (interp or self.interp) != Image.BILINEAR:
            return super().apply_image(img, interp)
        assert img.shape[:2] == (self.h, self.w)
        return cv2.resize(img, (self.new_w, self.new_h), interpolation=cv2.INTER_LINEAR)


class ToolboxResizeShortestEdge(T.Augmentation):
    """
    Resize by one factor ``min(max_size / long side, short_edge_length / short side)``, each side
    to ``int(side * factor + 0.5)``, with :class:`CV2ResizeTransform`.

    Same target as :class:`detectron2.data.transforms.ResizeShortestEdge`, but that one scales
    twice before rounding (1280x720 -> 1000x562 where the toolbox gets 1000x563) and resizes
    uint8 images with PIL, which antialiases when shrinking.
    """

    def __init__(self, short_edge_length: int, max_size: int):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        factor = min(self.max_size / max(h, w), self.short_edge_length / min(h, w))
        return CV2ResizeTransform(h, w, int(h * factor + 0.5), int(w * factor + 0.5))
