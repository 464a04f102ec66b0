"""Maps one target frame's dataset dict to a frame group: the target plus support frames of the
same video, all read and augmented alike."""

import copy
import logging
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .datasets.common import frame_file_name

__all__ = ["VideoDatasetMapper", "read_frame", "sample_train_supports", "select_test_supports"]

logger = logging.getLogger(__name__)

SUPPORT_MODES = ("random", "uniform", "stride", "uniform_with_target")


def read_frame(file_name: str, image_format: str) -> np.ndarray:
    """``detection_utils.read_image`` whose errors name the file and the reason."""
    try:
        return utils.read_image(file_name, format=image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file_name}: image file does not exist") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken or truncated files
        raise OSError(f"{file_name}: cannot read image ({type(e).__name__}: {e})") from e


def build_test_augmentation(cfg) -> list:
    """Test-time resizing: Detectron2's, or the toolbox's for converted checkpoints
    (``INPUT.RESIZE_STYLE: mmcv``)."""
    resize_style = cfg.INPUT.RESIZE_STYLE
    if resize_style == "detectron2":
        return utils.build_augmentation(cfg, is_train=False)
    if resize_style == "mmcv":
        from ..checkpoint.transforms import ToolboxResizeShortestEdge

        return [ToolboxResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
    raise ValueError(f"INPUT.RESIZE_STYLE must be 'detectron2' or 'mmcv', got {resize_style!r}")


def sample_train_supports(
    target: int, frames: Sequence[int], num: int, frame_range: int = -1, rng=np.random
) -> List[int]:
    """``num`` frames drawn at random among ``frames`` (the video's frame indices), within
    ``frame_range`` of ``target`` (-1: anywhere), never ``target`` itself. Drawn without
    replacement while there are enough candidates, with replacement otherwise; copies of
    ``target`` when there is no other frame (a 1-frame video, a DET image)."""
    candidates = [
        f for f in frames if f != target and (frame_range < 0 or abs(f - target) <= frame_range)
    ]
    if not candidates:
        return [target] * num
    replace = len(candidates) < num
    return sorted(int(candidates[i]) for i in rng.choice(len(candidates), num, replace=replace))


def select_test_supports(
    target: int, frames: Sequence[int], num: int, mode: str, stride: int = 1
) -> List[int]:
    """Deterministic supports among ``frames`` (the video's frame indices, sorted).

    ``"uniform"``: ``num`` frames evenly spaced over the whole video, first and last included,
    skipping ``target``; repeated when the video has fewer other frames; copies of ``target`` when
    it has none. ``"stride"``: ``num // 2`` frames before and the rest after ``target``,
    ``stride`` apart; positions past the video's ends copy its first/last frame (which is
    ``target`` itself when the target is the first/last frame), as in the paper.
    ``"uniform_with_target"``: the converted toolbox checkpoints' supports: frames
    ``round(i * (L - 1) / (num - 1))`` (Python's round), ``i = 0..num-1``, of the video's ``L``
    frames, the target not skipped, then ``target`` itself (``num + 1`` supports).
    """
    if mode == "uniform":
        others = [f for f in frames if f != target]
        if not others:
            return [target] * num
        return [int(others[int(p)]) for p in np.round(np.linspace(0, len(others) - 1, num))]
    if mode == "stride":
        position, last = frames.index(target), len(frames) - 1
        before = num // 2
        offsets = [-k for k in range(before, 0, -1)] + list(range(1, num - before + 1))
        return [int(frames[min(max(position + k * stride, 0), last)]) for k in offsets]
    if mode == "uniform_with_target":
        stride = (len(frames) - 1) / (num - 1) if num > 1 else 0
        return [int(frames[round(i * stride)]) for i in range(num)] + [target]
    raise ValueError(
        f"unknown test support mode {mode!r}; expected 'uniform', 'stride' or 'uniform_with_target'"
    )


class VideoDatasetMapper(DatasetMapper):
    """:class:`DatasetMapper` for video frames: returns the target dict exactly as DatasetMapper
    does (plus ``"video_id"``, ``"frame_id"``, ``"video_length"`` kept from the input and training
    instances with ``gt_track_ids``) and ``"supports"``: a list of
    ``{"image", "file_name", "frame_id"}`` for frames of the same video, with the target's
    transforms (resize, flip) applied.

    Supports are found through the dict's ``video_frames`` and ``video_length``
    (see :func:`frame_file_name`). Training draws ``num_supports`` frames at random
    (:func:`sample_train_supports`); test uses :func:`select_test_supports`. With
    ``support_annotations=True`` supports also carry ``"instances"`` (training), and are drawn
    among the frames of ``support_dicts`` only, since those are the frames with annotations.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        num_supports: int,
        support_mode: str,
        support_frame_range: int = -1,
        support_stride: int = 1,
        support_annotations: bool = False,
        support_dicts: Optional[Sequence[dict]] = None,
        **kwargs,
    ):
        """
        Args:
            num_supports: support frames per target frame.
            support_mode: "random" (training); "uniform", "stride" or "uniform_with_target"
                (test), see :func:`select_test_supports`.
            support_frame_range: "random" only; supports within this many frames of the target
                (-1: anywhere in the video).
            support_stride: "stride" only; frames between consecutive supports.
            support_annotations: give supports "instances" too; needs ``support_dicts``.
            support_dicts: dataset dicts (with annotations) of the frames supports may use.
            kwargs: arguments of :class:`DatasetMapper`.
        """
        super().__init__(is_train, **kwargs)
        if support_mode not in SUPPORT_MODES:
            raise ValueError(f"support_mode must be one of {SUPPORT_MODES}, got {support_mode!r}")
        if num_supports < 0 or support_stride < 1:
            raise ValueError(
                f"need num_supports >= 0 and support_stride >= 1, got {num_supports}, {support_stride}"
            )
        if support_annotations and support_dicts is None:
            raise ValueError("support_annotations=True needs support_dicts (the annotated frames)")
        self.num_supports = num_supports
        self.support_mode = support_mode
        self.support_frame_range = support_frame_range
        self.support_stride = support_stride
        self.support_annotations = support_annotations
        self._annotated: Dict[object, Dict[int, dict]] = defaultdict(dict)
        for d in support_dicts if support_annotations else ():
            self._annotated[d["video_id"]][d["frame_id"]] = d
        logger.info(
            f"[VideoDatasetMapper] {num_supports} {support_mode} supports per frame "
            f"(range {support_frame_range}, stride {support_stride})"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        if not is_train:
            ret["augmentations"] = build_test_augmentation(cfg)
        s = cfg.INPUT.SUPPORT
        ret.update(
            num_supports=s.NUM_TRAIN if is_train else s.NUM_TEST,
            support_mode="random" if is_train else s.TEST_MODE,
            support_frame_range=s.TRAIN_FRAME_RANGE,
            support_stride=s.TEST_STRIDE,
        )
        return ret

    def support_frame_ids(self, dataset_dict: dict) -> List[int]:
        """The frame indices of the supports of ``dataset_dict`` (one per support, in order)."""
        target = dataset_dict["frame_id"]
        if self.support_annotations:
            frames = sorted(self._annotated[dataset_dict["video_id"]]) or [target]
        else:
            frames = range(dataset_dict["video_length"])
        if self.support_mode == "random":
            return sample_train_supports(
                target, frames, self.num_supports, self.support_frame_range
            )
        return select_test_supports(
            target, frames, self.num_supports, self.support_mode, self.support_stride
        )

    def __call__(self, dataset_dict: dict) -> dict:
        missing = [
            k
            for k in ("video_id", "frame_id", "video_length", "video_frames")
            if k not in dataset_dict
        ]
        if missing:
            raise KeyError(
                f"{dataset_dict.get('file_name')}: dataset dict lacks the video fields {missing}"
            )
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_frame(dataset_dict["file_name"], self.image_format)
        utils.check_image_size(dataset_dict, image)
        raw_shape = image.shape[:2]

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )

        supports, images = [], {dataset_dict["frame_id"]: dataset_dict["image"]}
        for frame_id in self.support_frame_ids(dataset_dict):
            file_name = frame_file_name(dataset_dict, frame_id)
            if frame_id not in images:
                support = read_frame(file_name, self.image_format)
                if support.shape[:2] != raw_shape:
                    raise ValueError(
                        f"{file_name}: support frame is {support.shape[1]}x{support.shape[0]} but target "
                        f"frame {dataset_dict['file_name']} of the same video is {raw_shape[1]}x{raw_shape[0]}"
                    )
                support = transforms.apply_image(support)
                images[frame_id] = torch.as_tensor(np.ascontiguousarray(support.transpose(2, 0, 1)))
            entry = {"image": images[frame_id], "file_name": file_name, "frame_id": frame_id}
            if self.support_annotations and self.is_train:
                annotated = self._annotated[dataset_dict["video_id"]].get(frame_id, dataset_dict)
                entry["annotations"] = copy.deepcopy(annotated.get("annotations", []))
                self._transform_annotations(entry, transforms, image_shape)
            supports.append(entry)
        dataset_dict["supports"] = supports

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        # DatasetMapper's, plus gt_track_ids (filtered together with the other fields).
        annos = []
        for obj in dataset_dict.pop("annotations"):
            if obj.get("iscrowd", 0) != 0:
                continue
            if not self.use_instance_mask:
                obj.pop("segmentation", None)
            if not self.use_keypoint:
                obj.pop("keypoints", None)
            annos.append(
                utils.transform_instance_annotations(
                    obj, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices
                )
            )
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        instances.gt_track_ids = torch.tensor(
            [int(obj.get("track_id", -1)) for obj in annos], dtype=torch.int64
        )
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
