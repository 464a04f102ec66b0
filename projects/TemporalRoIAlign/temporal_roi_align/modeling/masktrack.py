"""
MaskTrack R-CNN (Yang, Fan, Xu, ICCV 2019) on Detectron2's Mask R-CNN FPN, and MaskTrack R-CNN +
Temporal RoI Align (Gong et al., AAAI 2021, Table 8): video instance segmentation.

- :class:`MaskTrackROIHeads`: :class:`VideoROIHeads` (box and mask branches, Temporal RoI Align
  on the box and, with ``MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER``, the mask RoIs) plus the track
  branch (:class:`~.track_head.MaskTrackHead`).
- :class:`MaskTrackRCNN`: :class:`VideoRCNN` (one backbone pass over each frame group, the
  inference feature cache) that trains the track branch on a reference frame given with each
  input, and at test time links each frame's detections into tracks with a
  :class:`~.masktrack_tracker.MaskTrackTracker`.
"""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import ImageList, Instances

from .frame_group import ReferenceFrames, SupportFrames
from .masktrack_tracker import MaskTrackTracker
from .roi_heads import VideoROIHeads
from .track_head import build_track_head
from .video_rcnn import VideoRCNN

__all__ = ["MaskTrackRCNN", "MaskTrackROIHeads"]


@ROI_HEADS_REGISTRY.register()
class MaskTrackROIHeads(VideoROIHeads):
    """
    :class:`VideoROIHeads` plus MaskTrack R-CNN's track branch (``self.track_head``, built by
    ``MODEL.ROI_TRACK_HEAD.NAME``), which pools its own RoIs with plain RoIAlign.

    - Training (:meth:`forward` with ``targets`` and ``reference``): the box and mask losses of
      :class:`VideoROIHeads`, plus ``loss_track``: the track head samples its own RoIs from the
      RPN proposals and the target's ground truth (``MODEL.ROI_TRACK_HEAD.BATCH_SIZE_PER_IMAGE``
      at most, ``POSITIVE_FRACTION`` foreground at IoU ``IOU_THRESHOLD``) and matches them
      against the reference frame's ground-truth boxes, embedded from the reference's own maps.
    - Inference: each detection also gets ``track_embeddings`` ``[N, D]``, the track head's
      embedding of its box (in the network input's coordinates, on the target frame's maps).
    """

    @configurable
    def __init__(self, *, track_head: torch.nn.Module, **kwargs):
        """
        Args:
            track_head: a track head with ``embed``, ``sample_targets``, ``forward`` and
                ``losses`` (see :class:`~.track_head.MaskTrackHead`).
            kwargs: arguments of :class:`VideoROIHeads`.
        """
        super().__init__(**kwargs)
        self.track_head = track_head

    @classmethod
    def from_config(cls, cfg, input_shape):
        if not cfg.MODEL.MASK_ON:
            raise ValueError("MaskTrackROIHeads segments what it tracks: set MODEL.MASK_ON: True")
        if cfg.MODEL.KEYPOINT_ON:
            raise ValueError("MaskTrackROIHeads has no keypoint branch: set MODEL.KEYPOINT_ON: False")
        ret = super().from_config(cfg, input_shape)
        ret["track_head"] = build_track_head(cfg, input_shape)
        return ret

    def forward(
        self,
        images: Optional[ImageList],
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
        supports: Optional[SupportFrames] = None,
        reference: Optional[ReferenceFrames] = None,
    ):
        """
        :meth:`VideoROIHeads.forward`; in training also the track loss, which needs the
        ``reference`` frame of each image (``targets`` need ``gt_track_ids``).
        """
        if not self.training:
            # Embeddings come with the masks, in forward_with_given_boxes.
            return super().forward(images, features, proposals, targets, supports)
        if reference is None:
            raise ValueError("MaskTrackROIHeads needs the reference frame of each image in training")
        if len(reference.instances) != len(proposals):
            raise ValueError(
                f"MaskTrackROIHeads: {len(proposals)} target images but {len(reference.instances)} reference frames"
            )
        sampled, losses = super().forward(images, features, proposals, targets, supports)
        boxes, match_labels = self.track_head.sample_targets(proposals, targets, reference.instances)
        ref_boxes = [r.gt_boxes for r in reference.instances]
        logits = self.track_head(features, boxes, reference.features, ref_boxes)
        losses.update(self.track_head.losses(logits, match_labels))
        return sampled, losses

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances], supports: Optional[SupportFrames] = None
    ) -> List[Instances]:
        """Masks (see :meth:`VideoROIHeads.forward_with_given_boxes`) and track embeddings."""
        instances = super().forward_with_given_boxes(features, instances, supports)
        embeddings = self.track_head.embed(features, [x.pred_boxes for x in instances])
        for x, e in zip(instances, embeddings):
            x.track_embeddings = e
        return instances


@META_ARCH_REGISTRY.register()
class MaskTrackRCNN(VideoRCNN):
    """
    MaskTrack R-CNN (with :class:`MaskTrackROIHeads`; with ``MODEL.TEMPORAL_ROI_ALIGN.ENABLED``,
    MaskTrack R-CNN + Temporal RoI Align).

    Training inputs: :class:`VideoRCNN`'s (``"supports"`` may be empty when the heads use no
    support) plus ``"reference"``: ``{"image", "instances"}`` of another frame of the same video,
    with the target's transforms; its ``instances`` need ``gt_boxes`` and ``gt_track_ids``
    (``VISDatasetMapper`` makes them). Targets, supports and references go through the backbone
    in one pass; the reference frames' maps keep their gradient, as in mmtrack.

    Inference outputs: Detectron2's Mask R-CNN outputs (``pred_boxes``, ``scores``,
    ``pred_classes``, ``pred_masks`` [N, H, W] bool at the original resolution after
    postprocessing) plus ``track_embeddings`` [N, D] and ``pred_track_ids`` [N] int64.

    **State across calls** (the only one besides the feature cache): ``self.tracker`` remembers
    the tracks of the current video. Frames of a video must come in order (as
    :class:`~temporal_roi_align.data.VideoInferenceSampler` and ``VideoPredictor`` give them); the
    tracker restarts (ids from 0) at an input whose ``video_id`` differs from the previous one's,
    whose ``frame_id`` is not larger than the previous one's, or that has no ``video_id`` (each
    such input is a video of its own), and whenever the model switches between train and eval.
    """

    @configurable
    def __init__(self, *, tracker: MaskTrackTracker, **kwargs):
        """
        Args:
            tracker: the online tracker (owned by the model, see the class docstring).
            kwargs: arguments of :class:`VideoRCNN`.
        """
        super().__init__(**kwargs)
        self.tracker = tracker
        self._tracked_frame = None  # (video_id, frame_id) of the tracker's last frame
        if not isinstance(self.roi_heads, MaskTrackROIHeads):
            raise ValueError(
                f"MaskTrackRCNN needs MODEL.ROI_HEADS.NAME: MaskTrackROIHeads, got {type(self.roi_heads).__name__}"
            )

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["tracker"] = MaskTrackTracker(cfg)
        return ret

    def train(self, mode: bool = True):
        # VideoRCNN.train also clears the feature cache.
        self.tracker.reset()
        self._tracked_frame = None
        return super().train(mode)

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        missing = [i for i, x in enumerate(batched_inputs) if "reference" not in x]
        if missing:
            names = [batched_inputs[i].get("file_name", i) for i in missing[:3]]
            raise ValueError(
                f"MaskTrackRCNN training needs a 'reference' frame in every input, missing in {names} "
                '(the training mapper must be VISDatasetMapper: INPUT.TRAIN_MAPPER "VISDatasetMapper")'
            )
        batch = self._frame_batch(batched_inputs, with_supports=self.needs_supports, with_references=True)
        maps = self.backbone(batch.images.tensor)
        images, features = batch.images_of(batch.targets), batch.maps_of(maps, batch.targets)
        supports = self._support_frames(batch, maps) if self.needs_supports else None
        reference = ReferenceFrames(
            batch.maps_of(maps, batch.references), [x["reference"]["instances"].to(self.device) for x in batched_inputs]
        )
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances, supports, reference)
        return {**detector_losses, **proposal_losses}

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """:meth:`VideoRCNN.inference`, then the tracker on each input in order (see the class
        docstring), on the postprocessed boxes when ``do_postprocess``."""
        results = super().inference(batched_inputs, detected_instances, do_postprocess)
        for x, result in zip(batched_inputs, results):
            instances = result["instances"] if do_postprocess else result
            self._start_video_if_new(x)
            instances.pred_track_ids = self.tracker.update(instances, instances.track_embeddings)
        return results

    def _start_video_if_new(self, frame: Dict) -> None:
        video_id, frame_id = frame.get("video_id"), frame.get("frame_id")
        previous = self._tracked_frame
        same_video = video_id is not None and previous is not None and previous[0] == video_id
        if not (same_video and frame_id is not None and previous[1] is not None and frame_id > previous[1]):
            self.tracker.reset()
        self._tracked_frame = None if video_id is None else (video_id, frame_id)
