"""
Faster R-CNN R-101 DC5 with Temporal RoI Align, the paper's ablation model: the same network as
configs/ImageNetVID/troi_R_101_DC5.yaml (tests/configs/test_lazy_configs.py compares them).

conv5 at stride 1 with dilation 2 (stride 16), RPN on conv4 with 12 anchors, conv5 reduced to
512 channels, Temporal RoI Align to 7x7 (K=4 most similar locations, N=4 attention blocks),
two 1024-d FC layers, 300 proposals per image at test. Input: RGB normalised as torchvision's
ImageNet ResNets, whose converted weights it starts from.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

from temporal_roi_align.modeling import (
    ChannelReducedBackbone,
    TemporalROIPooler,
    VideoRCNN,
    VideoROIHeads,
)


def resnet_stages(depth, *, norm="FrozenBN", stride_in_1x1=False, res5_dilation=2):
    """
    The four stages as Detectron2's ``build_resnet_backbone`` makes them, as LazyCalls of
    ``ResNet.make_stage`` (``ResNet.make_default_stages`` has no dilation). With
    ``res5_dilation=2`` conv5 keeps stride 1 and dilates its 3x3 convs (DC5).
    """
    blocks_per_stage = {
        18: [2, 2, 2, 2],
        34: [3, 4, 6, 3],
        50: [3, 4, 6, 3],
        101: [3, 4, 23, 3],
        152: [3, 8, 36, 3],
    }[depth]
    basic = depth < 50
    if basic and res5_dilation != 1:
        raise ValueError(f"ResNet-{depth} (BasicBlock) needs res5_dilation=1")
    in_channels, out_channels, bottleneck_channels = 64, 64 if basic else 256, 64
    stages = []
    for index, num_blocks in enumerate(blocks_per_stage):
        dilation = res5_dilation if index == 3 else 1
        first_stride = 1 if index == 0 or dilation > 1 else 2
        kwargs = dict(
            block_class=BasicBlock if basic else BottleneckBlock,
            num_blocks=num_blocks,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            in_channels=in_channels,
            out_channels=out_channels,
            norm=norm,
        )
        if not basic:
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
            )
        stages.append(L(ResNet.make_stage)(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return stages


model = L(VideoRCNN)(
    backbone=L(ChannelReducedBackbone)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=resnet_stages(101),
            out_features=["res4", "res5"],
            freeze_at=2,
        ),
        in_feature="res5",
        out_channels=512,
    ),
    proposal_generator=L(RPN)(
        in_features=["res4"],
        head=L(StandardRPNHead)(in_channels=1024, num_anchors=12),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[64, 128, 256, 512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[16],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(6000, 6000),  # (training, test)
        post_nms_topk=(600, 300),
        nms_thresh=0.7,
    ),
    roi_heads=L(VideoROIHeads)(
        num_classes=30,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=["res5_reduced"],
        box_pooler=L(TemporalROIPooler)(
            output_size=7,
            scales=(1.0 / 16,),
            sampling_ratio=2,
            pooler_type="ROIAlignV2",
            channels="${...backbone.out_channels}",
            topk=4,  # K
            num_attention_blocks=4,  # N; 0 averages the frames instead of TAFA
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=L(ShapeSpec)(
                channels="${....backbone.out_channels}",
                height="${...box_pooler.output_size}",
                width="${...box_pooler.output_size}",
            ),
            conv_dims=[],
            fc_dims=[1024, 1024],
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
            test_score_thresh=0.001,
            test_nms_thresh=0.5,
            test_topk_per_image=100,
        ),
    ),
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
)
