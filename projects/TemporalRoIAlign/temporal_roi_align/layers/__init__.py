from .most_similar_roi_align import most_similar_roi_align
from .temporal_attention import TemporalAttentionalAggregation

__all__ = ["most_similar_roi_align", "TemporalAttentionalAggregation"]
