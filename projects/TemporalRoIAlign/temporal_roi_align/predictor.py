"""Whole-video inference in the conventions of Detectron2's DefaultPredictor."""
from typing import Iterable, Iterator, List, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from .data import build_test_augmentation, select_test_supports

__all__ = ["VideoPredictor", "past_support_indices"]


def past_support_indices(frame_id: int, num_supports: int, stride: int) -> List[int]:
    """``num_supports`` past frames ``stride`` apart, the first frame repeated before the start."""
    return [max(frame_id - (i + 1) * stride, 0) for i in range(num_supports)]


class VideoPredictor:
    """
    Config in, BGR (or ``INPUT.FORMAT``) frames in, one ``Instances`` per frame out, in the
    original resolution. Each frame goes through the backbone about once: the model's feature
    cache (``VIDEO.CACHE_FRAMES`` frames at ``VIDEO.CACHE_DTYPE``) serves it as a support again.

    - :meth:`predict_video` (``VIDEO.MODE: offline``): random access to the whole video; supports
      chosen as the test loader does (``INPUT.SUPPORT.TEST_MODE``, see ``select_test_supports``:
      ``uniform`` spreads NUM_TEST frames over the whole video, the paper's default).
    - :meth:`predict_stream` (``online``): frames arrive one at a time; supports are the NUM_TEST
      past frames TEST_STRIDE apart (the first frame repeated at the start of the stream).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.aug = T.AugmentationList(build_test_augmentation(cfg))
        self.input_format = cfg.INPUT.FORMAT
        support = cfg.INPUT.SUPPORT
        self.test_mode, self.num_supports, self.stride = support.TEST_MODE, support.NUM_TEST, support.TEST_STRIDE
        self._video = 0

    def _frame_input(self, frame: np.ndarray, key: str):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {key}: expected an HxWx3 image, got shape {frame.shape}")
        if self.input_format == "RGB":
            frame = np.ascontiguousarray(frame[:, :, ::-1])
        height, width = frame.shape[:2]
        image = T.AugInput(frame)
        self.aug(image)
        image = image.image
        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": image, "height": height, "width": width, "file_name": key}

    def predict_video(self, frames: Sequence[np.ndarray]) -> Iterator[Instances]:
        """Offline mode over a whole video (a list of frames, or any sequence with random access)."""
        self._video += 1
        frame_ids = list(range(len(frames)))
        for t in frame_ids:
            ids = []
            if self.num_supports:
                ids = select_test_supports(t, frame_ids, self.num_supports, self.test_mode, self.stride)
            target = self._frame_input(frames[t], f"video{self._video}/{t}")
            yield self._predict(target, [self._frame_input(frames[i], f"video{self._video}/{i}") for i in ids])

    def predict_stream(self, frames: Iterable[np.ndarray]) -> Iterator[Instances]:
        """Online mode: only past frames serve as supports."""
        self._video += 1
        history = {}
        for t, frame in enumerate(frames):
            history[t] = self._frame_input(frame, f"video{self._video}/{t}")
            ids = past_support_indices(t, self.num_supports, self.stride)
            yield self._predict(history[t], [history[i] for i in ids])
            for i in [i for i in history if 0 < i <= t - self.stride * self.num_supports]:
                del history[i]

    def _predict(self, target, supports) -> Instances:
        with torch.no_grad():
            return self.model([{**target, "supports": supports}])[0]["instances"].to("cpu")
