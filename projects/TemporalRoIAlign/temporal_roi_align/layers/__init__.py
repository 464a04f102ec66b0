from .flow_warp import FLOW_WARP_CONVENTIONS, flow_warp, resize_flow
from .most_similar_roi_align import (
    iter_most_similar_roi_align,
    iter_most_similar_roi_align_from_map,
    most_similar_roi_align,
    most_similar_roi_align_from_map,
)
from .roi_align_sampling import RoIAlignSampling, roi_align_sampling
from .tam import TemporalAdaptiveModule
from .temporal_attention import TemporalAttentionalAggregation

__all__ = [
    "FLOW_WARP_CONVENTIONS",
    "RoIAlignSampling",
    "TemporalAdaptiveModule",
    "TemporalAttentionalAggregation",
    "flow_warp",
    "iter_most_similar_roi_align",
    "iter_most_similar_roi_align_from_map",
    "most_similar_roi_align",
    "most_similar_roi_align_from_map",
    "resize_flow",
    "roi_align_sampling",
]
