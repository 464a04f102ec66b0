from .most_similar_roi_align import iter_most_similar_roi_align, most_similar_roi_align
from .tam import TemporalAdaptiveModule
from .temporal_attention import TemporalAttentionalAggregation

__all__ = [
    "most_similar_roi_align",
    "iter_most_similar_roi_align",
    "TemporalAttentionalAggregation",
    "TemporalAdaptiveModule",
]
