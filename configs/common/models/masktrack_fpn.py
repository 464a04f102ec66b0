"""
MaskTrack R-CNN R-50-FPN + Temporal RoI Align, the model of configs/YouTubeVIS/masktrack_troi_R_50_FPN_ytvis2019.yaml
(tests/configs/test_lazy_configs_vis.py compares them): Detectron2's Mask R-CNN FPN (P2-P6, one anchor
size per level, 200 proposals, 7x7 box and 14x14 mask RoIs on P2-P5) with mmtrack's MaskTrack
settings, the track head (7x7 RoIAlign, 2 x 1024-d FC) and the tracker, and Temporal RoI Align
(K=4, N=4) as the box and mask poolers. Without support frames these poolers are RoIAlign: with
no supports in the mappers and N=0 (no attention parameters), the model is MaskTrack R-CNN.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers, MaskRCNNConvUpsampleHead

from temporal_roi_align.modeling import (
    MaskTrackHead,
    MaskTrackRCNN,
    MaskTrackROIHeads,
    MaskTrackTracker,
    TemporalROIPooler,
)

from .video_rcnn_dc5 import resnet_stages

LEVELS = ["p2", "p3", "p4", "p5"]
SCALES = (1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32)

model = L(MaskTrackRCNN)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=resnet_stages(50, res5_dilation=1),
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(StandardRPNHead)(in_channels=256, num_anchors=3),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=64,
        positive_fraction=0.5,
        pre_nms_topk=(200, 200),  # (training, test), per FPN level
        post_nms_topk=(200, 200),
        nms_thresh=0.7,
    ),
    roi_heads=L(MaskTrackROIHeads)(
        num_classes=40,
        batch_size_per_image=128,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=LEVELS,
        box_pooler=L(TemporalROIPooler)(
            output_size=7,
            scales=SCALES,
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
            channels=256,
            topk=4,  # K
            num_attention_blocks=4,  # N; 0 averages the frames instead of TAFA
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=L(ShapeSpec)(channels=256, height=7, width=7), conv_dims=[], fc_dims=[1024, 1024]
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
            test_score_thresh=0.01,
            test_nms_thresh=0.5,
            test_topk_per_image=100,
        ),
        mask_in_features=LEVELS,
        mask_pooler=L(TemporalROIPooler)(
            output_size=14,
            scales=SCALES,
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
            channels=256,
            topk="${..box_pooler.topk}",
            num_attention_blocks="${..box_pooler.num_attention_blocks}",
        ),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=L(ShapeSpec)(channels=256, height=14, width=14),
            num_classes="${..num_classes}",
            conv_dims=[256, 256, 256, 256, 256],  # 4 convs, then the deconv
        ),
        track_head=L(MaskTrackHead)(
            in_features=LEVELS,
            pooler=L(ROIPooler)(output_size=7, scales=SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"),
            input_channels=256,
            fc_dims=[1024, 1024],
            batch_size_per_image=128,
            positive_fraction=0.25,
            iou_threshold=0.5,
        ),
    ),
    tracker=L(MaskTrackTracker)(det_score_weight=1.0, iou_weight=2.0, class_weight=10.0, num_frames_retain=20),
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
)
