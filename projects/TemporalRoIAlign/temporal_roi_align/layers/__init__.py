from .flow_warp import FLOW_WARP_CONVENTIONS, flow_warp, resize_flow
from .most_similar_roi_align import iter_most_similar_roi_align, most_similar_roi_align
from .tam import TemporalAdaptiveModule
from .temporal_attention import TemporalAttentionalAggregation

__all__ = [
    "FLOW_WARP_CONVENTIONS",
    "TemporalAdaptiveModule",
    "TemporalAttentionalAggregation",
    "flow_warp",
    "iter_most_similar_roi_align",
    "most_similar_roi_align",
    "resize_flow",
]
