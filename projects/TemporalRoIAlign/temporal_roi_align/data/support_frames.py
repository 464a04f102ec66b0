"""Which frames of a video support a target frame: one rule object for training, evaluation and
whole-video inference (the mapper and the predictor both use :class:`SupportSelector`)."""

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from ..config import CHOICES

__all__ = [
    "SUPPORT_MODES",
    "TRAIN_MODES",
    "TEST_MODES",
    "SupportSelector",
    "sample_bilateral_supports",
    "sample_train_supports",
    "select_test_supports",
]

# Deterministic (test) / drawn at random (the training modes that are no test rule).
TEST_MODES = CHOICES["INPUT.SUPPORT.TEST_MODE"]
TRAIN_MODES = tuple(mode for mode in CHOICES["INPUT.SUPPORT.TRAIN_MODE"] if mode not in TEST_MODES)
SUPPORT_MODES = TRAIN_MODES + TEST_MODES


def sample_train_supports(
    target: int,
    frames: Sequence[int],
    num: int,
    frame_range: int = -1,
    rng=np.random,
    include_target: bool = False,
) -> List[int]:
    """``num`` frames drawn at random among ``frames`` (the video's frame indices), within
    ``frame_range`` of ``target`` (-1: anywhere), ``target`` itself only when ``include_target``
    (DFF's rule: mmtrack's "uniform" sampler with ``filter_key_img=False``). Drawn without
    replacement while there are enough candidates, with replacement otherwise; copies of
    ``target`` when there is no other frame (a 1-frame video, a DET image)."""
    candidates = [
        f for f in frames if (include_target or f != target) and (frame_range < 0 or abs(f - target) <= frame_range)
    ]
    if not candidates:
        return [target] * num
    replace = len(candidates) < num
    return sorted(int(candidates[i]) for i in rng.choice(len(candidates), num, replace=replace))


def sample_bilateral_supports(
    target: int, frames: Sequence[int], num: int, frame_range: int = -1, rng=np.random
) -> List[int]:
    """FGFA's training supports (mmtrack's "bilateral_uniform" sampler): ``num // 2`` frames drawn
    without replacement among the frames before ``target`` within ``frame_range`` (-1: anywhere)
    and ``num // 2`` among those after it, sorted. A side with fewer candidates gives them all
    (the first frame of a video gets supports after it only, as in mmtrack); copies of ``target``
    when neither side has any (a 1-frame video, a DET image; mmtrack copies DET images too)."""
    if num % 2:
        raise ValueError(f"the bilateral support rule takes as many frames before as after the target, got num={num}")
    within = [f for f in frames if frame_range < 0 or abs(f - target) <= frame_range]
    sides = ([f for f in within if f < target], [f for f in within if f > target])
    if not any(sides):
        return [target] * num
    chosen = []
    for side in sides:
        count = min(num // 2, len(side))
        chosen += [int(side[i]) for i in rng.choice(len(side), count, replace=False)]
    return sorted(chosen)


def select_test_supports(target: int, frames: Sequence[int], num: int, mode: str, stride: int = 1) -> List[int]:
    """Deterministic supports among ``frames`` (the video's frame indices, sorted).

    - ``"uniform"``: ``num`` frames evenly spaced over the whole video, first and last included,
      skipping ``target``; repeated when the video has fewer other frames; copies of ``target``
      when it has none (the paper's default).
    - ``"stride"``: ``num // 2`` frames before and the rest after ``target``, ``stride`` apart;
      positions past the video's ends copy its first/last frame (``target`` itself when it is the
      first/last frame), as in the paper.
    - ``"uniform_with_target"``: mmtrack's test supports, for its converted checkpoints: frames
      ``round(i * (L - 1) / (num - 1))`` (Python's round), ``i = 0..num-1``, of the video's ``L``
      frames, the target not skipped, then ``target`` itself (``num + 1`` supports).
    - ``"past"``: online; the ``num`` frames ``stride, 2 * stride, ...`` before ``target``, the
      video's first frame repeated before its start.
    - ``"key_frame"``: DFF (online too); ``num`` must be 1 and ``stride`` is the key frame
      interval K: the latest key frame, the one at position ``p - p % K`` for ``target`` at
      position ``p`` of the video (``target`` itself when it is a key frame).
    """
    frames = list(frames)
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
        step = (len(frames) - 1) / (num - 1) if num > 1 else 0
        return [int(frames[round(i * step)]) for i in range(num)] + [target]
    if mode == "past":
        position = frames.index(target)
        return [int(frames[max(position - (i + 1) * stride, 0)]) for i in range(num)]
    if mode == "key_frame":
        if num != 1:
            raise ValueError(f"the key_frame support rule gives one frame (the key frame), got num={num}")
        position = frames.index(target)
        return [int(frames[position - position % stride])]
    raise ValueError(f"unknown test support mode {mode!r}; expected one of {TEST_MODES}")


@dataclass(frozen=True)
class SupportSelector:
    """The support rule of a model: ``selector(target, frames)`` gives the support frames of
    ``target`` among ``frames`` (the frame indices of its video, sorted), one per support.

    Attributes:
        mode: one of :data:`SUPPORT_MODES`: :data:`TRAIN_MODES` draw at random ("random" and
            "random_with_target" with :func:`sample_train_supports`, "bilateral" with
            :func:`sample_bilateral_supports`), :data:`TEST_MODES` select with
            :func:`select_test_supports`.
        num: supports per target frame (``uniform_with_target`` adds the target itself).
        frame_range: training modes only; supports within this many frames of the target (-1: any).
        stride: "stride" and "past": frames between consecutive supports; "key_frame": frames
            between key frames.
    """

    mode: str
    num: int
    frame_range: int = -1
    stride: int = 1

    def __post_init__(self):
        if self.mode not in SUPPORT_MODES:
            raise ValueError(f"support mode must be one of {SUPPORT_MODES}, got {self.mode!r}")
        if self.num < 0 or self.stride < 1:
            raise ValueError(f"need num >= 0 supports and stride >= 1, got {self.num}, {self.stride}")
        if self.mode == "bilateral" and self.num % 2:
            raise ValueError(f"the bilateral support rule needs an even number of supports, got {self.num}")
        if self.mode == "key_frame" and self.num != 1:
            raise ValueError(f"the key_frame support rule gives one support (the key frame), got num={self.num}")

    @classmethod
    def from_config(cls, cfg, is_train: bool) -> "SupportSelector":
        """``INPUT.SUPPORT``: for training, NUM_TRAIN frames drawn by TRAIN_MODE within
        TRAIN_FRAME_RANGE (or TRAIN_MODE "stride": the fixed group of the test rule "stride",
        TEST_STRIDE apart); for test, NUM_TEST frames by TEST_MODE (TEST_STRIDE apart for
        "stride"/"past", key frames VIDEO.KEY_FRAME_INTERVAL apart for "key_frame")."""
        s = cfg.INPUT.SUPPORT
        if is_train:
            modes = CHOICES["INPUT.SUPPORT.TRAIN_MODE"]
            if s.TRAIN_MODE not in modes:
                raise ValueError(f"INPUT.SUPPORT.TRAIN_MODE must be one of {modes}, got {s.TRAIN_MODE!r}")
            return cls(s.TRAIN_MODE, s.NUM_TRAIN, frame_range=s.TRAIN_FRAME_RANGE, stride=s.TEST_STRIDE)
        stride = cfg.VIDEO.KEY_FRAME_INTERVAL if s.TEST_MODE == "key_frame" else s.TEST_STRIDE
        return cls(s.TEST_MODE, s.NUM_TEST, stride=stride)

    @property
    def is_causal(self) -> bool:
        """True when the supports of a frame are never later frames (usable on a live stream)."""
        return self.mode in ("past", "key_frame") or self.num == 0

    def __call__(self, target: int, frames: Sequence[int], rng=np.random) -> List[int]:
        if self.num == 0:
            return []
        if self.mode == "bilateral":
            return sample_bilateral_supports(target, frames, self.num, self.frame_range, rng)
        if self.mode in TRAIN_MODES:
            include_target = self.mode == "random_with_target"
            return sample_train_supports(target, frames, self.num, self.frame_range, rng, include_target)
        return select_test_supports(target, frames, self.num, self.mode, self.stride)
