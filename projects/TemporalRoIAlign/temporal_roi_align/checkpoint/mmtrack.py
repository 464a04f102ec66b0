"""
ImageNet VID checkpoints of mmtracking 0.x (mmtrack, on mmdetection 2.x) ->
this project's VideoRCNN: SELSA, SELSA + Temporal RoI Align, and the single-frame Faster R-CNN;
-> FgfaRCNN and DffRCNN: FGFA and DFF. :func:`convert_mmtrack_checkpoint` hands mmtrack's
YouTube-VIS MaskTrack R-CNN checkpoints (recognised by their ``track_head.*`` tensors) to
:func:`.masktrack.convert_masktrack_checkpoint`.

The source names and shapes are those of mmtrack's ``faster_rcnn_r50_dc5`` detector
(ResNet ``backbone``, ``neck`` = ChannelMapper 3x3 conv + ReLU to 512 channels, ``rpn_head``,
``roi_head`` with ``bbox_roi_extractor`` and ``bbox_head``), under ``detector.`` in the video
models, plus FGFA's and DFF's FlowNetSimple (``motion.``) and FGFA's EmbedAggregator
(``aggregator.``, see :mod:`.flow_rules`). See docs/converting_checkpoints.md for every
difference handled.
"""

from typing import Optional, Tuple

import torch

from ..data.datasets import VID_CATEGORIES
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
    state_dict_of,
)
from .flow_rules import fgfa_aggregator_rules, flownet_rules
from .masktrack import convert_masktrack_checkpoint
from .resnet import resnet_rules

__all__ = [
    "MMTRACK_VID_CLASSES",
    "mmtrack_base_anchors",
    "mmtrack_config",
    "convert_mmtrack_checkpoint",
]

# The RPN anchors of mmtrack's faster_rcnn_r50_dc5: AnchorGenerator(strides=[16],
# scales=[4, 8, 16, 32], ratios=[0.5, 1, 2]).
MMTRACK_VID_ANCHORS = MMDetAnchors(strides=(16,), scales=(4, 8, 16, 32))

# mmtrack's ImageNet VID classes, in the order of its classifier (background comes after).
MMTRACK_VID_CLASSES = tuple(name for name, _ in VID_CATEGORIES)


def mmtrack_base_anchors() -> torch.Tensor:
    """mmtrack's VID anchors of one feature cell at (0, 0), ``[12, 4]`` XYXY, in the order of its
    RPN output channels (:meth:`MMDetAnchors.cell_anchors`)."""
    return MMTRACK_VID_ANCHORS.cell_anchors(16)


def mmtrack_config(selsa: bool, troi: bool, flow: Optional[str] = None) -> Tuple[Tuple[str, object], ...]:
    """``(config key, value)`` pairs that reproduce mmtrack's model and test pipeline; ``flow``:
    None, or "fgfa" / "dff" for its flow-guided models (which have neither SELSA nor TRoI)."""
    if flow not in (None, "fgfa", "dff") or (flow and (selsa or troi)):
        raise ValueError(f"mmtrack_config: no mmtrack model with selsa={selsa}, troi={troi}, flow={flow!r}")
    expected = [
        # Test pipeline: BGR file -> RGB, resize to short side 600 / long side <= 1000, normalise, pad to 16.
        ("INPUT.FORMAT", "RGB"),
        ("MODEL.PIXEL_MEAN", (123.675, 116.28, 103.53)),
        ("MODEL.PIXEL_STD", (58.395, 57.12, 57.375)),
        ("INPUT.MIN_SIZE_TEST", 600),
        ("INPUT.MAX_SIZE_TEST", 1000),
        ("INPUT.RESIZE_STYLE", "mmtrack"),
        # ResNet "pytorch" style, conv5 dilated, BatchNorm in eval mode; neck: 3x3 conv to 512 + ReLU.
        ("MODEL.RESNETS.STRIDE_IN_1X1", False),
        ("MODEL.RESNETS.RES5_DILATION", 2),
        ("MODEL.RESNETS.NORM", "FrozenBN"),
        ("MODEL.CHANNEL_REDUCTION.IN_FEATURE", "res5"),
        # RPN on the neck's output; sigmoid objectness; deltas with stds 1; test NMS.
        ("MODEL.RPN.IN_FEATURES", ("res5_reduced",)),
        ("MODEL.ANCHOR_GENERATOR.OFFSET", 0.0),
        ("MODEL.RPN.BBOX_REG_WEIGHTS", (1.0, 1.0, 1.0, 1.0)),
        ("MODEL.RPN.PRE_NMS_TOPK_TEST", 6000),
        ("MODEL.RPN.POST_NMS_TOPK_TEST", 300),
        ("MODEL.RPN.NMS_THRESH", 0.7),
        # RoIAlign 7x7, aligned (half-pixel offset), 2x2 samples per bin; deltas with stds 0.2.
        ("MODEL.ROI_HEADS.IN_FEATURES", ("res5_reduced",)),
        ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"),
        ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7),
        ("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2),
        ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", (5.0, 5.0, 5.0, 5.0)),
        ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0001),
        ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.5),
        ("TEST.DETECTIONS_PER_IMAGE", 100),
        ("MODEL.ROI_BOX_HEAD.NAME", "SelsaBoxHead" if selsa else "FastRCNNConvFCHead"),
        ("MODEL.TEMPORAL_ROI_ALIGN.ENABLED", troi),
    ]
    if selsa or troi:
        # 14 frames spread over the video plus the target frame itself.
        expected += [("INPUT.SUPPORT.TEST_MODE", "uniform_with_target"), ("INPUT.SUPPORT.NUM_TEST", 14)]
    if selsa:
        expected += [
            ("MODEL.SELSA.NUM_ATTENTION_GROUPS", 16),
            # References pass the FC layers without aggregation; the target frame is one of the
            # supports (uniform_with_target), its proposals pooled by plain RoIAlign as theirs.
            ("MODEL.SELSA.REFERENCE_MODE", "mmtrack"),
            ("MODEL.SELSA.SUPPORT_PROPOSALS_TEST", 300),
        ]
    if troi:
        expected += [
            ("MODEL.TEMPORAL_ROI_ALIGN.TOPK", 2),
            ("MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS", 4),
            ("MODEL.TEMPORAL_ROI_ALIGN.EMBED", "shared"),
        ]
    expected.append(("MODEL.META_ARCHITECTURE", {None: "VideoRCNN", "fgfa": "FgfaRCNN", "dff": "DffRCNN"}[flow]))
    if flow:
        expected += [
            # FlowNetSimple(img_scale_factor=0.5) with its default normalisation and flow scale;
            # flow_warp_feats' grid (x / W), which the checkpoints were trained with.
            ("MODEL.FLOW_NET.INPUT_SCALE", 0.5),
            ("MODEL.FLOW_NET.PIXEL_MEAN", (0.411, 0.432, 0.450)),
            ("MODEL.FLOW_NET.PIXEL_STD", (255.0, 255.0, 255.0)),
            ("MODEL.FLOW_NET.FLOW_SCALE", 5.0),
            ("MODEL.FLOW_NET.WIDTH_DIVISOR", 1),
            ("MODEL.FLOW_NET.WARP_CONVENTION", "toolbox"),
        ]
    if flow == "fgfa":
        expected += [
            # EmbedAggregator(num_convs=1, channels=512, kernel_size=3).
            ("MODEL.FGFA.NUM_EMBED_CONVS", 1),
            ("MODEL.FGFA.EMBED_KERNEL_SIZE", 3),
            # test_with_fix_stride, frame_range [-15, 15], stride 1: frames t-15 .. t+15 clamped to
            # the video (the target's own features in the middle, added by FgfaRCNN).
            ("INPUT.SUPPORT.TEST_MODE", "stride"),
            ("INPUT.SUPPORT.NUM_TEST", 30),
            ("INPUT.SUPPORT.TEST_STRIDE", 1),
        ]
    if flow == "dff":
        # test_cfg key_frame_interval=10: the backbone on frames 0, 10, 20, ... of each video.
        expected += [
            ("INPUT.SUPPORT.TEST_MODE", "key_frame"),
            ("INPUT.SUPPORT.NUM_TEST", 1),
            ("VIDEO.KEY_FRAME_INTERVAL", 10),
        ]
    return tuple(expected)


def convert_mmtrack_checkpoint(checkpoint, cfg, source: str = "<checkpoint>", strict: bool = True):
    """
    An mmtrack ImageNet VID checkpoint (as loaded by ``torch.load``: the tensors under
    ``"state_dict"``, class names under ``"meta"``) -> the state dict of the model of ``cfg``;
    mmtrack's pretrained flow network alone (``flownet_simple.pth``, the FlowNetSimple keys
    without ``motion.``) -> only the ``flow_net.*`` tensors of an FGFA or DFF model, to start
    training from (with the converted ImageNet backbone).
    SELSA is recognised by ``roi_head.bbox_head.aggregator.*``, Temporal RoI Align by
    ``roi_head.bbox_roi_extractor.embed_network.*``, FGFA by ``motion.*`` (the flow network)
    with ``aggregator.*``, DFF by ``motion.*`` alone; none of them is the single-frame detector.
    A MaskTrack R-CNN checkpoint (``track_head.*``) is converted by
    :func:`~.masktrack.convert_masktrack_checkpoint` (the config must then be a MaskTrack one).

    Returns ``(state_dict, ConversionReport)``; raises :class:`ConversionError` (see
    :func:`apply_rules` for ``strict``; with ``strict``, also when ``cfg`` differs from
    :func:`mmtrack_config`).
    """
    state_dict, extra = state_dict_of(checkpoint, source, ("state_dict",))
    if any(k.startswith("track_head.") for k in state_dict):
        return convert_masktrack_checkpoint(checkpoint, cfg, source, strict)
    if "predict_flow.conv.weight" in state_dict:
        return _convert_flownet_alone(state_dict, cfg, source, strict)
    names = [k[len("detector.") :] if k.startswith("detector.") else k for k in state_dict]
    selsa = any(name.startswith("roi_head.bbox_head.aggregator.") for name in names)
    troi = any(name.startswith("roi_head.bbox_roi_extractor.embed_network.") for name in names)
    flow = None
    if any(k.startswith("motion.") for k in state_dict):
        flow = "fgfa" if any(k.startswith("aggregator.") for k in state_dict) else "dff"
        if selsa or troi:
            raise ConversionError(f"{source}: a flow network ('motion.*') with SELSA or TRoI: no mmtrack model")
    kind = {(True, True): "SELSA + TRoI", (True, False): "SELSA", (False, True): "TRoI"}.get(
        (selsa, troi), {"fgfa": "FGFA", "dff": "DFF"}.get(flow, "single-frame Faster R-CNN")
    )
    report = ConversionReport(source)
    report.notes.append(f"mmtrack model: {kind}")

    model = build_meta_model(cfg)
    differences = config_differences(cfg, mmtrack_config(selsa, troi, flow), "mmtrack")
    if selsa and cfg.MODEL.SELSA.NUM_MODULES != cfg.MODEL.ROI_BOX_HEAD.NUM_FC:
        differences.append("MODEL.SELSA.NUM_MODULES is not ROI_BOX_HEAD.NUM_FC: mmtrack aggregates after every FC")
    if model.backbone.size_divisibility != 16:
        differences.append(f"images are padded to {model.backbone.size_divisibility}, mmtrack pads to 16")
    enforce_config_match(differences, report, strict, f"mmtrack's {kind}")
    if not differences:
        report.notes.append("config: mmtrack's preprocessing, box coding and test settings (mmtrack_config)")

    anchors = MMTRACK_VID_ANCHORS.order(cfg, model, source)
    classes = mmdet_class_order(extra, cfg, report, strict, default=MMTRACK_VID_CLASSES)
    p = MMDET_PREFIX
    rules = (
        resnet_rules(p + r"backbone\.")
        + [Rule(rf"{p}neck\.convs\.0\.conv\.(weight|bias)", lambda m: f"backbone.reduce.{m[1]}")]
        + mmdet_rpn_rules(anchors, source)
        + mmdet_box_head_rules(classes, source)
        + [
            Rule(
                rf"{p}roi_head\.bbox_roi_extractor\.embed_network\.conv\.(weight|bias)",
                lambda m: f"roi_heads.box_pooler.aggregation.embed.{m[1]}",
            ),
            Rule(
                rf"{p}roi_head\.bbox_head\.aggregator\.(\d+)\.(fc_embed|ref_fc_embed|fc|ref_fc)\.(weight|bias)",
                lambda m: f"roi_heads.box_head.aggregators.{m[1]}.{m[2]}.{m[3]}",
            ),
        ]
    )
    if flow:
        rules += flownet_rules() + fgfa_aggregator_rules()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    return apply_rules(state_dict, rules, shapes, report, strict), report


def _convert_flownet_alone(state_dict, cfg, source: str, strict: bool):
    """mmtrack's FlowNetSimple alone -> ``flow_net.*`` of the FGFA / DFF model of ``cfg``; the
    config's flow network must preprocess and scale as mmtrack's (not necessarily warp alike)."""
    report = ConversionReport(source)
    report.notes.append("mmtrack model: FlowNetSimple alone (a pretrained flow network); only flow_net.* is converted")
    model = build_meta_model(cfg)
    shapes = {k: v.shape for k, v in model.state_dict().items() if k.startswith("flow_net.")}
    if not shapes:
        raise ConversionError(
            f"{source}: a flow network alone, but the {cfg.MODEL.META_ARCHITECTURE} of the config has none "
            "(an FGFA or DFF config is needed)"
        )
    expected = [
        (key, value)
        for key, value in mmtrack_config(False, False, "dff")
        if key.startswith("MODEL.FLOW_NET.") and key != "MODEL.FLOW_NET.WARP_CONVENTION"
    ]
    enforce_config_match(config_differences(cfg, expected, "mmtrack"), report, strict, "mmtrack's FlowNetSimple")
    return apply_rules(state_dict, flownet_rules("", "flow_net."), shapes, report, strict), report
