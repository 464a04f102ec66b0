"""Per-frame outputs of the backbone (and the RPN) kept for the next target frames of a video."""

from collections import OrderedDict
from typing import Hashable, Optional

import torch

from ..config import CHOICES
from .frame_group import CachedFrame

__all__ = ["CACHE_DTYPES", "FeatureCache"]

CACHE_DTYPES = {name: getattr(torch, name) for name in CHOICES["VIDEO.CACHE_DTYPE"]}


class FeatureCache:
    """LRU of the :class:`CachedFrame` of at most ``capacity`` frames, features kept as ``dtype``.

    Keys are explicit frame identities, ``(video_id, frame_id, image shape)``; a frame without
    them is never cached."""

    def __init__(self, capacity: int, dtype: torch.dtype = torch.float32):
        if capacity < 0:
            raise ValueError(f"VIDEO.CACHE_FRAMES must be >= 0, got {capacity}")
        self.capacity = capacity
        self.dtype = dtype
        self._frames: "OrderedDict[Hashable, CachedFrame]" = OrderedDict()

    def __len__(self):
        return len(self._frames)

    def __contains__(self, key):
        return key in self._frames

    def get(self, key: Hashable) -> CachedFrame:
        self._frames.move_to_end(key)
        frame = self._frames[key]
        return CachedFrame({k: v.float() for k, v in frame.features.items()}, frame.proposals)

    def put(self, key: Hashable, frame: CachedFrame):
        if self.capacity == 0:
            return
        features = {k: v.detach().to(self.dtype) for k, v in frame.features.items()}
        self._frames[key] = CachedFrame(features, frame.proposals)
        self._frames.move_to_end(key)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def clear(self):
        self._frames.clear()

    @staticmethod
    def key(frame: dict) -> Optional[Hashable]:
        """``(video_id, frame_id, image shape)`` of a model input, None without both ids."""
        if frame.get("video_id") is None or frame.get("frame_id") is None:
            return None
        return frame["video_id"], frame["frame_id"], tuple(frame["image"].shape)
