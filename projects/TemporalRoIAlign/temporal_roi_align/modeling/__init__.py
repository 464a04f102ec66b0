from .backbone import ChannelReducedBackbone, build_channel_reduced_resnet_backbone
from .fgfa_aggregator import FgfaAggregator
from .flownet import FlowNetSimple
from .meta_arch import FeatureCache, VideoRCNN
from .poolers import TemporalROIPooler
from .roi_heads import VideoROIHeads
from .selsa import SelsaAggregator, SelsaBoxHead
