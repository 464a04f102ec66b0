"""temporal_roi_align.checkpoint.convert_masktrack_checkpoint: the toolbox's MaskTrack R-CNN
checkpoints (mmtracking 0.14 MaskTrackRCNN on mmdetection 2.x MaskRCNN, ResNet/ResNeXt + FPN)
-> Detectron2's Mask R-CNN FPN + this project's track head.

Source checkpoints are built here with the toolbox's parameter names and shapes, as its model
definitions produce them (the names and the published R-50 shapes are also written out as
literals below), and random values. The published architectures are converted on the meta
device (names and shapes). Numeric checks use a narrow R-50 (same depth and names, fewer
channels: the conversion maps names and checks shapes, whatever the widths) and compare each
converted part, and the whole detector, with a direct computation from the source tensors that
follows the toolbox's definitions (``toolbox_*`` functions: below, and those MaskTrack R-CNN
shares with the VID detectors in mmdet_reference.py)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, ImageList
from torchvision.ops import box_iou, roi_align

from temporal_roi_align import add_video_config
from temporal_roi_align.checkpoint import (
    TRACK_HEAD_PREFIX,
    ConversionError,
    convert_masktrack_checkpoint,
    convert_mmtrack_checkpoint,
)
from temporal_roi_align.checkpoint.common import build_meta_model
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.modeling import MaskTrackRCNN

from helpers import load_tool
from helpers.mmdet_reference import (
    ToolboxParams,
    toolbox_anchors,
    toolbox_bbox_head,
    toolbox_detections,
    toolbox_resnet,
    toolbox_rpn,
    toolbox_rpn_head,
)
from helpers.mmtrack_reference import YTVIS_2019_CLASSES

CONVERTED = {
    (depth, year): f"YouTubeVIS/converted/masktrack_{depth}_FPN_ytvis{year}.yaml"
    for depth in ("R_50", "R_101", "X_101")
    for year in (2019, 2021)
}
ARCHITECTURES = {"R_50": dict(depth=50), "R_101": dict(depth=101), "X_101": dict(depth=101, groups=64, base_width=4)}

# The toolbox's masktrack_rcnn_r50_fpn_12e_youtubevis2019 outside the backbone: FPN (ConvModule
# ``.conv`` with bias, no norm), RPNHead (3 sigmoid anchors), Shared2FCBBoxHead (40 classes +
# background), FCNMaskHead (4 convs, deconv ``upsample``, ``conv_logits``), RoIEmbedHead (2 fcs).
R50_HEAD_KEYS = [
    ("detector.neck.lateral_convs.0.conv.weight", (256, 256, 1, 1)),
    ("detector.neck.lateral_convs.0.conv.bias", (256,)),
    ("detector.neck.lateral_convs.1.conv.weight", (256, 512, 1, 1)),
    ("detector.neck.lateral_convs.1.conv.bias", (256,)),
    ("detector.neck.lateral_convs.2.conv.weight", (256, 1024, 1, 1)),
    ("detector.neck.lateral_convs.2.conv.bias", (256,)),
    ("detector.neck.lateral_convs.3.conv.weight", (256, 2048, 1, 1)),
    ("detector.neck.lateral_convs.3.conv.bias", (256,)),
    ("detector.neck.fpn_convs.0.conv.weight", (256, 256, 3, 3)),
    ("detector.neck.fpn_convs.0.conv.bias", (256,)),
    ("detector.neck.fpn_convs.1.conv.weight", (256, 256, 3, 3)),
    ("detector.neck.fpn_convs.1.conv.bias", (256,)),
    ("detector.neck.fpn_convs.2.conv.weight", (256, 256, 3, 3)),
    ("detector.neck.fpn_convs.2.conv.bias", (256,)),
    ("detector.neck.fpn_convs.3.conv.weight", (256, 256, 3, 3)),
    ("detector.neck.fpn_convs.3.conv.bias", (256,)),
    ("detector.rpn_head.rpn_conv.weight", (256, 256, 3, 3)),
    ("detector.rpn_head.rpn_conv.bias", (256,)),
    ("detector.rpn_head.rpn_cls.weight", (3, 256, 1, 1)),
    ("detector.rpn_head.rpn_cls.bias", (3,)),
    ("detector.rpn_head.rpn_reg.weight", (12, 256, 1, 1)),
    ("detector.rpn_head.rpn_reg.bias", (12,)),
    ("detector.roi_head.bbox_head.fc_cls.weight", (41, 1024)),
    ("detector.roi_head.bbox_head.fc_cls.bias", (41,)),
    ("detector.roi_head.bbox_head.fc_reg.weight", (160, 1024)),
    ("detector.roi_head.bbox_head.fc_reg.bias", (160,)),
    ("detector.roi_head.bbox_head.shared_fcs.0.weight", (1024, 12544)),
    ("detector.roi_head.bbox_head.shared_fcs.0.bias", (1024,)),
    ("detector.roi_head.bbox_head.shared_fcs.1.weight", (1024, 1024)),
    ("detector.roi_head.bbox_head.shared_fcs.1.bias", (1024,)),
    ("detector.roi_head.mask_head.convs.0.conv.weight", (256, 256, 3, 3)),
    ("detector.roi_head.mask_head.convs.0.conv.bias", (256,)),
    ("detector.roi_head.mask_head.convs.1.conv.weight", (256, 256, 3, 3)),
    ("detector.roi_head.mask_head.convs.1.conv.bias", (256,)),
    ("detector.roi_head.mask_head.convs.2.conv.weight", (256, 256, 3, 3)),
    ("detector.roi_head.mask_head.convs.2.conv.bias", (256,)),
    ("detector.roi_head.mask_head.convs.3.conv.weight", (256, 256, 3, 3)),
    ("detector.roi_head.mask_head.convs.3.conv.bias", (256,)),
    ("detector.roi_head.mask_head.upsample.weight", (256, 256, 2, 2)),
    ("detector.roi_head.mask_head.upsample.bias", (256,)),
    ("detector.roi_head.mask_head.conv_logits.weight", (40, 256, 1, 1)),
    ("detector.roi_head.mask_head.conv_logits.bias", (40,)),
    ("track_head.embed_head.fcs.0.weight", (1024, 12544)),
    ("track_head.embed_head.fcs.0.bias", (1024,)),
    ("track_head.embed_head.fcs.1.weight", (1024, 1024)),
    ("track_head.embed_head.fcs.1.bias", (1024,)),
]
# Some of the ResNet-50's 318 keys (stem 6, 16 bottlenecks x 18, 4 downsamples x 6).
R50_BACKBONE_KEYS = [
    ("detector.backbone.conv1.weight", (64, 3, 7, 7)),
    ("detector.backbone.bn1.num_batches_tracked", ()),
    ("detector.backbone.layer1.0.downsample.0.weight", (256, 64, 1, 1)),
    ("detector.backbone.layer2.3.conv3.weight", (512, 128, 1, 1)),
    ("detector.backbone.layer3.5.conv2.weight", (256, 256, 3, 3)),
    ("detector.backbone.layer4.2.bn3.running_var", (2048,)),
]
# The narrow R-50 of the numeric tests: stem 8, bottleneck widths 8..64 (outputs 32..256), FPN 32
# channels, 64-d box and track FCs, 16-channel mask convs.
NARROW = dict(base_channels=8, neck=32, fc=64, mask_dim=16)
NARROW_OPTS = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 8, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32, "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.ROI_BOX_HEAD.FC_DIM", 64, "MODEL.ROI_MASK_HEAD.CONV_DIM", 16,
    "MODEL.ROI_TRACK_HEAD.FC_DIM", 64,
]  # fmt: skip


# ---- the toolbox's checkpoints and computations, from its model definitions -----------------------


def toolbox_state_dict(
    depth=50,
    groups=1,
    base_width=4,
    base_channels=64,
    neck=256,
    fc=1024,
    mask_dim=256,
    num_classes=40,
    device="cpu",
    seed=0,
):
    """The state dict of the toolbox's MaskTrackRCNN: ``detector.`` = MaskRCNN (ResNet / ResNeXt
    ``backbone``, FPN ``neck``, RPNHead, Shared2FCBBoxHead, FCNMaskHead), ``track_head.`` =
    RoITrackHead's RoIEmbedHead. Random values; BatchNorm variances positive."""
    params = ToolboxParams(device, seed)
    d = "detector."
    stage_channels = params.resnet(d + "backbone.", depth, groups, base_width, base_channels)
    for i, channels in enumerate(stage_channels):
        params.conv(f"{d}neck.lateral_convs.{i}.conv", neck, channels, 1, bias=True)
    for i in range(4):
        params.conv(f"{d}neck.fpn_convs.{i}.conv", neck, neck, 3, bias=True)
    params.rpn_head(d + "rpn_head.", neck, 3)
    h = d + "roi_head.bbox_head."
    params.linear(h + "fc_cls", num_classes + 1, fc)
    params.linear(h + "fc_reg", 4 * num_classes, fc)
    params.linear(h + "shared_fcs.0", fc, neck * 49)
    params.linear(h + "shared_fcs.1", fc, fc)
    m = d + "roi_head.mask_head."
    for i in range(4):
        params.conv(f"{m}convs.{i}.conv", mask_dim, neck if i == 0 else mask_dim, 3, bias=True)
    params.param(m + "upsample.weight", mask_dim, mask_dim, 2, 2, fan_in=mask_dim)  # ConvTranspose2d: [in, out, k, k]
    params.param(m + "upsample.bias", mask_dim)
    params.conv(m + "conv_logits", num_classes, mask_dim, 1, bias=True)
    params.linear("track_head.embed_head.fcs.0", fc, neck * 49)
    params.linear("track_head.embed_head.fcs.1", fc, fc)
    return params.state_dict


def toolbox_fpn(sd, stages):
    """FPN(num_outs=5, add_extra_convs=False): 1x1 laterals, top-down nearest upsampling to the
    lower level's size, 3x3 output convs, P6 = max_pool2d(P5, 1, stride=2): [P2..P6]."""
    p = "detector.neck."
    laterals = [
        F.conv2d(c, sd[f"{p}lateral_convs.{i}.conv.weight"], sd[f"{p}lateral_convs.{i}.conv.bias"])
        for i, c in enumerate(stages)
    ]
    for i in range(3, 0, -1):
        laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
    outs = [
        F.conv2d(x, sd[f"{p}fpn_convs.{i}.conv.weight"], sd[f"{p}fpn_convs.{i}.conv.bias"], padding=1)
        for i, x in enumerate(laterals)
    ]
    return outs + [F.max_pool2d(outs[-1], 1, stride=2)]


STRIDES = (4, 8, 16, 32, 64)
# The MaskTrack test settings: RPN (3 anchors of size 8 x stride on each level) and detections.
MASKTRACK_RPN = dict(strides=STRIDES, scales=(8,), nms_pre=200, max_per_img=200)
MASKTRACK_DETECTIONS = dict(stds=[0.1, 0.1, 0.2, 0.2], score_thr=0.01)


def toolbox_roi_extract(pyramid, rois, size):
    """SingleRoIExtractor(RoIAlign(size, sampling_ratio=0, aligned), strides 4..32, finest_scale
    56): level floor(log2(sqrt(area) / 56 + 1e-6)) clamped to 0..3."""
    out = pyramid[0].new_zeros(len(rois), pyramid[0].shape[1], size, size)
    scale = torch.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    levels = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, 3).long()
    for level in range(4):
        inds = torch.nonzero(levels == level).flatten()
        if len(inds):
            out[inds] = roi_align(pyramid[level], [rois[inds]], size, 1.0 / STRIDES[level], 0, aligned=True)
    return out


def toolbox_mask_head(sd, roi_feats):
    """FCNMaskHead: 4 x (3x3 conv + ReLU), 2x2 stride-2 deconv + ReLU, 1x1 conv_logits."""
    p = "detector.roi_head.mask_head."
    x = roi_feats
    for i in range(4):
        x = F.relu(F.conv2d(x, sd[f"{p}convs.{i}.conv.weight"], sd[f"{p}convs.{i}.conv.bias"], padding=1))
    x = F.relu(F.conv_transpose2d(x, sd[p + "upsample.weight"], sd[p + "upsample.bias"], stride=2))
    return F.conv2d(x, sd[p + "conv_logits.weight"], sd[p + "conv_logits.bias"])


def toolbox_embed(sd, roi_feats):
    """RoIEmbedHead(num_fcs=2): flatten, relu(fc) for each fc."""
    x = roi_feats.flatten(1)
    for i in range(2):
        x = F.relu(F.linear(x, sd[f"track_head.embed_head.fcs.{i}.weight"], sd[f"track_head.embed_head.fcs.{i}.bias"]))
    return x


def toolbox_paste_masks(probabilities, boxes, height, width):
    """FCNMaskHead.get_seg_masks / _do_paste_mask on the whole image: each [28, 28] probability
    map resampled (grid_sample, align_corners=False) into its box, thresholded at 0.5."""
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    gy = ((ys - y0) / (y1 - y0) * 2 - 1)[:, :, None].expand(-1, height, width)
    gx = ((xs - x0) / (x1 - x0) * 2 - 1)[:, None, :].expand(-1, height, width)
    grid = torch.stack([gx, gy], dim=3)
    return F.grid_sample(probabilities[:, None], grid, align_corners=False)[:, 0] >= 0.5


# ---- fixtures -------------------------------------------------------------------------------------


def masktrack_cfg(name="YouTubeVIS/converted/masktrack_R_50_FPN_ytvis2019.yaml", opts=()):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_file(get_config_file(name))
    cfg.merge_from_list(list(opts) + ["MODEL.DEVICE", "cpu"])
    return cfg


def split(state_dict):
    """The converted dict -> (detector part, track head part without the prefix)."""
    head = {k[len(TRACK_HEAD_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(TRACK_HEAD_PREFIX)}
    return {k: v for k, v in state_dict.items() if not k.startswith(TRACK_HEAD_PREFIX)}, head


@pytest.fixture(scope="module")
def narrow():
    """The narrow R-50 MaskTrack R-CNN: source dict, report, the converted model (MaskTrackRCNN,
    strictly loaded) and its track head in float32, and float64 copies of the source."""
    cfg = masktrack_cfg(opts=NARROW_OPTS)
    source = toolbox_state_dict(**NARROW)
    source["detector.roi_head.bbox_head.fc_cls.bias"][-1] = 5.4  # background: about 20 detections pass 0.01
    converted, report = convert_masktrack_checkpoint(
        {"state_dict": source, "meta": {"CLASSES": YTVIS_2019_CLASSES}}, cfg, source="narrow.pth"
    )
    model = build_model(cfg).eval()
    model.load_state_dict(converted, strict=True)
    head = model.roi_heads.track_head
    source64 = {k: v.double() if v.is_floating_point() else v for k, v in source.items()}
    return SimpleNamespace(
        cfg=cfg, source=source, source64=source64, report=report, converted=converted, model=model, head=head
    )


def random_boxes(n, height, width, generator, min_size=8, max_size=100):
    corner = torch.rand(n, 2, generator=generator) * torch.tensor([width - min_size, height - min_size])
    boxes = torch.cat([corner, corner + min_size + torch.rand(n, 2, generator=generator) * (max_size - min_size)], 1)
    return torch.minimum(boxes, torch.tensor([width, height] * 2, dtype=torch.float32))


# ---- names and shapes -------------------------------------------------------------------------------


def test_the_toolbox_keys_are_the_literal_list():
    sd = toolbox_state_dict(device="meta")
    assert len(sd) == 318 + len(R50_HEAD_KEYS) == 364
    heads = [(k, tuple(v.shape)) for k, v in sd.items() if not k.startswith("detector.backbone.")]
    assert sorted(heads) == sorted(R50_HEAD_KEYS)
    for key, shape in R50_BACKBONE_KEYS:
        assert tuple(sd[key].shape) == shape


@pytest.mark.parametrize("depth", ["R_50", "R_101", "X_101"])
@pytest.mark.parametrize("year", [2019, 2021])
def test_published_architectures_convert_strictly_into_their_configs(depth, year):
    source = toolbox_state_dict(**ARCHITECTURES[depth], device="meta")
    converted, report = convert_masktrack_checkpoint({"state_dict": source}, masktrack_cfg(CONVERTED[depth, year]))
    assert len(report.mapped) == len(converted) == len(source) - len(report.ignored)
    assert {reason for _, reason in report.ignored} == {"BatchNorm update counters, unused by FrozenBN"}
    # Every key of the model (MaskTrackRCNN, the track head included) is filled.
    model = build_meta_model(masktrack_cfg(CONVERTED[depth, year]))
    assert isinstance(model, MaskTrackRCNN) and set(converted) == set(model.state_dict())
    _, head = split(converted)
    assert set(head) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    mapping = {s: t for s, t, _, _ in report.mapped}
    assert mapping["detector.backbone.layer3.5.conv2.weight"] == "backbone.bottom_up.res4.5.conv2.weight"
    assert mapping["detector.neck.lateral_convs.0.conv.weight"] == "backbone.fpn_lateral2.weight"
    assert mapping["detector.neck.fpn_convs.3.conv.bias"] == "backbone.fpn_output5.bias"
    assert mapping["detector.rpn_head.rpn_cls.weight"] == "proposal_generator.rpn_head.objectness_logits.weight"
    assert mapping["detector.roi_head.bbox_head.shared_fcs.1.weight"] == "roi_heads.box_head.fc2.weight"
    assert mapping["detector.roi_head.mask_head.convs.3.conv.weight"] == "roi_heads.mask_head.mask_fcn4.weight"
    assert mapping["detector.roi_head.mask_head.upsample.weight"] == "roi_heads.mask_head.deconv.weight"
    assert mapping["detector.roi_head.mask_head.conv_logits.bias"] == "roi_heads.mask_head.predictor.bias"
    assert mapping["track_head.embed_head.fcs.0.weight"] == "roi_heads.track_head.fc1.weight"
    # Same anchor order (one scale per level), classes kept (no names): nothing reordered.
    assert not [note for _, _, _, note in report.mapped if note]
    assert "class order kept: the checkpoint names no classes (meta['CLASSES'])" in report.notes


def test_a_different_architecture_is_refused():
    source = toolbox_state_dict(depth=101, device="meta")
    message = "source keys map to names the model does not have: detector.backbone.layer3.6"
    with pytest.raises(ConversionError, match=message):
        convert_masktrack_checkpoint({"state_dict": source}, masktrack_cfg(), source="r101.pth")


# ---- numeric equivalence ----------------------------------------------------------------------------


def test_backbone_and_fpn_compute_the_toolbox_fpn(narrow):
    backbone = narrow.model.backbone.double()
    try:
        x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        with torch.no_grad():
            ours = backbone(x)
        theirs = toolbox_fpn(narrow.source64, toolbox_resnet(narrow.source64, x))
    finally:
        backbone.float()
    assert [tuple(ours[f"p{i}"].shape[2:]) for i in range(2, 7)] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    for i, expected in enumerate(theirs):
        torch.testing.assert_close(ours[f"p{i + 2}"], expected, rtol=1e-9, atol=1e-9)


def test_rpn_anchors_logits_and_deltas_at_one_position_of_each_level(narrow):
    rpn = narrow.model.proposal_generator
    generator = torch.Generator().manual_seed(2)
    pyramid = [torch.randn(1, 32, h, w, generator=generator) for h, w in ((16, 20), (8, 10), (4, 5), (2, 3), (1, 2))]
    with torch.no_grad():
        logits, deltas = rpn.rpn_head(pyramid)
        anchors = rpn.anchor_generator(pyramid)
    for level, feature in enumerate(pyramid):
        h, w = feature.shape[2:]
        y, x = h // 2, w - 1  # one cell; its 3 anchors in the toolbox's order are the same 3 channels here
        their_logits, their_deltas = toolbox_rpn_head(narrow.source, feature)
        cell = slice((y * w + x) * 3, (y * w + x) * 3 + 3)
        torch.testing.assert_close(logits[level][0, :, y, x], their_logits[cell])
        torch.testing.assert_close(deltas[level][0, :, y, x].view(3, 4), their_deltas[cell])
        ours = anchors[level].tensor.view(h, w, 3, 4)[y, x]
        torch.testing.assert_close(
            ours, toolbox_anchors(h, w, STRIDES[level], MASKTRACK_RPN["scales"])[cell], rtol=0, atol=1e-4
        )


def test_rpn_proposals_match_the_toolbox(narrow):
    rpn = narrow.model.proposal_generator
    generator = torch.Generator().manual_seed(3)
    pyramid = [torch.randn(1, 32, 32 // 2**i, 40 // 2**i, generator=generator) for i in range(4)]
    pyramid.append(F.max_pool2d(pyramid[-1], 1, stride=2))
    image_shape = (121, 150)  # padded to 128 x 160
    with torch.no_grad():
        proposals, _ = rpn(
            ImageList(torch.zeros(1, 3, 128, 160), [image_shape]), {f"p{i + 2}": f for i, f in enumerate(pyramid)}
        )
    expected = toolbox_rpn(narrow.source, pyramid, image_shape, **MASKTRACK_RPN)
    assert len(expected) == 200  # 3840 anchors on P2: the per-level top 200 matters
    torch.testing.assert_close(proposals[0].proposal_boxes.tensor, expected)


def test_box_mask_and_track_heads_compute_the_toolbox_heads(narrow):
    s, heads = narrow.source64, narrow.model.roi_heads
    generator = torch.Generator().manual_seed(4)
    x7 = torch.randn(6, 32, 7, 7, generator=generator, dtype=torch.float64)
    x14 = torch.randn(6, 32, 14, 14, generator=generator, dtype=torch.float64)
    box_head, box_predictor, mask_head = (m.double() for m in (heads.box_head, heads.box_predictor, heads.mask_head))
    try:
        with torch.no_grad():
            scores, deltas = box_predictor(box_head(x7))
            masks = mask_head.layers(x14)
    finally:
        for m in (box_head, box_predictor, mask_head):
            m.float()
    cls_score, bbox_pred = toolbox_bbox_head(s, x7)
    assert scores.shape == (6, 41) and deltas.shape == (6, 160) and masks.shape == (6, 40, 28, 28)
    torch.testing.assert_close(scores, cls_score, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(deltas, bbox_pred, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(masks, toolbox_mask_head(s, x14), rtol=1e-9, atol=1e-9)


def test_track_head_embeddings_match_the_toolbox(narrow):
    head = narrow.head.double()
    generator = torch.Generator().manual_seed(5)
    pyramid = [torch.randn(1, 32, 64 // s, 96 // s, generator=generator, dtype=torch.float64) for s in STRIDES[:4]]
    # Sizes from 8 to 250 pixels: all four levels.
    boxes = torch.cat([random_boxes(6, 256, 384, generator, 8, 60), random_boxes(6, 256, 384, generator, 100, 250)])
    try:
        with torch.no_grad():
            ours = head.embed({f"p{i + 2}": f for i, f in enumerate(pyramid)}, [Boxes(boxes)])[0]
    finally:
        head.float()
    theirs = toolbox_embed(narrow.source64, toolbox_roi_extract(pyramid, boxes.double(), 7))
    assert ours.shape == (12, 64)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_whole_model_gives_the_toolbox_detections_masks_embeddings_and_tracks(narrow):
    """MaskTrackRCNN (the converted checkpoint loaded strictly) on one frame, no resize (the
    output size is the input size), against the toolbox's MaskTrackRCNN.simple_test composed from
    the ``toolbox_*`` functions: MaskRCNN's detections and masks, the track head's embeddings of the
    detected boxes, then the tracker on the same frame again as the video's next frame."""
    source, model = narrow.source, narrow.model
    height, width = 100, 140  # padded to 128 x 160
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(6)) * 255
    with torch.no_grad():
        found = model([{"image": image, "height": height, "width": width, "video_id": "v", "frame_id": 0}])
        found = found[0]["instances"]
        again = model([{"image": image, "height": height, "width": width, "video_id": "v", "frame_id": 1}])
        again = again[0]["instances"]
        x = F.pad((image - model.pixel_mean) / model.pixel_std, (0, 160 - width, 0, 128 - height))[None]
        pyramid = toolbox_fpn(source, toolbox_resnet(source, x))
        proposals = toolbox_rpn(source, pyramid, (height, width), **MASKTRACK_RPN)
        cls_score, bbox_pred = toolbox_bbox_head(source, toolbox_roi_extract(pyramid[:4], proposals, 7))
        boxes, scores, labels = toolbox_detections(
            proposals, cls_score, bbox_pred, (height, width), **MASKTRACK_DETECTIONS
        )
        mask_logits = toolbox_mask_head(source, toolbox_roi_extract(pyramid[:4], boxes, 14))
        probabilities = mask_logits[torch.arange(len(labels)), labels].sigmoid()
        masks = toolbox_paste_masks(probabilities, boxes, height, width)
        embeddings = toolbox_embed(source, toolbox_roi_extract(pyramid[:4], boxes, 7))
    assert 0 < len(found) == len(boxes) < 100
    torch.testing.assert_close(found.pred_boxes.tensor, boxes, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(found.scores, scores)
    assert found.pred_classes.tolist() == labels.tolist()
    assert found.pred_masks.shape == masks.shape == (len(boxes), height, width)
    # Box coordinates differ in the last float bits (Detectron2 divides deltas by the weights
    # 10, 5 where the toolbox multiplies by stds 0.1, 0.2): a pixel on a mask's 0.5 contour may flip.
    assert (found.pred_masks != masks).sum() <= len(boxes)
    assert masks.sum() > 0
    torch.testing.assert_close(found.track_embeddings, embeddings, rtol=1e-4, atol=1e-4)
    # Tracks: the first frame starts one per detection (ids 0..N-1). The same frame again, as
    # the next frame: the toolbox's match scores (log softmax of [0, dot products] + log score
    # + 2 IoU + 10 same class; the new-track column: 10), then pairs taken greedily by score
    # (one detection per track), detections left over get new ids N, N+1, ...
    assert found.pred_track_ids.tolist() == list(range(len(boxes)))
    logits = torch.cat([torch.zeros(len(boxes), 1), embeddings @ embeddings.t()], dim=1)
    match = logits.log_softmax(dim=1) + scores.log()[:, None]
    match[:, 1:] += 2 * box_iou(boxes, boxes) + 10 * (labels[:, None] == labels[None, :])
    match[:, 0] += 10
    pairs = sorted(
        (
            (match[i, j + 1].item(), i, j)
            for i in range(len(boxes))
            for j in range(len(boxes))
            if match[i, j + 1] > match[i, 0]
        ),
        key=lambda p: -p[0],
    )
    expected, taken = [None] * len(boxes), set()
    for _, i, j in pairs:
        if expected[i] is None and j not in taken:
            expected[i] = j
            taken.add(j)
    new_ids = iter(range(len(boxes), 2 * len(boxes)))
    expected = [j if j is not None else next(new_ids) for j in expected]
    assert again.pred_track_ids.tolist() == expected


def test_the_tool_recognises_masktrack_checkpoints_and_the_output_loads(narrow, tmp_path, capsys):
    """tools/convert_checkpoint.py mmtrack dispatches checkpoints with track_head.* tensors to
    convert_masktrack_checkpoint; the written file loads into MaskTrackRCNN with every key."""
    tool = load_tool("convert_checkpoint")
    config = tmp_path / "narrow.yaml"
    nested = {"_BASE_": get_config_file(CONVERTED["R_50", 2019])}
    for key, value in zip(NARROW_OPTS[::2], NARROW_OPTS[1::2]):
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    config.write_text(yaml.safe_dump(nested))
    cfg = setup_cfg(str(config), ["MODEL.DEVICE", "cpu"])
    checkpoint = {"state_dict": narrow.source, "meta": {"CLASSES": list(YTVIS_2019_CLASSES)}}
    direct, _ = convert_masktrack_checkpoint(checkpoint, cfg)
    dispatched, _ = convert_mmtrack_checkpoint(checkpoint, cfg)
    assert list(direct) == list(dispatched) and all(torch.equal(direct[k], dispatched[k]) for k in direct)
    source, output = tmp_path / "masktrack.pth", tmp_path / "out.pth"
    torch.save(checkpoint, source)
    assert tool.main(["mmtrack", str(source), str(output), "--config-file", str(config)]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    model = build_model(cfg)
    result = DetectionCheckpointer(model).load(str(output))
    assert isinstance(model, MaskTrackRCNN) and not result.get("incompatible", None)
    for name, value in model.state_dict().items():
        assert torch.equal(value, narrow.converted[name]), name
    # The VID model of the same tool refuses it with the MaskTrack config's differences spelled out.
    vid_cfg = setup_cfg(get_config_file("ImageNetVID/converted/selsa_R_50_DC5.yaml"))
    with pytest.raises(ConversionError, match="the config differs from mmtrack's MaskTrack R-CNN"):
        convert_mmtrack_checkpoint(checkpoint, vid_cfg, source="masktrack.pth")


# ---- classes, anchors, config -----------------------------------------------------------------------


def test_class_order_follows_the_test_dataset(narrow):
    permuted = list(YTVIS_2019_CLASSES[::-1])
    MetadataCatalog.get("masktrack_test_reversed_classes").set(thing_classes=permuted)
    cfg = masktrack_cfg(opts=NARROW_OPTS + ["DATASETS.TEST", ("masktrack_test_reversed_classes",)])
    checkpoint = {"state_dict": narrow.source, "meta": {"CLASSES": YTVIS_2019_CLASSES}}
    converted, report = convert_masktrack_checkpoint(checkpoint, cfg)
    s, c = narrow.source, converted
    index = [YTVIS_2019_CLASSES.index(name) for name in permuted]  # = 39, 38, ..., 0
    h, m = "detector.roi_head.bbox_head.", "detector.roi_head.mask_head."
    torch.testing.assert_close(c["roi_heads.box_predictor.cls_score.weight"], s[h + "fc_cls.weight"][index + [40]])
    torch.testing.assert_close(c["roi_heads.box_predictor.cls_score.bias"], s[h + "fc_cls.bias"][index + [40]])
    regression = s[h + "fc_reg.weight"].view(40, 4, -1)[index].reshape(160, -1)
    torch.testing.assert_close(c["roi_heads.box_predictor.bbox_pred.weight"], regression)
    torch.testing.assert_close(c["roi_heads.mask_head.predictor.weight"], s[m + "conv_logits.weight"][index])
    torch.testing.assert_close(c["roi_heads.mask_head.predictor.bias"], s[m + "conv_logits.bias"][index])
    reordered = (
        "class order: the checkpoint's reordered to 'masktrack_test_reversed_classes''s; background last in both"
    )
    assert reordered in report.notes
    # The registered YouTube-VIS 2019 names carry the official classes, in the checkpoint's order.
    assert "class order: the same as 'ytvis_2019_val'; background last in both" in narrow.report.notes
    assert not [note for _, _, _, note in narrow.report.mapped if note]
    # Other names: refused.
    MetadataCatalog.get("masktrack_test_other_classes").set(thing_classes=["cat"] * 40)
    cfg = masktrack_cfg(opts=NARROW_OPTS + ["DATASETS.TEST", ("masktrack_test_other_classes",)])
    with pytest.raises(ConversionError, match="are not those of 'masktrack_test_other_classes'"):
        convert_masktrack_checkpoint(checkpoint, cfg)


def test_anchors_listed_in_another_order_are_reordered_and_wrong_anchors_refused(narrow):
    cfg = masktrack_cfg(opts=NARROW_OPTS + ["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", [[2.0, 0.5, 1.0]]])
    converted, report = convert_masktrack_checkpoint({"state_dict": narrow.source}, cfg)
    r, s = "proposal_generator.rpn_head.", "detector.rpn_head."
    torch.testing.assert_close(converted[r + "objectness_logits.bias"], narrow.source[s + "rpn_cls.bias"][[2, 0, 1]])
    deltas = narrow.source[s + "rpn_reg.weight"].view(3, 4, -1, 1, 1)[[2, 0, 1]].reshape(12, -1, 1, 1)
    torch.testing.assert_close(converted[r + "anchor_deltas.weight"], deltas)
    assert "anchors reordered from mmtrack's order (ratio-major) to the config's" in report.format()
    with pytest.raises(ConversionError, match="does not give mmtrack's anchors"):
        cfg = masktrack_cfg(opts=NARROW_OPTS + ["MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128], [256], [1024]]])
        convert_masktrack_checkpoint({"state_dict": narrow.source}, cfg)


def test_config_differences_missing_keys_and_other_checkpoints_are_reported(narrow):
    checkpoint = {"state_dict": narrow.source}
    cfg = masktrack_cfg(opts=NARROW_OPTS + ["MODEL.RPN.PRE_NMS_TOPK_TEST", 1000, "INPUT.RESIZE_STYLE", "detectron2"])
    with pytest.raises(ConversionError, match="MODEL.RPN.PRE_NMS_TOPK_TEST is 1000, mmtrack uses 200"):
        convert_masktrack_checkpoint(checkpoint, cfg, source="x.pth")
    converted, report = convert_masktrack_checkpoint(checkpoint, cfg, strict=False)
    assert len(converted) == len(narrow.converted)
    assert any("INPUT.RESIZE_STYLE is 'detectron2', mmtrack uses 'mmtrack'" in note for note in report.notes)
    # The config without add_video_config's keys.
    plain = get_cfg()
    with pytest.raises(ConversionError, match="x.pth: the config has no MODEL.ROI_TRACK_HEAD"):
        convert_masktrack_checkpoint(checkpoint, plain, source="x.pth")
    # A checkpoint without a track head (e.g. the toolbox's COCO Mask R-CNN).
    detector_only = {k: v for k, v in narrow.source.items() if not k.startswith("track_head.")}
    with pytest.raises(ConversionError, match="has no track_head.. tensors: not a MaskTrack R-CNN checkpoint"):
        convert_masktrack_checkpoint({"state_dict": detector_only}, narrow.cfg)
    converted, report = convert_masktrack_checkpoint({"state_dict": detector_only}, narrow.cfg, strict=False)
    assert not any(k.startswith(TRACK_HEAD_PREFIX) for k in converted)
    assert any("model keys are not filled: roi_heads.track_head.fc1.weight" in note for note in report.notes)
