"""Maps one target frame's dataset dict to a frame group: the target plus support frames of the
same video, all read and augmented alike."""

import copy
import logging
from typing import List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..utils.video_io import read_frame
from .datasets.common import frame_file_name
from .support_frames import SupportSelector
from .transforms import build_test_augmentation

__all__ = ["VideoDatasetMapper", "read_frame"]

logger = logging.getLogger(__name__)


class VideoDatasetMapper(DatasetMapper):
    """:class:`DatasetMapper` for video frames: returns the target dict exactly as DatasetMapper
    does (plus ``"video_id"``, ``"frame_id"``, ``"video_length"`` kept from the input and training
    instances with ``gt_track_ids``) and ``"supports"``: a list of
    ``{"image", "file_name", "video_id", "frame_id"}`` for frames of the same video, with the
    target's transforms (resize, flip) applied, in the order ``support_selector`` gives them.

    Supports are found through the dict's ``video_frames`` and ``video_length`` (see
    :func:`frame_file_name`), so any frame of the video can serve, also frames without a dict.

    With ``skip_bad_frames``, a frame group whose target or support frame cannot be read
    (``OSError``: missing, truncated, not an image) or has another size than its dict or its
    target (``SizeMismatchError``) maps to None, with a warning counting the skips of this
    process; :func:`build_video_train_loader` then draws another frame group.
    """

    @configurable
    def __init__(self, is_train: bool, *, support_selector: SupportSelector, skip_bad_frames: bool = False, **kwargs):
        """
        Args:
            support_selector: the support rule (see :class:`SupportSelector`).
            skip_bad_frames: return None for a frame group with an unreadable frame.
            kwargs: arguments of :class:`DatasetMapper`.
        """
        super().__init__(is_train, **kwargs)
        self.support_selector = support_selector
        self.skip_bad_frames = skip_bad_frames
        self.skipped = 0
        logger.info(f"[VideoDatasetMapper] supports: {support_selector}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        if not is_train:
            ret["augmentations"] = build_test_augmentation(cfg)
        ret["support_selector"] = SupportSelector.from_config(cfg, is_train)
        ret["skip_bad_frames"] = is_train and cfg.DATALOADER.SKIP_BAD_FRAMES
        return ret

    def __call__(self, dataset_dict: dict) -> Optional[dict]:
        try:
            return self._frame_group(dataset_dict)
        except (OSError, utils.SizeMismatchError) as e:
            if not self.skip_bad_frames:
                raise
            self.skipped += 1
            logger.warning(
                f"[VideoDatasetMapper] skipped the frame group of {dataset_dict.get('file_name')}: {e} "
                f"(DATALOADER.SKIP_BAD_FRAMES; {self.skipped} skipped so far by this data loading process)"
            )
            return None

    def _frame_group(self, dataset_dict: dict) -> dict:
        missing = [k for k in ("video_id", "frame_id", "video_length", "video_frames") if k not in dataset_dict]
        if missing:
            raise KeyError(f"{dataset_dict.get('file_name')}: dataset dict lacks the video fields {missing}")
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
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)

        self._add_frames(dataset_dict, self._frame_reader(dataset_dict, transforms, raw_shape), transforms)

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            dataset_dict["instances"] = self._annotations_to_instances(
                dataset_dict.pop("annotations"), transforms, image_shape
            )
        return dataset_dict

    def _add_frames(self, dataset_dict: dict, frames, transforms) -> None:
        """Adds the group's other frames to ``dataset_dict`` (which holds the target's "image"):
        ``"supports"`` (:class:`VISDatasetMapper` adds a reference frame). ``frames`` is the
        :meth:`_frame_reader`, ``transforms`` the target's."""
        support_ids = self.support_selector(dataset_dict["frame_id"], range(dataset_dict["video_length"]))
        dataset_dict["supports"] = [frames(frame_id) for frame_id in support_ids]

    def _frame_reader(self, dataset_dict: dict, transforms, raw_shape):
        """A function ``frame_id -> {"image", "file_name", "video_id", "frame_id"}`` giving frames
        of the target's video with the target's transforms; each frame is read once."""
        images = {dataset_dict["frame_id"]: dataset_dict["image"]}

        def read(frame_id: int) -> dict:
            file_name = frame_file_name(dataset_dict, frame_id)
            if frame_id not in images:
                frame = read_frame(file_name, self.image_format)
                if frame.shape[:2] != raw_shape:
                    raise utils.SizeMismatchError(
                        f"{file_name}: frame is {frame.shape[1]}x{frame.shape[0]} but frame "
                        f"{dataset_dict['file_name']} of the same video is {raw_shape[1]}x{raw_shape[0]}"
                    )
                frame = transforms.apply_image(frame)
                images[frame_id] = torch.as_tensor(np.ascontiguousarray(frame.transpose(2, 0, 1)))
            return {
                "image": images[frame_id],
                "file_name": file_name,
                "video_id": dataset_dict["video_id"],
                "frame_id": frame_id,
            }

        return read

    def _annotations_to_instances(self, annotations: List[dict], transforms, image_shape):
        """DatasetMapper's annotation handling, plus ``gt_track_ids`` (filtered with the rest)."""
        annos = []
        for obj in annotations:
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
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.instance_mask_format)
        instances.gt_track_ids = torch.tensor([int(obj.get("track_id", -1)) for obj in annos], dtype=torch.int64)
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        return utils.filter_empty_instances(instances)
