"""
YouTube-VIS checkpoints of mmtracking's (mmtrack's) MaskTrack R-CNN (mmtracking 0.14 on mmdetection
2.x, ``configs/vis/masktrack_rcnn``) -> this project's ``MaskTrackRCNN``: Detectron2's Mask R-CNN
FPN (standard names) plus the track head under ``roi_heads.track_head.``
(``tools/convert_checkpoint.py mmtrack`` recognises them by their ``track_head.*`` tensors).

Published checkpoints, mask AP on YouTube-VIS val (configs/YouTubeVIS/converted/masktrack_*):

- R-50-FPN 2019: masktrack_rcnn_r50_fpn_12e_youtubevis2019_20211022_194830-6ca6b91e.pth, 30.2
- R-101-FPN 2019: masktrack_rcnn_r101_fpn_12e_youtubevis2019_20211023_150038-454dc48b.pth, 32.2
- X-101-64x4d-FPN 2019: masktrack_rcnn_x101_fpn_12e_youtubevis2019_20211023_153205-fff7a102.pth, 34.7
- R-50-FPN 2021: masktrack_rcnn_r50_fpn_12e_youtubevis2021_20211026_044948-10da90d9.pth, 28.7
- R-101-FPN 2021: masktrack_rcnn_r101_fpn_12e_youtubevis2021_20211026_045509-3c49e4f3.pth, 31.3
- X-101-64x4d-FPN 2021: masktrack_rcnn_x101_fpn_12e_youtubevis2021_20211026_095943-90831df4.pth, 33.5

Source names (``detector.`` = mmdetection's ``MaskRCNN``): ``detector.backbone.*`` (ResNet /
ResNeXt, torchvision names), ``detector.neck.{lateral,fpn}_convs.<i>.conv.*`` (FPN, i = 0..3 for
C2..C5; P6 = max-pool of P5, no parameters), ``detector.rpn_head.rpn_{conv,cls,reg}.*``,
``detector.roi_head.bbox_head.{shared_fcs.<i>,fc_cls,fc_reg}.*``,
``detector.roi_head.mask_head.{convs.<i>.conv,upsample,conv_logits}.*``,
``track_head.embed_head.fcs.<i>.*``. Every tensor keeps its values except for reordering: anchors
when the config lists them in another order, classes when the test dataset names them in another
order. :func:`masktrack_config` lists the test settings the target config must have.

What the converted model still computes differently from mmtrack (none of it expressible
in Detectron2's config; all at the level of float rounding or degenerate boxes):

- FPN level of a RoI: mmtrack floor(log2(s / 56 + 1e-6)), Detectron2 floor(4 + log2(s / 224
  + 1e-8)), s = sqrt(area): a box with s in [56 * 2^k - 5.6e-5, 56 * 2^k - 2.2e-6) pixels
  (k = 1, 2, 3) is pooled one level coarser by mmtrack.
- RPN ranking: mmtrack sorts sigmoid scores, Detectron2 logits: the same order except among
  logits above about 17, whose float32 sigmoids are all 1.0.
- Box decoding: mmtrack clamps dw, dh to [-log(1000/16), log(1000/16)], Detectron2 only from
  above (boxes differ only when a delta shrinks a box more than 62 times); centres (x1 + x2) / 2
  against x1 + w / 2, deltas times stds against deltas divided by weights: float rounding.
- ``detector_postprocess`` drops boxes left empty after clipping; mmtrack keeps them (with an
  empty mask). mmtrack pools masks and track embeddings on boxes scaled to the original image
  and back: float rounding.
"""

from typing import Tuple

import torch

from ..modeling.track_head import build_track_head
from .common import (
    MMDET_PREFIX,
    ConversionError,
    ConversionReport,
    MMDetAnchors,
    Rule,
    apply_rules,
    build_meta_model,
    config_differences,
    enforce_config_match,
    mmdet_box_head_rules,
    mmdet_class_order,
    mmdet_rpn_rules,
    reorder_rule,
    state_dict_of,
)
from .resnet import resnet_rules

__all__ = ["TRACK_HEAD_PREFIX", "masktrack_config", "convert_masktrack_checkpoint"]

# Where the track head's parameters go in the converted state dict.
TRACK_HEAD_PREFIX = "roi_heads.track_head."

# The RPN anchors of mmtrack's MaskTrack R-CNN: AnchorGenerator(strides=[4, 8, 16, 32, 64],
# scales=[8], ratios=[0.5, 1.0, 2.0]).
MASKTRACK_ANCHORS = MMDetAnchors(strides=(4, 8, 16, 32, 64), scales=(8,))


def masktrack_config() -> Tuple[Tuple[str, object], ...]:
    """``(config key, value)`` pairs that reproduce mmtrack's MaskTrack R-CNN model and test
    pipeline (``mask_rcnn_r50_fpn`` base, ``youtube_vis`` test pipeline, MaskTrack overrides)."""
    return (
        # Test pipeline: BGR file -> RGB, resize to fit 640 x 360 keeping the aspect ratio
        # (1280x720 -> 640x360), normalise, pad to 32 (checked separately).
        ("INPUT.FORMAT", "RGB"),
        ("MODEL.PIXEL_MEAN", (123.675, 116.28, 103.53)),
        ("MODEL.PIXEL_STD", (58.395, 57.12, 57.375)),
        ("INPUT.MIN_SIZE_TEST", 360),
        ("INPUT.MAX_SIZE_TEST", 640),
        ("INPUT.RESIZE_STYLE", "mmtrack"),
        ("MODEL.MASK_ON", True),
        # ResNet "pytorch" style, BatchNorm in eval mode, no dilation; FPN P2-P6 (P6 = max-pool).
        ("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"),
        ("MODEL.RESNETS.STRIDE_IN_1X1", False),
        ("MODEL.RESNETS.NORM", "FrozenBN"),
        ("MODEL.RESNETS.RES5_DILATION", 1),
        ("MODEL.RESNETS.OUT_FEATURES", ("res2", "res3", "res4", "res5")),
        ("MODEL.FPN.IN_FEATURES", ("res2", "res3", "res4", "res5")),
        ("MODEL.FPN.NORM", ""),
        ("MODEL.FPN.FUSE_TYPE", "sum"),
        # RPN on P2-P6: sigmoid objectness, deltas with stds 1; per level the top 200 by score,
        # decoded, clipped, boxes with w or h <= 0 dropped, NMS 0.7 within each level, then the
        # top 200 of all levels (Detectron2's find_top_rpn_proposals does the same).
        ("MODEL.RPN.IN_FEATURES", ("p2", "p3", "p4", "p5", "p6")),
        ("MODEL.ANCHOR_GENERATOR.OFFSET", 0.0),
        ("MODEL.RPN.BBOX_REG_WEIGHTS", (1.0, 1.0, 1.0, 1.0)),
        ("MODEL.RPN.PRE_NMS_TOPK_TEST", 200),
        ("MODEL.RPN.POST_NMS_TOPK_TEST", 200),
        ("MODEL.RPN.NMS_THRESH", 0.7),
        ("MODEL.PROPOSAL_GENERATOR.MIN_SIZE", 0),
        # RoIAlign (aligned, adaptive sampling) on P2-P5, level floor(4 + log2(sqrt(area) / 224))
        # = mmtrack's floor(log2(sqrt(area) / 56)) up to epsilons; 7x7 boxes, 14x14 masks,
        # 7x7 track head.
        ("MODEL.ROI_HEADS.IN_FEATURES", ("p2", "p3", "p4", "p5")),
        ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"),
        ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7),
        ("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 0),
        ("MODEL.ROI_MASK_HEAD.POOLER_TYPE", "ROIAlignV2"),
        ("MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 14),
        ("MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 0),
        ("MODEL.ROI_TRACK_HEAD.POOLER_TYPE", "ROIAlignV2"),
        ("MODEL.ROI_TRACK_HEAD.POOLER_RESOLUTION", 7),
        ("MODEL.ROI_TRACK_HEAD.POOLER_SAMPLING_RATIO", 0),
        # Class-specific box deltas with stds (0.1, 0.1, 0.2, 0.2); softmax; score > 0.01,
        # NMS 0.5 per class, 100 per image; class-specific masks, threshold 0.5 (Detectron2's
        # fixed mask threshold in detector_postprocess).
        ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", (10.0, 10.0, 5.0, 5.0)),
        ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", False),
        ("MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK", False),
        ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.01),
        ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.5),
        ("TEST.DETECTIONS_PER_IMAGE", 100),
        # Tracker: match_weights det_score 1, iou 2, det_label 10; num_frames_retain 20.
        ("MODEL.MASKTRACK_TRACKER.DET_SCORE_WEIGHT", 1.0),
        ("MODEL.MASKTRACK_TRACKER.IOU_WEIGHT", 2.0),
        ("MODEL.MASKTRACK_TRACKER.CLASS_WEIGHT", 10.0),
        ("MODEL.MASKTRACK_TRACKER.NUM_FRAMES_RETAIN", 20),
    )


def convert_masktrack_checkpoint(checkpoint, cfg, source: str = "<checkpoint>", strict: bool = True):
    """
    An mmtrack MaskTrack R-CNN checkpoint (as loaded by ``torch.load``: the tensors under
    ``"state_dict"``, class names under ``"meta"``) -> the state dict of the model of ``cfg``
    (``MaskTrackRCNN``, whose track head is under :data:`TRACK_HEAD_PREFIX`; or a plain Mask
    R-CNN FPN, the track head's parameters then added under that prefix, built from ``cfg``).
    ``cfg`` needs :func:`~temporal_roi_align.add_video_config`'s keys.

    Returns ``(state_dict, ConversionReport)``; raises :class:`ConversionError` (see
    :func:`apply_rules` for ``strict``; with ``strict``, also when ``cfg`` differs from
    :func:`masktrack_config` or the checkpoint has no track head).
    """
    state_dict, extra = state_dict_of(checkpoint, source, ("state_dict",))
    if "ROI_TRACK_HEAD" not in cfg.MODEL or "MASKTRACK_TRACKER" not in cfg.MODEL:
        raise ConversionError(
            f"{source}: the config has no MODEL.ROI_TRACK_HEAD / MODEL.MASKTRACK_TRACKER keys: "
            "call temporal_roi_align.add_video_config(cfg) before reading the config file"
        )
    report = ConversionReport(source)
    if not any(k.startswith("track_head.") for k in state_dict):
        message = "has no track_head.* tensors: not a MaskTrack R-CNN checkpoint"
        if strict:
            raise ConversionError(f"{source}: {message}")
        report.notes.append(message)

    model = build_meta_model(cfg)
    differences = config_differences(cfg, masktrack_config(), "mmtrack")
    if model.backbone.size_divisibility != 32:
        differences.append(f"images are padded to {model.backbone.size_divisibility}, mmtrack pads to 32")
    enforce_config_match(differences, report, strict, "mmtrack's MaskTrack R-CNN")
    if not differences:
        report.notes.append("config: mmtrack's preprocessing, box coding and test settings (masktrack_config)")

    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if not any(k.startswith(TRACK_HEAD_PREFIX) for k in shapes):
        with torch.device("meta"):
            head = build_track_head(cfg, model.backbone.output_shape())
        shapes.update({TRACK_HEAD_PREFIX + k: v.shape for k, v in head.state_dict().items()})
        report.notes.append(f"track head from MODEL.ROI_TRACK_HEAD, under {TRACK_HEAD_PREFIX!r}")

    anchors = MASKTRACK_ANCHORS.order(cfg, model, source)
    classes = mmdet_class_order(extra, cfg, report, strict)
    p, mask = MMDET_PREFIX, "roi_heads.mask_head."
    rules = (
        resnet_rules(p + r"backbone\.")
        + [
            Rule(
                rf"{p}neck\.lateral_convs\.([0-3])\.conv\.(weight|bias)",
                lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}",
            ),
            Rule(
                rf"{p}neck\.fpn_convs\.([0-3])\.conv\.(weight|bias)",
                lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}",
            ),
        ]
        + mmdet_rpn_rules(anchors, source)
        + mmdet_box_head_rules(classes, source)
        + [
            Rule(
                rf"{p}roi_head\.mask_head\.convs\.(\d+)\.conv\.(weight|bias)",
                lambda m: f"{mask}mask_fcn{int(m[1]) + 1}.{m[2]}",
            ),
            Rule(rf"{p}roi_head\.mask_head\.upsample\.(weight|bias)", lambda m: f"{mask}deconv.{m[1]}"),
            reorder_rule(
                rf"{p}roi_head\.mask_head\.conv_logits\.(weight|bias)",
                lambda m: f"{mask}predictor.{m[1]}",
                classes,
                1,
                "roi_head.mask_head.conv_logits (one mask per class)",
                "classes reordered",
                source,
            ),
            Rule(
                r"track_head\.embed_head\.fcs\.(\d+)\.(weight|bias)",
                lambda m: f"{TRACK_HEAD_PREFIX}fc{int(m[1]) + 1}.{m[2]}",
            ),
        ]
    )
    return apply_rules(state_dict, rules, shapes, report, strict), report
