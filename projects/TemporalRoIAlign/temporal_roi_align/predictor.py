"""Whole-video inference in the conventions of Detectron2's DefaultPredictor."""

import itertools
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from .checkpoint import VideoCheckpointer
from .data import SupportSelector, build_test_augmentation
from .postprocessing import build_video_postprocessor

__all__ = ["VideoPredictor"]


class VideoPredictor:
    """
    Config in, BGR (or ``INPUT.FORMAT``) frames in, one ``Instances`` per frame out, in the
    original resolution. Each frame is resized once and goes through the backbone about once:
    the model's feature cache (``VIDEO.CACHE_FRAMES`` frames at ``VIDEO.CACHE_DTYPE``) serves it
    as a support again, keyed by the frame's (video, index).

    - :meth:`predict_video` (offline): random access to the whole video; supports chosen by the
      test rule of the config (``INPUT.SUPPORT.TEST_MODE``, see :class:`SupportSelector`;
      ``uniform`` spreads NUM_TEST frames over the whole video, the paper's default).
    - :meth:`predict_stream` (online): frames arrive one at a time; supports are the NUM_TEST
      past frames TEST_STRIDE apart (the ``past`` rule; the first frame repeated at the start),
      or the test rule itself when it uses no later frame (DFF's ``key_frame``).

    ``VIDEO.POSTPROCESS`` (e.g. Seq-NMS) is applied to each whole video by :meth:`predict_video`.

    A missing or unreadable ``MODEL.WEIGHTS`` file is a :class:`CheckpointError` naming it. With
    ``check_weights`` (the tools' default), weights that leave any parameter of the model
    uninitialised, or no weights at all, are refused too unless ``allow_partial_weights``.
    """

    def __init__(self, cfg, *, check_weights: bool = False, allow_partial_weights: bool = False):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        checkpointer = VideoCheckpointer(self.model)
        if cfg.MODEL.WEIGHTS:
            checkpointer.load(cfg.MODEL.WEIGHTS)
        if check_weights:
            checkpointer.check_weights(evaluating=True, allow_partial=allow_partial_weights)
        self.aug = T.AugmentationList(build_test_augmentation(cfg))
        self.input_format = cfg.INPUT.FORMAT
        self.offline_supports = SupportSelector.from_config(cfg, is_train=False)
        self.online_supports = (
            self.offline_supports
            if self.offline_supports.is_causal
            else SupportSelector("past", cfg.INPUT.SUPPORT.NUM_TEST, stride=cfg.INPUT.SUPPORT.TEST_STRIDE)
        )
        # Resized frames kept for reuse as supports: as many as the feature cache holds, and
        # at least one frame group.
        self.prepared_frames = max(cfg.VIDEO.CACHE_FRAMES, cfg.INPUT.SUPPORT.NUM_TEST + 2)
        self._video_ids = itertools.count()
        self.postprocess = build_video_postprocessor(cfg)

    def predict_video(self, frames: Sequence[np.ndarray]) -> Iterator[Instances]:
        """Offline mode over a whole video (a list of frames, or any sequence with random access).
        With ``VIDEO.POSTPROCESS`` set, the first result comes once every frame is detected."""
        video = ("VideoPredictor", next(self._video_ids))
        prepare = self._frame_preparer(video, lambda i: frames[i])
        frame_ids = range(len(frames))
        results = (self._predict(*self._frame_group(prepare, t, frame_ids)) for t in frame_ids)
        if self.postprocess is None:
            yield from results
        else:
            yield from self.postprocess(list(results))

    def predict_stream(self, frames: Iterable[np.ndarray]) -> Iterator[Instances]:
        """Online mode: only past frames serve as supports."""
        if self.postprocess is not None:
            raise ValueError(
                f"VIDEO.POSTPROCESS {self.cfg.VIDEO.POSTPROCESS!r} needs the whole video; online prediction "
                "(predict_stream) cannot apply it: use predict_video or VIDEO.POSTPROCESS none"
            )
        if getattr(self.model, "temporal_block", None) is not None:
            raise ValueError("MODEL.TAM groups frames around the target, later ones too: use predict_video")
        video = ("VideoPredictor", next(self._video_ids))
        history: Dict[int, np.ndarray] = {}
        oldest_needed = self.online_supports.num * self.online_supports.stride
        prepare = self._frame_preparer(video, history.__getitem__)
        for t, frame in enumerate(frames):
            history[t] = frame
            yield self._predict(prepare(t), [prepare(i) for i in self.online_supports(t, range(t + 1))])
            # Frame 0 stays: it stands in for the frames before the start.
            if t - oldest_needed > 0:
                del history[t - oldest_needed]

    def frame_group(self, frames: Sequence[np.ndarray], index: int) -> Tuple[dict, List[dict]]:
        """The model inputs of frame ``index`` of a whole video and of its supports (the offline
        rule), as :meth:`predict_video` builds them: ``(target, supports)``."""
        prepare = self._frame_preparer(("VideoPredictor", next(self._video_ids)), lambda i: frames[i])
        return self._frame_group(prepare, index, range(len(frames)))

    def _frame_group(self, prepare, index: int, frame_ids: Sequence[int]) -> Tuple[dict, List[dict]]:
        return prepare(index), [prepare(i) for i in self.offline_supports(index, frame_ids)]

    def _frame_preparer(self, video, read: Callable[[int], np.ndarray]) -> Callable[[int], dict]:
        """``frame index -> model input`` for one video, each frame resized once while it stays
        among the ``prepared_frames`` most recently used."""
        prepared: "OrderedDict[int, dict]" = OrderedDict()

        def prepare(index: int) -> dict:
            if index not in prepared:
                prepared[index] = self._frame_input(read(index), video, index)
                while len(prepared) > self.prepared_frames:
                    prepared.popitem(last=False)
            prepared.move_to_end(index)
            return prepared[index]

        return prepare

    def _frame_input(self, frame: np.ndarray, video, index: int) -> dict:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {index}: expected an HxWx3 image, got shape {frame.shape}")
        if self.input_format == "RGB":
            frame = np.ascontiguousarray(frame[:, :, ::-1])
        height, width = frame.shape[:2]
        image = T.AugInput(frame)
        self.aug(image)
        image = torch.as_tensor(np.ascontiguousarray(image.image.transpose(2, 0, 1)))
        return {"image": image, "height": height, "width": width, "video_id": video, "frame_id": index}

    def _predict(self, target: dict, supports: list) -> Instances:
        with torch.no_grad():
            return self.model([{**target, "supports": supports}])[0]["instances"].to("cpu")
