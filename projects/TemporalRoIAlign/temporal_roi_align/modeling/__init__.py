from .backbone import ChannelReducedBackbone, build_channel_reduced_resnet_backbone
from .feature_cache import FeatureCache
from .fgfa_aggregator import FgfaAggregator
from .flow_guided import DffRCNN, FgfaRCNN, FlowGuidedRCNN
from .flownet import FlowNetSimple
from .frame_group import CachedFrame, ReferenceFrames, SupportFrames
from .masktrack import MaskTrackRCNN, MaskTrackROIHeads
from .masktrack_tracker import MaskTrackTracker
from .poolers import TemporalROIPooler
from .roi_heads import VideoROIHeads
from .selsa import SelsaAggregator, SelsaBoxHead
from .track_head import ROI_TRACK_HEAD_REGISTRY, MaskTrackHead, build_track_head, match_logits, sample_track_targets
from .video_rcnn import VideoRCNN
