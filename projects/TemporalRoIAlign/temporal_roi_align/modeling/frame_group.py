"""The support frames of a batch of target frames, as the meta-architecture hands them to the heads."""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.structures import Instances

__all__ = ["SupportFrames"]


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
