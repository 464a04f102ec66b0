import contextlib
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances

__all__ = ["VideoRCNN", "FeatureCache"]

CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class FeatureCache:
    """Backbone features of recently seen frames: LRU over at most ``capacity`` frames."""

    def __init__(self, capacity: int, dtype: torch.dtype = torch.float32):
        if capacity < 0:
            raise ValueError(f"VIDEO.CACHE_FRAMES must be >= 0, got {capacity}")
        self.capacity = capacity
        self.dtype = dtype
        self._frames: "OrderedDict[object, Dict[str, torch.Tensor]]" = OrderedDict()

    def __len__(self):
        return len(self._frames)

    def __contains__(self, key):
        return key in self._frames

    def get(self, key) -> Dict[str, torch.Tensor]:
        self._frames.move_to_end(key)
        return {k: v.float() for k, v in self._frames[key].items()}

    def put(self, key, features: Dict[str, torch.Tensor]):
        if self.capacity == 0:
            return
        self._frames[key] = {k: v.detach().to(self.dtype) for k, v in features.items()}
        self._frames.move_to_end(key)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def clear(self):
        self._frames.clear()


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
    (each input dict has ``"supports"``, a list of dicts with ``"image"``; see VideoDatasetMapper).

    The backbone runs once per distinct frame. The RPN proposes on the target frame, and on the
    support frames when the ROI heads use support proposals (SELSA). The ROI heads receive the
    support feature maps. In inference, each frame's backbone features are cached (an LRU of
    ``VIDEO.CACHE_FRAMES`` frames kept as ``VIDEO.CACHE_DTYPE``, keyed by ``file_name`` and image
    size), so visiting a video's frames in order costs about one backbone pass per frame.
    A model whose ROI heads use no support frame is the single-frame detector and ignores supports.
    """

    @configurable
    def __init__(
        self,
        *,
        cache_frames: int = 64,
        cache_dtype: torch.dtype = torch.float32,
        support_proposals_train: int = 256,
        support_proposals_test: int = 300,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_cache = FeatureCache(cache_frames, cache_dtype)
        self.support_proposals_train = support_proposals_train
        self.support_proposals_test = support_proposals_test

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
        )
        return ret

    @property
    def uses_supports(self) -> bool:
        return getattr(self.roi_heads, "uses_support_features", False)

    def train(self, mode: bool = True):
        # Cached features are stale once the weights may change.
        self.feature_cache.clear()
        return super().train(mode)

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if not self.uses_supports:
            return super().forward(batched_inputs)

        num_images, num_supports = len(batched_inputs), _num_supports(batched_inputs)
        frames = [x["image"] for x in batched_inputs]
        frames += [s["image"] for x in batched_inputs for s in x["supports"]]
        all_frames = self._normalize_and_pad(frames)
        all_features = self.backbone(all_frames.tensor)

        images = ImageList(all_frames.tensor[:num_images], all_frames.image_sizes[:num_images])
        features = {k: v[:num_images] for k, v in all_features.items()}
        support_images = ImageList(all_frames.tensor[num_images:], all_frames.image_sizes[num_images:])
        support_maps = {k: v[num_images:] for k, v in all_features.items()}
        support_features = {k: v.unflatten(0, (num_images, num_supports)) for k, v in support_maps.items()}

        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        support_proposals = self._support_proposals(support_images, support_maps, num_images)
        _, detector_losses = self.roi_heads(
            images, features, proposals, gt_instances, support_features, support_proposals
        )
        return {**detector_losses, **proposal_losses}

    def inference(
        self,
        batched_inputs: List[Dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        if not self.uses_supports or detected_instances is not None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        results, image_sizes = [], []
        for x in batched_inputs:
            instances, image_size = self._inference_one(x)
            results.append(instances)
            image_sizes.append(image_size)
        if do_postprocess:
            return GeneralizedRCNN._postprocess(results, batched_inputs, image_sizes)
        return results

    def _inference_one(self, target: Dict):
        supports = target.get("supports", [])
        frame_features = self.frame_features([target] + supports)
        image = self._normalize_and_pad([target["image"]])
        features = {k: v[None] for k, v in frame_features[0].items()}
        support_features = {k: [f[k][None] for f in frame_features[1:]] for k in features}
        support_proposals = None
        if supports and self.roi_heads.uses_support_proposals:
            support_images = ImageList(
                image.tensor.expand(len(supports), -1, -1, -1),
                [tuple(s["image"].shape[-2:]) for s in supports],
            )
            support_maps = {k: torch.cat(v) for k, v in support_features.items()}
            support_proposals = self._support_proposals(support_images, support_maps, 1)
        elif not supports and self.roi_heads.uses_support_proposals:
            support_proposals = [[]]
        proposals, _ = self.proposal_generator(image, features, None)
        results, _ = self.roi_heads(image, features, proposals, None, support_features, support_proposals)
        return results[0], image.image_sizes[0]

    def frame_features(self, frames: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        """Backbone features ([C, H, W] per name) of each frame, through the feature cache."""
        keys = [_cache_key(f) for f in frames]
        computed = {}
        pending = OrderedDict()
        for key, frame in zip(keys, frames):
            if key is None or key not in self.feature_cache:
                pending.setdefault(key if key is not None else id(frame), frame)
        by_size = OrderedDict()
        for key, frame in pending.items():
            by_size.setdefault(tuple(frame["image"].shape), []).append((key, frame))
        for group in by_size.values():
            batch = self._normalize_and_pad([frame["image"] for _, frame in group])
            features = self.backbone(batch.tensor)
            for i, (key, _) in enumerate(group):
                computed[key] = {k: v[i] for k, v in features.items()}
                self.feature_cache.put(key, computed[key])
        out = []
        for key, frame in zip(keys, frames):
            if key is None:
                out.append(computed[id(frame)])
            else:
                out.append(computed[key] if key in computed else self.feature_cache.get(key))
        return out

    def _support_proposals(self, support_images: ImageList, support_maps, num_images: int):
        """Top proposals of each support frame, grouped per target image (SELSA only)."""
        if not self.roi_heads.uses_support_proposals:
            return None
        with _inference_mode_of(self.proposal_generator):
            proposals, _ = self.proposal_generator(support_images, support_maps, None)
        keep = self.support_proposals_train if self.training else self.support_proposals_test
        proposals = [p[:keep] for p in proposals]
        per_image = len(proposals) // num_images
        return [proposals[i * per_image : (i + 1) * per_image] for i in range(num_images)]

    def _normalize_and_pad(self, images: List[torch.Tensor]) -> ImageList:
        images = [(x.to(self.device) - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)


def _cache_key(frame: Dict):
    if "file_name" not in frame:
        return None
    return frame["file_name"], tuple(frame["image"].shape)


def _num_supports(batched_inputs: List[Dict]) -> int:
    counts = {len(x.get("supports", [])) for x in batched_inputs}
    if len(counts) != 1:
        raise ValueError(f"every frame group of a batch needs the same number of supports, got {sorted(counts)}")
    return counts.pop()
