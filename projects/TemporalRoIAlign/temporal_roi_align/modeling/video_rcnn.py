import contextlib
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances

from .feature_cache import CACHE_DTYPES, FeatureCache
from .frame_group import CachedFrame, FrameBatch, SupportFrames
from .roi_heads import VideoROIHeads
from .temporal_block import TemporalAdaptiveBlock

__all__ = ["VideoRCNN"]


@contextlib.contextmanager
def _inference_mode_of(module: torch.nn.Module):
    was_training = module.training
    module.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


@META_ARCH_REGISTRY.register()
class VideoRCNN(GeneralizedRCNN):
    """
    Faster R-CNN over frame groups: a target frame and its support frames from the same video
    (each input dict has ``"supports"``, a list of dicts with ``"image"``, ``"video_id"`` and
    ``"frame_id"``; see :class:`VideoDatasetMapper`).

    The backbone runs once per frame. The RPN proposes on the target frame, and on the support
    frames when the ROI heads use support proposals (SELSA). The ROI heads (a
    :class:`VideoROIHeads`) receive the supports as a :class:`SupportFrames` argument. With
    other ROI heads, or heads that use no support (the single-frame detector), the model is
    Detectron2's :class:`GeneralizedRCNN` and ignores supports.

    In inference, each frame's backbone features and proposals are cached (an LRU of
    ``VIDEO.CACHE_FRAMES`` frames, features kept as ``VIDEO.CACHE_DTYPE``, keyed by the frame's
    ``(video_id, frame_id)`` and image size), so visiting a video's frames in order costs about
    one backbone and one RPN pass per frame.

    Subclasses change what the RPN and the ROI heads see by overriding :meth:`_training_features`
    (a training batch) and :meth:`_inference_one` (one target frame at test), building on
    :meth:`_frame_batch` (one backbone batch of targets, supports and references) and
    :meth:`_inference_frame_group` (a target and its supports through the cache).
    """

    @configurable
    def __init__(
        self,
        *,
        cache_frames: int = 64,
        cache_dtype: torch.dtype = torch.float32,
        support_proposals_train: int = 256,
        support_proposals_test: int = 300,
        temporal_block: Optional[TemporalAdaptiveBlock] = None,
        **kwargs,
    ):
        """
        Args:
            cache_frames, cache_dtype: the inference feature cache (see :class:`FeatureCache`).
            support_proposals_train, support_proposals_test: top RPN proposals of each support
                frame given to the ROI heads (SELSA).
            temporal_block: applied to the target's and the supports' maps before the ROI
                heads (``MODEL.TAM``); None: none.
            kwargs: arguments of :class:`GeneralizedRCNN`.
        """
        super().__init__(**kwargs)
        self.feature_cache = FeatureCache(cache_frames, cache_dtype)
        self.support_proposals_train = support_proposals_train
        self.support_proposals_test = support_proposals_test
        self.temporal_block = temporal_block
        video_heads = isinstance(self.roi_heads, VideoROIHeads)
        # Without supports the model is GeneralizedRCNN (forward, inference).
        self.needs_supports = (video_heads and self.roi_heads.needs_support_features) or temporal_block is not None
        self.needs_support_proposals = video_heads and self.roi_heads.needs_support_proposals

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        if cfg.VIDEO.CACHE_DTYPE not in CACHE_DTYPES:
            raise ValueError(f"VIDEO.CACHE_DTYPE must be one of {sorted(CACHE_DTYPES)}, got {cfg.VIDEO.CACHE_DTYPE!r}")
        ret.update(
            cache_frames=cfg.VIDEO.CACHE_FRAMES,
            cache_dtype=CACHE_DTYPES[cfg.VIDEO.CACHE_DTYPE],
            support_proposals_train=cfg.MODEL.SELSA.SUPPORT_PROPOSALS_TRAIN,
            support_proposals_test=cfg.MODEL.SELSA.SUPPORT_PROPOSALS_TEST,
            temporal_block=_build_temporal_block(cfg, ret["backbone"].output_shape()),
        )
        return ret

    def train(self, mode: bool = True):
        # Cached features are stale once the weights may change.
        self.feature_cache.clear()
        return super().train(mode)

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if not self.needs_supports:
            return super().forward(batched_inputs)
        images, features, supports = self._training_features(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances, supports)
        return {**detector_losses, **proposal_losses}

    def _training_features(self, batched_inputs: List[Dict]) -> Tuple[ImageList, Dict, Optional[SupportFrames]]:
        """The target images, the maps the RPN and the ROI heads see (``[N, C, H, W]`` per name) and
        the heads' :class:`SupportFrames`, from one backbone pass over the frame groups."""
        batch = self._frame_batch(batched_inputs)
        maps = self.backbone(batch.images.tensor)
        features, supports = batch.maps_of(maps, batch.targets), self._support_frames(batch, maps)
        if self.temporal_block is not None:
            features, supports = self.temporal_block(features, supports)
        return batch.images_of(batch.targets), features, supports

    def _frame_batch(
        self, batched_inputs: List[Dict], with_supports: bool = True, with_references: bool = False
    ) -> FrameBatch:
        """The target frames, their ``"supports"`` (unless ``with_supports`` is False) and their
        ``"reference"`` frames (with ``with_references``), normalised and padded together."""
        supports = [x.get("supports", []) if with_supports else [] for x in batched_inputs]
        return FrameBatch.stack(batched_inputs, supports, with_references, self.preprocess_image)

    def _support_frames(self, batch: FrameBatch, maps: Dict[str, torch.Tensor]) -> SupportFrames:
        """The supports' part of ``maps`` (the backbone's on ``batch``), split per target, with
        their top RPN proposals when the ROI heads use them."""
        support_maps = batch.maps_of(maps, batch.supports)
        proposals = None
        if self.needs_support_proposals:
            images = batch.images_of(batch.supports)
            proposals = self._frame_proposals(images, support_maps, self.support_proposals_train)
        return batch.support_frames(support_maps, proposals)

    def _frame_proposals(self, images: ImageList, features: Dict[str, torch.Tensor], keep: int) -> List[Instances]:
        """The top ``keep`` RPN proposals of each frame, as at test time and without gradient."""
        with _inference_mode_of(self.proposal_generator):
            proposals, _ = self.proposal_generator(images, features, None)
        return [p[:keep] for p in proposals]

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        if not self.needs_supports or detected_instances is not None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        results = [self._inference_one(x) for x in batched_inputs]
        if do_postprocess:
            image_sizes = [tuple(x["image"].shape[-2:]) for x in batched_inputs]
            return GeneralizedRCNN._postprocess(results, batched_inputs, image_sizes)
        return results

    def _inference_one(self, target: Dict) -> Instances:
        features, proposals, supports = self._inference_frame_group(target)
        if self.temporal_block is not None:
            features, supports = self.temporal_block(features, supports)
        results, _ = self.roi_heads(None, features, [proposals], None, supports)
        return results[0]

    def _inference_frame_group(
        self, target: Dict
    ) -> Tuple[Dict[str, torch.Tensor], Optional[Instances], SupportFrames]:
        """The target frame's backbone maps (``[1, C, H, W]`` per name) and proposals, and its
        supports, through the feature cache (:meth:`frame_outputs`)."""
        supports = target.get("supports", [])
        self._check_frame_sizes(target, supports)
        target_frame, *support_frames = self.frame_outputs([target] + supports)
        features = {k: v[None] for k, v in target_frame.features.items()}
        support_features = {
            k: torch.stack([f.features[k] for f in support_frames]) if support_frames else v[:0]
            for k, v in features.items()
        }
        support_proposals = None
        if self.needs_support_proposals:
            support_proposals = [[f.proposals[: self.support_proposals_test] for f in support_frames]]
        return features, target_frame.proposals, SupportFrames([support_features], support_proposals)

    @staticmethod
    def _check_frame_sizes(target: Dict, supports: List[Dict]) -> None:
        """Raises ValueError naming the frames unless every support image has the target's size."""
        for support in supports:
            if support["image"].shape != target["image"].shape:
                raise ValueError(
                    f"support frame {support.get('file_name', support.get('frame_id'))} is "
                    f"{tuple(support['image'].shape)} but target frame "
                    f"{target.get('file_name', target.get('frame_id'))} is {tuple(target['image'].shape)}"
                )

    def frame_outputs(self, frames: List[Dict]) -> List[CachedFrame]:
        """Backbone features ([C, H, W] per name) and RPN proposals of each frame, through the
        feature cache; frames not in it are computed in batches of equal size."""
        keys = [FeatureCache.key(f) for f in frames]
        pending = OrderedDict()
        for key, frame in zip(keys, frames):
            if key is None or key not in self.feature_cache:
                pending.setdefault(key if key is not None else id(frame), frame)
        by_size = OrderedDict()
        for key, frame in pending.items():
            # While tracing, sizes are tensors (equal ones hash apart): ints, kept by the trace.
            size = tuple(int(s) for s in frame["image"].shape)
            by_size.setdefault(size, []).append((key, frame))
        computed = {}
        for group in by_size.values():
            batch = self._preprocess_frames([frame for _, frame in group])
            for (key, frame), output in zip(group, self._compute_frame_outputs(batch)):
                computed[key] = output
                if FeatureCache.key(frame) is not None:  # a frame without ids is never looked up
                    self.feature_cache.put(key, output)
        return [
            computed[id(frame)] if key is None else computed[key] if key in computed else self.feature_cache.get(key)
            for key, frame in zip(keys, frames)
        ]

    def _preprocess_frames(self, frames: List[Dict]) -> ImageList:
        """:meth:`preprocess_image` of frames of one size. In an ONNX export each frame is padded
        alone: Detectron2 0.6 pads a batch by in-place copies into it, which the exporter drops."""
        if not torch.onnx.is_in_onnx_export():
            return self.preprocess_image(frames)
        images = [self.preprocess_image([frame]) for frame in frames]
        return ImageList(torch.cat([i.tensor for i in images]), [i.image_sizes[0] for i in images])

    def _compute_frame_outputs(self, batch: ImageList) -> List[CachedFrame]:
        """What :meth:`frame_outputs` keeps of each frame of ``batch``: all backbone features and
        the RPN's proposals."""
        features = self.backbone(batch.tensor)
        proposals, _ = self.proposal_generator(batch, features, None)
        return [CachedFrame({k: v[i] for k, v in features.items()}, proposals[i]) for i in range(len(batch))]


def _build_temporal_block(cfg, shapes) -> Optional[TemporalAdaptiveBlock]:
    """``MODEL.TAM``'s block on the ROI heads' inputs, or None; refuses support rules that do not
    give TAM its fixed, time-ordered group."""
    if not cfg.MODEL.TAM.ENABLED:
        return None
    if cfg.MODEL.META_ARCHITECTURE != "VideoRCNN":
        raise ValueError(f"MODEL.TAM is implemented for VideoRCNN, not {cfg.MODEL.META_ARCHITECTURE}")
    s = cfg.INPUT.SUPPORT
    if (s.TRAIN_MODE, s.TEST_MODE) != ("stride", "stride") or s.NUM_TRAIN != s.NUM_TEST:
        raise ValueError(
            "MODEL.TAM needs the same fixed group of frames in training and test: INPUT.SUPPORT.TRAIN_MODE and "
            f"TEST_MODE 'stride' and NUM_TRAIN == NUM_TEST, got {s.TRAIN_MODE!r}/{s.TEST_MODE!r} and "
            f"{s.NUM_TRAIN}/{s.NUM_TEST}"
        )
    names = cfg.MODEL.ROI_HEADS.IN_FEATURES
    channels = {shapes[name].channels for name in names}
    if len(channels) != 1:
        raise ValueError(f"MODEL.TAM needs the same channels on all of {names}, got {sorted(channels)}")
    return TemporalAdaptiveBlock(list(names), channels.pop(), s.NUM_TEST, cfg.MODEL.TAM.KERNEL_SIZE)
