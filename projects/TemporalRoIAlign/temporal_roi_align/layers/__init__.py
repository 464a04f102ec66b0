from .most_similar_roi_align import (
    iter_most_similar_roi_align,
    iter_most_similar_roi_align_from_map,
    most_similar_roi_align,
    most_similar_roi_align_from_map,
)
from .roi_align_sampling import RoIAlignSampling, roi_align_sampling
from .temporal_attention import TemporalAttentionalAggregation

__all__ = [
    "most_similar_roi_align",
    "iter_most_similar_roi_align",
    "most_similar_roi_align_from_map",
    "iter_most_similar_roi_align_from_map",
    "roi_align_sampling",
    "RoIAlignSampling",
    "TemporalAttentionalAggregation",
]
