"""The frames of a frame group as the video meta-architectures hold them: a training batch's frames
in one backbone pass (:class:`FrameBatch`), what is computed once per frame (:class:`CachedFrame`),
and what the ROI heads receive besides the target's maps (:class:`SupportFrames`,
:class:`ReferenceFrames`)."""

import itertools
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
from detectron2.structures import ImageList, Instances

__all__ = ["CachedFrame", "FrameBatch", "ReferenceFrames", "SupportFrames"]


@dataclass
class SupportFrames:
    """
    The support frames of each target image of a batch (image ``i`` has ``T_i`` supports, in the
    order the support rule gave them; ``T_i`` may be 0).

    Attributes:
        features: per image, feature name -> ``[T_i, C, H, W]`` backbone maps of its supports.
        proposals: per image, the ``T_i`` supports' RPN proposals (``proposal_boxes``), when the
            ROI heads use them (SELSA); None otherwise.
    """

    features: List[Dict[str, torch.Tensor]]
    proposals: Optional[List[List[Instances]]] = None

    def __len__(self) -> int:
        return len(self.features)

    def maps(self, names: Sequence[str]) -> List[List[torch.Tensor]]:
        """``[level][image] -> [T_i, C, H, W]`` for the feature ``names`` (a pooler's levels)."""
        return [[frames[name] for frames in self.features] for name in names]


@dataclass
class ReferenceFrames:
    """
    The reference frame of each target image of a training batch (MaskTrack R-CNN's track head
    matches the target's RoIs against the reference's ground-truth instances).

    Attributes:
        features: feature name -> ``[N, C, H, W]`` backbone maps, one reference per target image.
        instances: N ``Instances`` with ``gt_boxes`` and ``gt_track_ids`` (any number, 0 included).
    """

    features: Dict[str, torch.Tensor]
    instances: List[Instances]


class CachedFrame(NamedTuple):
    """What the model computes once per frame: backbone features ([C, H, W] per name) and the
    RPN's proposals of the frame (None when the model does not need them)."""

    features: Dict[str, torch.Tensor]
    proposals: Optional[Instances]


@dataclass
class FrameBatch:
    """
    The frames of a training batch normalised and padded together, for one backbone pass: the
    ``N`` target frames, then each target's group: its supports, then its reference frame when the
    model trains on them (MaskTrack R-CNN). :attr:`targets`, :attr:`supports` and
    :attr:`references` are the positions of each kind of frame in :attr:`images` and in the maps
    computed from it, in target order.
    """

    images: ImageList
    num_supports: List[int]  # per target
    targets: List[int]
    supports: List[int]
    references: List[int]

    @classmethod
    def stack(
        cls,
        targets: List[Dict],
        supports: List[List[Dict]],
        with_references: bool,
        preprocess: Callable[[List[Dict]], ImageList],
    ) -> "FrameBatch":
        """The batch of the ``targets`` (model inputs), their ``supports`` (a list per target) and,
        ``with_references``, their ``"reference"`` frames; ``preprocess`` normalises and pads the
        frames' ``"image"`` into one :class:`ImageList` (:meth:`GeneralizedRCNN.preprocess_image`)."""
        frames, support_positions, reference_positions = list(targets), [], []
        for target, group in zip(targets, supports):
            support_positions += range(len(frames), len(frames) + len(group))
            frames += group
            if with_references:
                reference_positions.append(len(frames))
                frames.append(target["reference"])
        num_supports = [len(group) for group in supports]
        return cls(preprocess(frames), num_supports, list(range(len(targets))), support_positions, reference_positions)

    def images_of(self, frames: List[int]) -> ImageList:
        return ImageList(self.images.tensor[frames], [self.images.image_sizes[i] for i in frames])

    @staticmethod
    def maps_of(maps: Dict[str, torch.Tensor], frames: List[int]) -> Dict[str, torch.Tensor]:
        return {name: v[frames] for name, v in maps.items()}

    def support_frames(
        self, maps: Dict[str, torch.Tensor], proposals: Optional[List[Instances]] = None
    ) -> SupportFrames:
        """The supports' ``maps`` (``[sum T_i, C, H, W]`` per name, as :meth:`maps_of` gives them
        for :attr:`supports`) and their ``proposals`` (one per support frame), split per target."""
        per_name = {name: v.split(self.num_supports) for name, v in maps.items()}
        features = [{name: v[i] for name, v in per_name.items()} for i in range(len(self.num_supports))]
        if proposals is not None:
            ends = list(itertools.accumulate(self.num_supports))
            proposals = [proposals[end - count : end] for end, count in zip(ends, self.num_supports)]
        return SupportFrames(features, proposals)
