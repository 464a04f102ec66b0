import fvcore.nn.weight_init as weight_init
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

__all__ = ["ChannelReducedBackbone", "build_channel_reduced_resnet_backbone"]


class ChannelReducedBackbone(Backbone):
    """
    A backbone plus a 3x3 conv + ReLU that maps one of its features to fewer channels.

    Returns every feature of the wrapped backbone and the reduced map under
    ``"<in_feature>_reduced"`` (e.g. ``res5_reduced``: conv5 of a DC5 ResNet reduced to 512
    channels before RoI pooling, as in the public TRoI/SELSA configs). With ``freeze`` the conv's
    parameters do not train.
    """

    def __init__(self, bottom_up: Backbone, in_feature: str, out_channels: int, freeze: bool = False):
        super().__init__()
        shapes = bottom_up.output_shape()
        if in_feature not in shapes:
            raise ValueError(f"CHANNEL_REDUCTION.IN_FEATURE={in_feature!r} is not among {list(shapes)}")
        self.bottom_up = bottom_up
        self.in_feature = in_feature
        self.out_name = f"{in_feature}_reduced"
        self.reduce = Conv2d(shapes[in_feature].channels, out_channels, kernel_size=3, padding=1, activation=nn.ReLU())
        weight_init.c2_msra_fill(self.reduce)
        self.reduce.requires_grad_(not freeze)
        self._out_feature_strides = {k: s.stride for k, s in shapes.items()}
        self._out_feature_channels = {k: s.channels for k, s in shapes.items()}
        self._out_feature_strides[self.out_name] = shapes[in_feature].stride
        self._out_feature_channels[self.out_name] = out_channels
        self._out_features = list(shapes) + [self.out_name]

    @property
    def size_divisibility(self):
        # Pad to the coarsest stride so every frame of a video gets the same feature size.
        return max(self._out_feature_strides.values())

    def forward(self, x):
        features = self.bottom_up(x)
        features[self.out_name] = self.reduce(features[self.in_feature])
        return features

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_channel_reduced_resnet_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's ResNet (DC5 with ``RESNETS.RES5_DILATION: 2``) plus ``ChannelReducedBackbone``."""
    return ChannelReducedBackbone(
        build_resnet_backbone(cfg, input_shape),
        cfg.MODEL.CHANNEL_REDUCTION.IN_FEATURE,
        cfg.MODEL.CHANNEL_REDUCTION.OUT_CHANNELS,
        cfg.MODEL.CHANNEL_REDUCTION.FREEZE,
    )
