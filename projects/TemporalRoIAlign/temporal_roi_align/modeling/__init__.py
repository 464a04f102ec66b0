from .backbone import ChannelReducedBackbone, build_channel_reduced_resnet_backbone
from .feature_cache import CachedFrame, FeatureCache
from .fgfa_aggregator import FgfaAggregator
from .flownet import FlowNetSimple
from .frame_group import SupportFrames
from .meta_arch import VideoRCNN
from .poolers import TemporalROIPooler
from .roi_heads import VideoROIHeads
from .selsa import SelsaAggregator, SelsaBoxHead
