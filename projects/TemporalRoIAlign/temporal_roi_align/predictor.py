"""Whole-video inference in the conventions of Detectron2's DefaultPredictor."""
from typing import Iterable, Iterator, List, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

__all__ = ["VideoPredictor", "uniform_support_indices", "stride_support_indices"]


def uniform_support_indices(video_length: int, num_supports: int) -> List[int]:
    """``num_supports`` frames spread evenly over the whole video (the same for every target)."""
    if num_supports <= 0 or video_length <= 0:
        return []
    return np.linspace(0, video_length - 1, num_supports).round().astype(int).tolist()


def stride_support_indices(frame_id: int, video_length: int, num_supports: int, stride: int,
                           past_only: bool = False) -> List[int]:
    """
    ``num_supports`` frames ``stride`` apart around ``frame_id`` (before it only when
    ``past_only``), clamped to the first/last frame past the video's ends.
    """
    if past_only:
        offsets = [-(i + 1) * stride for i in range(num_supports)]
    else:
        half = num_supports // 2
        offsets = [o * stride for o in range(-half, num_supports - half + 1) if o != 0][:num_supports]
    return [min(max(frame_id + o, 0), video_length - 1) for o in offsets]


class VideoPredictor:
    """
    Config in, BGR (or ``INPUT.FORMAT``) frames in, one ``Instances`` per frame out, in the
    original resolution. Each frame goes through the backbone about once: the model's feature
    cache (``VIDEO.CACHE_FRAMES`` frames at ``VIDEO.CACHE_DTYPE``) serves it as a support again.

    - :meth:`predict_video` (``VIDEO.MODE: offline``): random access to the whole video; supports
      per ``INPUT.SUPPORT.TEST_MODE`` (``uniform``: NUM_TEST frames over the whole video, the
      paper's default; ``stride``: NUM_TEST frames TEST_STRIDE apart around the target).
    - :meth:`predict_stream` (``online``): frames arrive one at a time; supports are the NUM_TEST
      past frames TEST_STRIDE apart (the first frame repeated at the start of the stream).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT
        support = cfg.INPUT.SUPPORT
        if support.TEST_MODE not in ("uniform", "stride"):
            raise ValueError(f"INPUT.SUPPORT.TEST_MODE must be 'uniform' or 'stride', got {support.TEST_MODE!r}")
        self.test_mode, self.num_supports, self.stride = support.TEST_MODE, support.NUM_TEST, support.TEST_STRIDE
        self._video = 0

    def _frame_input(self, frame: np.ndarray, key: str):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {key}: expected an HxWx3 image, got shape {frame.shape}")
        if self.input_format == "RGB":
            frame = frame[:, :, ::-1]
        height, width = frame.shape[:2]
        image = self.aug.get_transform(frame).apply_image(frame)
        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": image, "height": height, "width": width, "file_name": key}

    def predict_video(self, frames: Sequence[np.ndarray]) -> Iterator[Instances]:
        """Offline mode over a whole video (a list of frames, or any sequence with random access)."""
        self._video += 1
        length = len(frames)
        uniform = uniform_support_indices(length, self.num_supports)
        for t in range(length):
            if self.test_mode == "uniform":
                ids = uniform
            else:
                ids = stride_support_indices(t, length, self.num_supports, self.stride)
            target = self._frame_input(frames[t], f"video{self._video}/{t}")
            yield self._predict(target, [self._frame_input(frames[i], f"video{self._video}/{i}") for i in ids])

    def predict_stream(self, frames: Iterable[np.ndarray]) -> Iterator[Instances]:
        """Online mode: only past frames serve as supports."""
        self._video += 1
        history = {}
        for t, frame in enumerate(frames):
            history[t] = self._frame_input(frame, f"video{self._video}/{t}")
            ids = stride_support_indices(t, t + 1, self.num_supports, self.stride, past_only=True)
            yield self._predict(history[t], [history[i] for i in ids])
            for i in [i for i in history if 0 < i <= t - self.stride * self.num_supports]:
                del history[i]

    def _predict(self, target, supports) -> Instances:
        with torch.no_grad():
            return self.model([{**target, "supports": supports}])[0]["instances"].to("cpu")
