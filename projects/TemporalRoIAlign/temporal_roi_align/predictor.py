"""Whole-video inference in the conventions of Detectron2's DefaultPredictor."""

import functools
import itertools
import logging
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from .checkpoint import VideoCheckpointer
from .data import SupportSelector, build_test_augmentation
from .engine.defaults import fall_back_to_cpu
from .postprocessing import build_video_postprocessor

__all__ = ["VideoPredictor", "dataset_metadata"]

logger = logging.getLogger(__name__)


class VideoPredictor:
    """
    Config in, BGR (or ``INPUT.FORMAT``) frames in, one ``{"instances": Instances}`` per frame
    out, in the original resolution, as Detectron2's ``DefaultPredictor`` gives per image. Each
    frame is resized once and goes through the backbone about once: the model's feature cache
    (``VIDEO.CACHE_FRAMES`` frames at ``VIDEO.CACHE_DTYPE``) serves it as a support again,
    keyed by the frame's (video, index).

    - :meth:`predict_video` (offline): a list, one dict per frame of a whole video with random
      access; supports chosen by the test rule of the config (``INPUT.SUPPORT.TEST_MODE``, see
      :class:`SupportSelector`; ``uniform`` spreads NUM_TEST frames over the whole video, the
      paper's default). :meth:`iter_video` yields the same dicts one at a time, for videos whose
      results do not fit in memory together.
    - :meth:`predict_stream` (online): frames arrive one at a time, results are yielded as they
      come; supports are the NUM_TEST past frames TEST_STRIDE apart (the ``past`` rule; the first
      frame repeated at the start), or the test rule itself when it uses no later frame (DFF's
      ``key_frame``).

    ``VIDEO.POSTPROCESS`` (e.g. Seq-NMS) is applied to each whole video by :meth:`predict_video`
    and :meth:`iter_video`.

    ``MODEL.DEVICE`` "cuda" on a machine without CUDA runs on the CPU, with a warning, as the
    tools do. A missing or unreadable ``MODEL.WEIGHTS`` file is a :class:`CheckpointError`
    naming it. With ``check_weights`` (the default, as in the tools), weights that leave any
    parameter of the model uninitialised, or no weights at all, are refused too, unless
    ``allow_partial_weights`` (the tools' ``--allow-partial-weights``), which only warns.
    ``check_weights=False`` runs whatever was loaded, e.g. a randomly initialised model.

    ``metadata``: the classes of the config's datasets, see :func:`dataset_metadata`.
    """

    def __init__(self, cfg, *, check_weights: bool = True, allow_partial_weights: bool = False):
        self.cfg = cfg.clone()
        self.cfg.defrost()
        if fall_back_to_cpu(self.cfg):
            logger.warning(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available: running on the CPU")
        self.cfg.freeze()
        cfg = self.cfg
        self.model = build_model(cfg)
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

    @functools.cached_property
    def metadata(self):
        return dataset_metadata(self.cfg)

    def predict_video(self, frames: Sequence[np.ndarray]) -> List[Dict[str, Instances]]:
        """Offline mode over a whole video (a list of frames, or any sequence with random access):
        ``[{"instances": Instances}, ...]``, one per frame."""
        return list(self.iter_video(frames))

    def iter_video(self, frames: Sequence[np.ndarray]) -> Iterator[Dict[str, Instances]]:
        """:meth:`predict_video`, one frame's ``{"instances": Instances}`` at a time: only a
        bounded window of frames is held. With ``VIDEO.POSTPROCESS`` set, the first result
        comes once every frame is detected."""
        video = ("VideoPredictor", next(self._video_ids))
        prepare = self._frame_preparer(video, lambda i: frames[i])
        frame_ids = range(len(frames))
        results = (self._predict(*self._frame_group(prepare, t, frame_ids)) for t in frame_ids)
        if self.postprocess is not None:
            results = self.postprocess(list(results))
        for instances in results:
            yield {"instances": instances}

    def predict_stream(self, frames: Iterable[np.ndarray]) -> Iterator[Dict[str, Instances]]:
        """Online mode: only past frames serve as supports; yields each frame's
        ``{"instances": Instances}`` once the frame has arrived."""
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
            supports = [prepare(i) for i in self.online_supports(t, range(t + 1))]
            yield {"instances": self._predict(prepare(t), supports)}
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


def dataset_metadata(cfg):
    """The ``MetadataCatalog`` entry of the first dataset of ``DATASETS.TEST``, else of
    ``DATASETS.TRAIN``, that names the model's ``MODEL.ROI_HEADS.NUM_CLASSES`` classes
    (``thing_classes``; ``thing_dataset_id_to_contiguous_id`` where the dataset has its own
    category ids). A dataset registered without its classes (they come from its JSON, as for
    ``register_ytvis_instances(name, {}, ...)``) is loaded once to read them. Without such a
    dataset (a warning says why), empty metadata: classes are drawn as numbers."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    problems = []
    for name in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        if name not in DatasetCatalog.list():
            problems.append(f"'{name}' is not registered")
            continue
        metadata = MetadataCatalog.get(name)
        if metadata.get("thing_classes") is None:
            logger.info(f"Loading dataset '{name}' for its class names")
            try:
                DatasetCatalog.get(name)
            except Exception as e:  # a dataset that cannot be read here still leaves the classes as numbers
                problems.append(f"'{name}' could not be loaded ({e})")
                continue
        classes = metadata.get("thing_classes")
        if classes is None:
            problems.append(f"'{name}' has no thing_classes")
        elif len(classes) != num_classes:
            problems.append(f"'{name}' has {len(classes)} classes, the model {num_classes}")
        else:
            return metadata
    logger.warning(
        "No class names: " + ("; ".join(problems) or "DATASETS.TEST and DATASETS.TRAIN are empty") + ". "
        "Classes are shown as numbers."
    )
    return MetadataCatalog.get("__unused")
