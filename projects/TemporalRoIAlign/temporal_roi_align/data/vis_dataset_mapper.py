"""Training frame groups of MaskTrack R-CNN: the target frame, a reference frame of the same video
with its ground-truth instances (what the track head learns to match), and support frames."""

import copy
import logging
from collections import defaultdict
from typing import Dict, Hashable, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils

from .dataset_mapper import VideoDatasetMapper
from .support_frames import SupportSelector

__all__ = ["VISDatasetMapper", "index_frame_annotations"]

logger = logging.getLogger(__name__)

# (video_id, frame_id) -> the frame's annotations (without masks)
FrameAnnotations = Dict[Tuple[Hashable, int], List[dict]]

# What the reference frame's instances need (its masks are not used).
_REFERENCE_FIELDS = ("bbox", "bbox_mode", "category_id", "iscrowd", "track_id")


def index_frame_annotations(dataset_names: Sequence[str]) -> FrameAnnotations:
    """
    The annotations of every frame of the datasets (``DatasetCatalog``), by ``(video_id,
    frame_id)``, unfiltered (frames without instances included), each annotation reduced to box,
    class, crowd flag and ``track_id``. Raises ValueError when two frames share a key (datasets
    whose video ids collide cannot be indexed together).
    """
    index: FrameAnnotations = {}
    for name in dataset_names:
        for d in DatasetCatalog.get(name):
            missing = [k for k in ("video_id", "frame_id") if k not in d]
            if missing:
                raise KeyError(f"{d.get('file_name')} (dataset '{name}'): dataset dict lacks {missing}")
            key = (d["video_id"], d["frame_id"])
            if key in index:
                raise ValueError(
                    f"dataset '{name}': video {key[0]!r} frame {key[1]} ({d.get('file_name')}) appears twice in "
                    f"{list(dataset_names)}; VISDatasetMapper needs video ids that are unique across them"
                )
            index[key] = [{k: a[k] for k in _REFERENCE_FIELDS if k in a} for a in d.get("annotations", [])]
    return index


class VISDatasetMapper(VideoDatasetMapper):
    """
    :class:`VideoDatasetMapper` whose training groups also hold ``"reference"``: ``{"image",
    "file_name", "video_id", "frame_id", "instances"}``, a frame of the target's video drawn by
    ``reference_selector`` (mmtrack: uniformly within +-100 frames, never the target itself; the
    target when the video has no other indexed frame), read and transformed with the target's
    transforms (resize, flip), its ``instances`` with ``gt_boxes``, ``gt_classes`` and
    ``gt_track_ids`` (no masks: the track head does not use them). Test groups are
    :class:`VideoDatasetMapper`'s.

    The reference frame needs the annotations of frames other than the target's: ``frame_index``
    holds them, by ``(video_id, frame_id)``. :meth:`from_config` builds it once from the
    ``cfg.DATASETS.TRAIN`` dicts (:func:`index_frame_annotations`); candidate reference frames
    are the indexed frames of the target's video.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        reference_selector: SupportSelector,
        frame_index: FrameAnnotations,
        **kwargs,
    ):
        """
        Args:
            reference_selector: draws one reference frame among the indexed frames of the video
                (a "random" :class:`SupportSelector` with ``num=1``).
            frame_index: see :func:`index_frame_annotations`; may be empty when not ``is_train``.
            kwargs: arguments of :class:`VideoDatasetMapper`.
        """
        super().__init__(is_train, **kwargs)
        if reference_selector.num != 1:
            raise ValueError(f"VISDatasetMapper draws one reference frame, got a selector of {reference_selector.num}")
        self.reference_selector = reference_selector
        self.frame_index = frame_index
        video_frames = defaultdict(list)
        for video_id, frame_id in frame_index:
            video_frames[video_id].append(frame_id)
        self._video_frames = {v: sorted(frames) for v, frames in video_frames.items()}
        if is_train:
            logger.info(f"[VISDatasetMapper] reference frame: {reference_selector}, {len(frame_index)} frames indexed")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["reference_selector"] = SupportSelector("random", 1, frame_range=cfg.INPUT.REFERENCE_FRAME_RANGE)
        ret["frame_index"] = index_frame_annotations(cfg.DATASETS.TRAIN) if is_train else {}
        return ret

    def _add_frames(self, dataset_dict: dict, frames, transforms) -> None:
        super()._add_frames(dataset_dict, frames, transforms)
        if not self.is_train:
            return
        video_id, target = dataset_dict["video_id"], dataset_dict["frame_id"]
        if (video_id, target) not in self.frame_index:
            raise KeyError(
                f"{dataset_dict['file_name']}: video {video_id!r} frame {target} is not among the indexed training "
                "frames (VISDatasetMapper indexes the frames of cfg.DATASETS.TRAIN, or the frame_index given)"
            )
        (reference_id,) = self.reference_selector(target, self._video_frames[video_id])
        reference = frames(reference_id)
        image_shape = tuple(dataset_dict["image"].shape[1:])
        annotations = copy.deepcopy(self.frame_index[(video_id, reference_id)])
        reference["instances"] = self._reference_instances(annotations, transforms, image_shape)
        dataset_dict["reference"] = reference

    @staticmethod
    def _reference_instances(annotations: List[dict], transforms, image_shape):
        """Boxes, classes and track ids of the reference frame's non-crowd instances."""
        annos = [
            utils.transform_instance_annotations(obj, transforms, image_shape)
            for obj in annotations
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(annos, image_shape)
        instances.gt_track_ids = torch.tensor([int(obj.get("track_id", -1)) for obj in annos], dtype=torch.int64)
        return utils.filter_empty_instances(instances)
