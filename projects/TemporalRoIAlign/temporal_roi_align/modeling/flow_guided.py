"""
Flow-guided video detectors over VideoRCNN's frame groups, as mmtrack 0.14 builds, trains and
tests them (its ``FGFA`` and ``DFF`` video detectors around ``faster_rcnn_r50_dc5``):

- :class:`FgfaRCNN`: Flow-Guided Feature Aggregation (Zhu et al., ICCV 2017).
- :class:`DffRCNN`: Deep Feature Flow (Zhu et al., CVPR 2017).

Both warp the backbone's output that the RPN and the ROI heads read (``res5_reduced``: mmtrack's
neck output, conv5 reduced to 512 channels) with the flow of :class:`FlowNetSimple`
(``flow[p]``: from the frame being detected, at ``p``, to the other frame), and run the RPN and
the ROI heads on the warped (DFF) or aggregated (FGFA) map only. See docs/fgfa_dff.md.
"""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList, Instances

from ..layers.flow_warp import FLOW_WARP_CONVENTIONS, flow_warp, resize_flow
from .feature_cache import FeatureCache
from .fgfa_aggregator import FgfaAggregator
from .flownet import FlowNetSimple
from .frame_group import CachedFrame, FrameBatch, SupportFrames
from .roi_heads import VideoROIHeads
from .video_rcnn import VideoRCNN

__all__ = ["FlowGuidedRCNN", "FgfaRCNN", "DffRCNN"]


def _frame_name(frame: Dict) -> str:
    return str(frame.get("file_name", frame.get("frame_id", "<frame>")))


class FlowGuidedRCNN(VideoRCNN):
    """
    What FGFA and DFF share: the flow network, the warping, and :class:`VideoRCNN`'s road for
    training and inference, in which subclasses only say which features the RPN and the ROI heads
    see (:meth:`_training_features`, :meth:`_inference_features`); at test the RPN runs on those
    features too, not on each frame's own.

    ``flow_features``: the backbone outputs that are warped, those the RPN and the ROI heads
    read. The feature cache keeps only these of each frame, and no proposals (the RPN runs on
    the warped / aggregated map, never on a frame's own): for the DC5 configs 512 channels at
    stride 16 per frame, not the ResNet's other outputs. Images are not cached: the flow network
    reads them from the inputs (each frame dict holds its image, as the mapper and
    :class:`VideoPredictor` give them).
    """

    @configurable
    def __init__(self, *, flow_net: FlowNetSimple, warp_convention: str = "exact", **kwargs):
        """
        Args:
            flow_net: the flow network.
            warp_convention: how :func:`flow_warp` normalises positions, one of
                :data:`FLOW_WARP_CONVENTIONS` ("toolbox" for mmtrack's checkpoints).
            kwargs: arguments of :class:`VideoRCNN`.
        """
        super().__init__(**kwargs)
        if warp_convention not in FLOW_WARP_CONVENTIONS:
            raise ValueError(
                f"MODEL.FLOW_NET.WARP_CONVENTION must be one of {FLOW_WARP_CONVENTIONS}, got {warp_convention!r}"
            )
        if self.proposal_generator is None:
            raise ValueError(f"{type(self).__name__} needs an RPN (MODEL.PROPOSAL_GENERATOR.NAME: RPN)")
        if not isinstance(self.roi_heads, VideoROIHeads):
            raise ValueError(
                f"{type(self).__name__} needs MODEL.ROI_HEADS.NAME: VideoROIHeads, got {type(self.roi_heads).__name__}"
            )
        if self.needs_support_proposals:
            raise ValueError(
                f"{type(self).__name__}: the ROI heads use support proposals (SELSA), which a flow-guided "
                "model does not compute (its RPN runs on the target's warped or aggregated map only)"
            )
        self.flow_net = flow_net
        self.warp_convention = warp_convention
        # The RPN and the heads see maps made from the supports, whether or not the heads use supports.
        self.needs_supports = True
        names = list(self.proposal_generator.in_features) + list(self.roi_heads.in_features)
        self.flow_features = tuple(dict.fromkeys(names))

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret.update(flow_net=FlowNetSimple(cfg), warp_convention=cfg.MODEL.FLOW_NET.WARP_CONVENTION)
        return ret

    @staticmethod
    def _flow_feature_shape(cfg, backbone) -> ShapeSpec:
        """The shape of the warped features (RPN and ROI heads inputs), which must all be alike."""
        shapes = backbone.output_shape()
        names = list(dict.fromkeys(list(cfg.MODEL.RPN.IN_FEATURES) + list(cfg.MODEL.ROI_HEADS.IN_FEATURES)))
        channels = {shapes[name].channels for name in names if name in shapes}
        if len(channels) != 1:
            raise ValueError(
                f"the RPN and ROI heads' features {names} must be backbone outputs with the same channels "
                f"(they are warped and aggregated alike), got {[shapes.get(n) for n in names]}"
            )
        return shapes[names[0]]

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        if detected_instances is not None:
            raise ValueError(f"{type(self).__name__}.inference does not take detected_instances")
        return super().inference(batched_inputs, None, do_postprocess)

    def _inference_one(self, target: Dict) -> Instances:
        images, features, supports = self._inference_features(target)
        proposals, _ = self.proposal_generator(images, features, None)
        instances, _ = self.roi_heads(images, features, proposals, None, supports)
        return instances[0]

    def _training_features(self, batched_inputs: List[Dict]) -> Tuple[ImageList, Dict, Optional[SupportFrames]]:
        """The target images, the features the RPN and ROI heads see (``[N, C, H, W]`` per name
        of :attr:`flow_features`), and the heads' :class:`SupportFrames` (None unless they use
        supports)."""
        raise NotImplementedError

    def _inference_features(self, target: Dict) -> Tuple[ImageList, Dict, Optional[SupportFrames]]:
        """:meth:`_training_features` of one target frame at test, through the feature cache."""
        raise NotImplementedError

    def _compute_frame_outputs(self, batch: ImageList) -> List[CachedFrame]:
        # The backbone alone; only the warped features are kept (class docstring).
        features = self.backbone(batch.tensor)
        return [CachedFrame({k: features[k][i] for k in self.flow_features}, None) for i in range(len(batch))]

    def _warp_supports(self, batch: FrameBatch, support_maps: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``support_maps`` (``[sum T_i, C, h, w]`` per name of :attr:`flow_features`, the supports of
        ``batch``) warped to their targets by the flow from each target image to its support image."""
        if not sum(batch.num_supports):
            return support_maps
        owners = [i for i, count in enumerate(batch.num_supports) for _ in range(count)]
        images = batch.images
        flows = self.flow_net(
            images.tensor[owners], images.tensor[batch.supports], [images.image_sizes[i] for i in owners]
        )
        return self._warp(support_maps, flows)

    def _warp(self, features: Dict[str, torch.Tensor], flows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``features[name]`` (``[N, C, h, w]``) warped by ``flows`` (``[N, 2, H, W]`` at image
        resolution, from :attr:`flow_net`), for each name of :attr:`flow_features`."""
        return {
            name: flow_warp(features[name], resize_flow(flows, features[name].shape[-2:]), self.warp_convention)
            for name in self.flow_features
        }


@META_ARCH_REGISTRY.register()
class FgfaRCNN(FlowGuidedRCNN):
    """
    FGFA: the target frame's features are replaced by a per-location weighted sum of the support
    frames' features warped to the target frame (:class:`FgfaAggregator`, the weights from the
    cosine similarity of embeddings with the target's), and the RPN and ROI heads of the
    single-frame detector run on that sum. Flows go from the target image to each support image.

    - **Test** (mmtrack's ``extract_feats`` with a fixed stride): the supports of the test rule
      (``stride``, 30 supports 1 apart: frames t-15 .. t+15 clamped to the video) are warped; the
      target's own unwarped features take the middle slot (index ``T // 2`` of the ``T + 1``
      aggregated maps, mmtrack's ``num_left_ref_imgs``); all ``T + 1`` are aggregated.
    - **Training** (mmtrack's ``forward_train``): one backbone pass over the targets and their
      supports (``bilateral``: one in [t-9, t-1], one in [t+1, t+9]); only the warped supports
      are aggregated, the target serving as the embedding's reference; with
      ``train_with_target`` (``MODEL.FGFA.TRAIN_WITH_TARGET``) the target's own features are
      aggregated too, as at test and in the paper's Eq. 1 over all frames. DET images have copies
      of themselves as supports (their flow is what the network predicts for a pair of equal
      images; nothing is special-cased, as in mmtrack).

    With Temporal RoI Align (``MODEL.TEMPORAL_ROI_ALIGN.ENABLED``; no public toolbox offers
    this combination), the box pooler pools the target's RoIs from the aggregated map and finds
    their most similar locations in the supports' *unwarped* maps: TRoI searches the whole
    support map for each RoI cell, so warping cannot bring better candidates, and the warped maps
    repeat border features and resample the rest bilinearly (information lost). The support frames
    are those of the one support rule (the 30 neighbours at test, which makes TRoI's attention
    over 31 frames the costly part).
    """

    @configurable
    def __init__(self, *, aggregator: FgfaAggregator, train_with_target: bool = False, **kwargs):
        """
        Args:
            aggregator: FGFA's adaptive weights, shared by every name of :attr:`flow_features`
                (as mmtrack's one aggregator for all levels).
            train_with_target: also aggregate the target's own features in training.
            kwargs: arguments of :class:`FlowGuidedRCNN`.
        """
        super().__init__(**kwargs)
        self.aggregator = aggregator
        self.train_with_target = train_with_target

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        shape = cls._flow_feature_shape(cfg, ret["backbone"])
        ret.update(aggregator=FgfaAggregator(cfg, shape), train_with_target=cfg.MODEL.FGFA.TRAIN_WITH_TARGET)
        return ret

    def _training_features(self, batched_inputs):
        for x in batched_inputs:
            if not x.get("supports") and not self.train_with_target:
                raise ValueError(
                    f"FgfaRCNN: training frame {_frame_name(x)} has no support frame; FGFA aggregates the "
                    "warped supports (INPUT.SUPPORT.NUM_TRAIN >= 1)"
                )
        batch = self._frame_batch(batched_inputs)
        maps = self.backbone(batch.images.tensor)
        maps = {name: maps[name] for name in self.flow_features}
        target_maps, support_maps = batch.maps_of(maps, batch.targets), batch.maps_of(maps, batch.supports)
        warped = self._warp_supports(batch, support_maps)
        features = {}
        for name in self.flow_features:
            aggregated = []
            for target, frames in zip(target_maps[name], warped[name].split(batch.num_supports)):
                target = target[None]
                if self.train_with_target:
                    frames = torch.cat([target, frames])
                aggregated.append(self.aggregator(target, frames))
            features[name] = torch.cat(aggregated)
        supports = batch.support_frames(support_maps) if self.roi_heads.needs_support_features else None
        return batch.images_of(batch.targets), features, supports

    def _inference_features(self, target):
        target_maps, _, supports = self._inference_frame_group(target)
        batch = self._frame_batch([target])
        warped = self._warp_supports(batch, supports.features[0])
        middle = batch.num_supports[0] // 2
        features = {
            name: self.aggregator(
                target_maps[name], torch.cat([warped[name][:middle], target_maps[name], warped[name][middle:]])
            )
            for name in self.flow_features
        }
        return batch.images_of(batch.targets), features, supports if self.roi_heads.needs_support_features else None


@META_ARCH_REGISTRY.register()
class DffRCNN(FlowGuidedRCNN):
    """
    DFF: the backbone runs on key frames only; any other frame's features are its key frame's
    warped by the flow from that frame to the key frame, and the RPN and ROI heads run on them.

    - **Test** (mmtrack's ``extract_feats``): the one support of each frame is its key frame
      (the ``key_frame`` rule: frames 0, K, 2K, ... with K = ``VIDEO.KEY_FRAME_INTERVAL``, 10);
      a key frame (its support is itself) goes through the backbone and its features are cached,
      so the backbone runs once per key frame and never on the other frames.
    - **Training** (mmtrack's ``forward_train``): one support per target (``random_with_target``
      within +-9, the target itself among the candidates); the backbone runs on the supports
      only, whose features are warped by the flow from the target to the support. On still
      images (``video_length`` 1: DET images, whose support is a copy of themselves) the
      support's features are used unwarped, the flow multiplied by 0 (mmtrack's
      ``0 * warped + features``) so that every parameter takes part in every iteration.

    The ROI heads see no supports: TRoI and SELSA heads are refused.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.roi_heads.needs_support_features:
            raise ValueError("DffRCNN: the ROI heads use support frames (TRoI or SELSA), which DFF does not give them")

    def _training_features(self, batched_inputs):
        for x in batched_inputs:
            if len(x.get("supports", [])) != 1:
                raise ValueError(
                    f"DffRCNN: training frame {_frame_name(x)} has {len(x.get('supports', []))} support frames; "
                    "DFF trains with one (INPUT.SUPPORT.NUM_TRAIN 1)"
                )
        batch = self._frame_batch(batched_inputs)
        support_maps = self.backbone(batch.images.tensor[batch.supports])
        warped = self._warp_supports(batch, support_maps)
        still = torch.tensor([float(x.get("video_length") == 1) for x in batched_inputs], device=self.device)
        still = still.view(-1, 1, 1, 1)
        features = {k: v * (1 - still) + support_maps[k] * still for k, v in warped.items()}
        return batch.images_of(batch.targets), features, None

    def _inference_features(self, target):
        supports = target.get("supports", [])
        if len(supports) > 1:
            raise ValueError(
                f"DffRCNN: frame {_frame_name(target)} has {len(supports)} support frames; DFF takes its key "
                "frame alone (INPUT.SUPPORT.TEST_MODE key_frame, NUM_TEST 1)"
            )
        self._check_frame_sizes(target, supports)
        key = supports[0] if supports else target
        key_frame = self.frame_outputs([key])[0]
        key_maps = {k: v[None] for k, v in key_frame.features.items()}
        if self._same_frame(key, target):
            return self.preprocess_image([target]), key_maps, None
        batch = self._frame_batch([target])
        return batch.images_of(batch.targets), self._warp_supports(batch, key_maps), None

    @staticmethod
    def _same_frame(a: Dict, b: Dict) -> bool:
        """Whether two inputs are the same frame: the same dict, or the same (video, frame) ids."""
        key = FeatureCache.key(a)
        return a is b or (key is not None and key == FeatureCache.key(b))
