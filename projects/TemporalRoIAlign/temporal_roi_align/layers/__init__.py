from .flow_warp import FLOW_WARP_CONVENTIONS, flow_warp, resize_flow
from .most_similar_roi_align import iter_most_similar_roi_align, most_similar_roi_align
from .temporal_attention import TemporalAttentionalAggregation

__all__ = [
    "most_similar_roi_align",
    "iter_most_similar_roi_align",
    "TemporalAttentionalAggregation",
    "flow_warp",
    "resize_flow",
    "FLOW_WARP_CONVENTIONS",
]
