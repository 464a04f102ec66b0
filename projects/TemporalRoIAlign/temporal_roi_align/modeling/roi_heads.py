from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, select_foreground_proposals
from detectron2.structures import ImageList, Instances

from .frame_group import SupportFrames
from .poolers import TemporalROIPooler
from .selsa import SelsaBoxHead

__all__ = ["VideoROIHeads"]


@ROI_HEADS_REGISTRY.register()
class VideoROIHeads(StandardROIHeads):
    """
    StandardROIHeads whose box branch can see the support frames of the target frame, passed to
    :meth:`forward` as a :class:`SupportFrames`.

    - ``MODEL.TEMPORAL_ROI_ALIGN.ENABLED``: the box pooler is a :class:`TemporalROIPooler`
      (target RoIs pooled from the target map, enriched from the support maps).
    - ``ROI_BOX_HEAD.NAME: SelsaBoxHead``: the FC head attends to the proposals of the
      support frames (SELSA), pooled from the support maps with plain ROIAlign.
    Both on is SELSA+TRoI; both off is the single-frame detector.
    - ``MODEL.MASK_ON`` with ``MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER``: the mask pooler is a
      :class:`TemporalROIPooler` too (its own attention, the same supports).
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.needs_support_proposals = isinstance(self.box_head, SelsaBoxHead)
        self.needs_support_features = (
            isinstance(self.box_pooler, TemporalROIPooler)
            or isinstance(getattr(self, "mask_pooler", None), TemporalROIPooler)
            or self.needs_support_proposals
        )

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
            raise ValueError("VideoROIHeads does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES")
        ret = super()._init_box_head(cfg, input_shape)
        if cfg.MODEL.TEMPORAL_ROI_ALIGN.ENABLED:
            ret["box_pooler"] = TemporalROIPooler(cfg, input_shape, "ROI_BOX_HEAD")
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        ret = super()._init_mask_head(cfg, input_shape)
        tra = cfg.MODEL.TEMPORAL_ROI_ALIGN
        if cfg.MODEL.MASK_ON and tra.ENABLED and tra.MASK_POOLER:
            if not ret.get("mask_pooler"):
                raise ValueError("MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER needs a mask head on pooled RoI features")
            ret["mask_pooler"] = TemporalROIPooler(cfg, input_shape, "ROI_MASK_HEAD")
        return ret

    def forward(
        self,
        images: Optional[ImageList],
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
        supports: Optional[SupportFrames] = None,
    ):
        """
        :meth:`StandardROIHeads.forward` with the support frames of each image (``images`` is
        unused, as there). ``supports`` may be None only when the heads use no support.
        """
        if self.needs_support_features and supports is None:
            raise ValueError(f"{type(self).__name__} with this config needs the support frames")
        del images
        if self.training:
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals, supports)
            losses.update(self._forward_mask(features, proposals, supports))
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        pred_instances = self._forward_box(features, proposals, supports)
        return self.forward_with_given_boxes(features, pred_instances, supports), {}

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances], supports: Optional[SupportFrames] = None
    ) -> List[Instances]:
        """:meth:`StandardROIHeads.forward_with_given_boxes` whose masks may use the supports."""
        assert not self.training
        instances = self._forward_mask(features, instances, supports)
        return self._forward_keypoint(features, instances)

    def _forward_mask(
        self, features: Dict[str, torch.Tensor], instances: List[Instances], supports: Optional[SupportFrames] = None
    ):
        """:meth:`StandardROIHeads._forward_mask`, the RoIs pooled with the supports when the
        mask pooler is a :class:`TemporalROIPooler` and ``supports`` are given."""
        if not (self.mask_on and isinstance(self.mask_pooler, TemporalROIPooler) and supports is not None):
            return super()._forward_mask(features, instances)
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
        boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
        maps = [features[f] for f in self.mask_in_features]
        mask_features = self.mask_pooler(maps, boxes, supports.maps(self.mask_in_features))
        return self.mask_head(mask_features, instances)

    def _forward_box(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances], supports: Optional[SupportFrames] = None
    ):
        target_maps = [features[f] for f in self.box_in_features]
        boxes = [p.proposal_boxes for p in proposals]
        if isinstance(self.box_pooler, TemporalROIPooler) and supports is not None:
            box_features = self.box_pooler(target_maps, boxes, supports.maps(self.box_in_features))
        else:
            box_features = self.box_pooler(target_maps, boxes)
        if self.needs_support_proposals:
            support_box_features, num_support = self._pool_support_proposals(supports)
            box_features = self.box_head(box_features, support_box_features, [len(b) for b in boxes], num_support)
        else:
            box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        del box_features
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances

    def _pool_support_proposals(self, supports: SupportFrames) -> Tuple[torch.Tensor, List[int]]:
        """ROIAlign (the box pooler without supports) of each support frame's proposals on its
        own maps; returns the RoI features of all images' supports, in (image, frame) order, and
        how many belong to each image."""
        num_support = [sum(len(p) for p in per_image) for per_image in supports.proposals]
        boxes = [p.proposal_boxes for per_image in supports.proposals for p in per_image]
        maps = [torch.cat(level) for level in supports.maps(self.box_in_features)]
        return self.box_pooler(maps, boxes), num_support
