from typing import Dict, List, Optional

import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import ImageList, Instances

from .poolers import TemporalROIPooler
from .selsa import SelsaBoxHead

__all__ = ["VideoROIHeads"]


@ROI_HEADS_REGISTRY.register()
class VideoROIHeads(StandardROIHeads):
    """
    StandardROIHeads whose box branch can see the support frames of the target frame.

    - ``MODEL.TEMPORAL_ROI_ALIGN.ENABLED``: the box pooler is a :class:`TemporalROIPooler`
      (target RoIs pooled from the target map, enriched from the support maps).
    - ``ROI_BOX_HEAD.NAME: SelsaBoxHead``: the FC head attends to the proposals of the
      support frames (SELSA), pooled from the support maps with plain ROIAlign.
    Both on is SELSA+TRoI; both off is the single-frame detector.
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
            raise ValueError("VideoROIHeads does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES")
        ret = super()._init_box_head(cfg, input_shape)
        if cfg.MODEL.TEMPORAL_ROI_ALIGN.ENABLED:
            plain: ROIPooler = ret["box_pooler"]
            tra = cfg.MODEL.TEMPORAL_ROI_ALIGN
            ret["box_pooler"] = TemporalROIPooler(
                output_size=plain.output_size,
                scales=[1.0 / input_shape[f].stride for f in cfg.MODEL.ROI_HEADS.IN_FEATURES],
                sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
                channels=input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels,
                topk=tra.TOPK,
                num_attention_blocks=tra.NUM_ATTENTION_BLOCKS,
                embed=tra.EMBED,
                chunk_size=tra.CHUNK_SIZE,
            )
        return ret

    @property
    def uses_support_features(self) -> bool:
        return isinstance(self.box_pooler, TemporalROIPooler) or self.uses_support_proposals

    @property
    def uses_support_proposals(self) -> bool:
        return isinstance(self.box_head, SelsaBoxHead)

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
        support_features: Optional[Dict[str, object]] = None,
        support_proposals: Optional[List[List[Instances]]] = None,
    ):
        """
        Same as :meth:`StandardROIHeads.forward`, plus:

        Args:
            support_features: feature name -> the support maps of each image, either a tensor
                [N, T, C, H, W] or a sequence of T tensors [N, C, H, W].
            support_proposals: for each image, the proposals of each of its T support frames.
        """
        if self.uses_support_features and support_features is None:
            raise ValueError(f"{type(self).__name__} with this config needs the support frames' features")
        self._support_inputs = (support_features, support_proposals)
        try:
            return super().forward(images, features, proposals, targets)
        finally:
            del self._support_inputs

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        support_features, support_proposals = self._support_inputs
        target_maps = [features[f] for f in self.box_in_features]
        boxes = [p.proposal_boxes for p in proposals]
        if isinstance(self.box_pooler, TemporalROIPooler) and support_features is not None:
            box_features = self.box_pooler(
                target_maps, boxes, [support_features[f] for f in self.box_in_features]
            )
        else:
            box_features = self.box_pooler(target_maps, boxes)
        if self.uses_support_proposals:
            support_box_features, num_support = self._pool_support_boxes(
                support_features, support_proposals, box_features
            )
            box_features = self.box_head(box_features, support_box_features, [len(b) for b in boxes], num_support)
        else:
            box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        del box_features
        if self.training:
            return self.box_predictor.losses(predictions, proposals)
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances

    def _pool_support_boxes(self, support_features, support_proposals, target_box_features):
        """ROIAlign (the pooler without supports) of each support frame's proposals on its own map."""
        num_support = [sum(len(p) for p in per_image) for per_image in support_proposals]
        flat = [p for per_image in support_proposals for p in per_image]
        if not flat:  # no support frame at all
            return target_box_features.new_zeros((0, *target_box_features.shape[1:])), num_support
        maps = [_frames_first(support_features[f]) for f in self.box_in_features]
        return self.box_pooler(maps, [p.proposal_boxes for p in flat]), num_support


def _frames_first(maps) -> torch.Tensor:
    """[N, T, C, H, W] tensor or T x [N, C, H, W] sequence -> [N*T, C, H, W] in (image, frame) order."""
    if isinstance(maps, torch.Tensor):
        return maps.flatten(0, 1)
    return torch.stack(list(maps), dim=1).flatten(0, 1)
