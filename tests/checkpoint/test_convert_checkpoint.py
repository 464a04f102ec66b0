"""tools/convert_checkpoint.py and temporal_roi_align.checkpoint.

Source checkpoints are built here with the toolbox's parameter names and shapes, as its model
definitions (mmtracking 0.14 / mmdetection 2.x) produce them, and random values. Each converted
part is checked against a direct computation from the source tensors that follows the toolbox's
definition of that part (``toolbox_*`` functions: below, and those the VID detectors share with
MaskTrack R-CNN in mmdet_reference.py)."""

import copy
from collections import OrderedDict
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torchvision.ops import roi_align

from temporal_roi_align.checkpoint import (
    MMTRACK_VID_CLASSES,
    ConversionError,
    convert_mmtrack_checkpoint,
    convert_torchvision_checkpoint,
    load_checkpoint,
)
from temporal_roi_align.checkpoint.common import build_meta_model
from temporal_roi_align.data.transforms import MMTrackResizeShortestEdge
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file

from helpers import load_tool
from helpers.mmdet_reference import (
    toolbox_anchors,
    toolbox_bbox_head,
    toolbox_decode,
    toolbox_detections,
    toolbox_rpn,
    toolbox_rpn_head,
)
from helpers.mmtrack_reference import (
    CONVERTED,
    DC5_DETECTIONS,
    DC5_RPN,
    TOY,
    TOY_OPTS,
    TOY_YAML,
    assert_same_detections,
    toolbox_dc5_features,
    toolbox_selsa_head,
    toolbox_state_dict,
    toolbox_temporal_roi_align,
)

# ---- the toolbox's checkpoints and computations, from its model definitions -----------------


# ---- fixtures ----------------------------------------------------------------------------------


def toy_cfg(name="selsa_troi_R_50_DC5.yaml", extra=()):
    return setup_cfg(get_config_file(CONVERTED + name), TOY_OPTS + ["MODEL.DEVICE", "cpu"] + list(extra))


@pytest.fixture(scope="module")
def toy():
    """Toy SELSA + TRoI: the source dict, the report and the converted model, in float32 and in
    float64 (Detectron2 decodes boxes in float32, so the parts that decode are compared in float32)."""
    source = toolbox_state_dict(**TOY)
    converted, report = convert_mmtrack_checkpoint({"state_dict": source, "meta": {}}, toy_cfg(), source="toy.pth")
    model = build_model(toy_cfg()).eval()
    model.load_state_dict(converted, strict=True)
    return SimpleNamespace(
        source=source,
        source64={k: v.double() if v.is_floating_point() else v for k, v in source.items()},
        report=report,
        model=model,
        model64=copy.deepcopy(model).double(),
    )


def random_boxes(n, height, width, generator):
    """Boxes inside a height x width image, float32 values (Boxes holds float32) in float64."""
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([width - 20.0, height - 20.0])
    boxes = torch.cat([corner, corner + 8 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 100], 1)
    return torch.minimum(boxes, torch.tensor([width, height] * 2, dtype=torch.float64)).float().double()


# ---- numeric equivalence -----------------------------------------------------------------------


def test_backbone_and_neck_compute_the_toolbox_function(toy):
    source, model = toy.source64, toy.model64
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours = model.backbone(x)["res5_reduced"]
        theirs = toolbox_dc5_features(source, x)
    assert ours.shape == (1, 32, 6, 8)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_rpn_anchors_scores_deltas_and_proposals_match_the_toolbox(toy):
    source, rpn = toy.source, toy.model.proposal_generator
    height, width = 7, 9
    feature = torch.randn(1, 32, height, width, generator=torch.Generator().manual_seed(2))
    image_shape = (height * 16 - 5, width * 16 - 9)
    with torch.no_grad():
        logits, deltas = rpn.rpn_head([feature])
        anchors = rpn.anchor_generator([feature])[0].tensor
        their_logits, their_deltas = toolbox_rpn_head(source, feature)
        their_anchors = toolbox_anchors(height, width, 16, DC5_RPN["scales"])
        expected = toolbox_rpn(source, [feature], image_shape, **DC5_RPN)
        images = ImageList(torch.zeros(1, 3, height * 16, width * 16), [image_shape])
        proposals, _ = rpn(images, {"res5_reduced": feature})

    # Same anchor boxes at every cell, our channel a being their channel match[a].
    ours, theirs = anchors.view(-1, 12, 4), their_anchors.view(-1, 12, 4)
    match = [int((theirs[0] - box).abs().sum(1).argmin()) for box in ours[0]]
    assert sorted(match) == list(range(12)) and match != list(range(12))
    torch.testing.assert_close(ours, theirs[:, match], rtol=0, atol=1e-4)
    torch.testing.assert_close(logits[0][0].permute(1, 2, 0), their_logits.view(height, width, 12)[..., match])
    ours_deltas = deltas[0][0].view(12, 4, height, width).permute(2, 3, 0, 1)
    torch.testing.assert_close(ours_deltas, their_deltas.view(height, width, 12, 4)[:, :, match])
    assert "anchors reordered from mmtrack's order (ratio-major) to the config's" in toy.report.format()
    # Same proposals after decoding (weights 1 = stds 1), top-k, clipping and NMS.
    torch.testing.assert_close(proposals[0].proposal_boxes.tensor, expected)


def test_temporal_roi_align_matches_the_toolbox(toy):
    source, model = toy.source64, toy.model64
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(1, 32, 10, 12, generator=generator, dtype=torch.float64)
    # At test the toolbox's references are the support frames and the target frame itself.
    supports = [torch.randn(1, 32, 10, 12, generator=generator, dtype=torch.float64) for _ in range(2)] + [target]
    boxes = random_boxes(5, 160, 192, generator)
    with torch.no_grad():
        ours = model.roi_heads.box_pooler([target], [Boxes(boxes)], [[torch.cat(supports)]])
    theirs = toolbox_temporal_roi_align(source, target, supports, boxes)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_selsa_box_head_and_detections_match_the_toolbox(toy):
    source, model = toy.source64, toy.model64
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(20, 32, 7, 7, generator=generator, dtype=torch.float64)
    refs = torch.randn(45, 32, 7, 7, generator=generator, dtype=torch.float64)
    image_shape = (150, 200)
    proposals = Instances(image_shape, proposal_boxes=Boxes(random_boxes(20, 150, 200, generator)))
    heads = model.roi_heads
    with torch.no_grad():
        predictions = heads.box_predictor(heads.box_head(x, refs, [20], [45]))
    cls_score, bbox_pred = toolbox_selsa_head(source, x, refs, num_fcs=3)
    torch.testing.assert_close(predictions[0], cls_score, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(predictions[1], bbox_pred, rtol=1e-9, atol=1e-9)
    # Detectron2 decodes in float32. BBOX_REG_WEIGHTS (5, 5, 5, 5) decode as the toolbox's stds 0.2.
    predictions = tuple(p.float() for p in predictions)
    cls_score, bbox_pred, boxes = cls_score.float(), bbox_pred.float(), proposals.proposal_boxes.tensor
    decoded = heads.box_predictor.predict_boxes(predictions, [proposals])[0]
    torch.testing.assert_close(decoded, toolbox_decode(boxes, bbox_pred, [0.2] * 4))
    found = heads.box_predictor.inference(predictions, [proposals])[0][0]
    boxes, scores, labels = toolbox_detections(boxes, cls_score, bbox_pred, image_shape, **DC5_DETECTIONS)
    assert len(found) == len(boxes) > 0
    torch.testing.assert_close(found.pred_boxes.tensor, boxes)
    torch.testing.assert_close(found.scores, scores)
    assert found.pred_classes.tolist() == labels.tolist()


def test_video_model_gives_the_toolbox_detections(toy):
    """The whole converted model on a target frame and its supports (the target among them, as
    the toolbox tests) against the toolbox's test path composed from the ``toolbox_*`` functions."""
    source, model = toy.source, toy.model
    generator = torch.Generator().manual_seed(7)
    height, width = 100, 140  # padded to 112 x 144
    frames = [torch.rand(3, height, width, generator=generator) * 255 for _ in range(3)]
    target = {"image": frames[0], "height": height, "width": width, "file_name": "t"}
    supports = [{"image": f, "file_name": f"s{i}"} for i, f in enumerate(frames[1:])] + [target]
    with torch.no_grad():
        found = model([{**target, "supports": supports}])[0]["instances"]

        mean, std = model.pixel_mean, model.pixel_std
        maps = [toolbox_dc5_features(source, F.pad((f - mean) / std, (0, 4, 0, 12))[None]) for f in frames]
        refs = maps[1:] + maps[:1]  # the supports, then the target itself
        proposals = [toolbox_rpn(source, [m], (height, width), **DC5_RPN) for m in [maps[0]] + refs]
        rois, ref_rois = proposals[0], proposals[1:]
        roi_feats = toolbox_temporal_roi_align(source, maps[0], refs, rois)
        ref_feats = roi_align(torch.cat(refs), ref_rois, 7, 1 / 16, 2, aligned=True)
        cls_score, bbox_pred = toolbox_selsa_head(source, roi_feats, ref_feats, num_fcs=3)
        boxes, scores, labels = toolbox_detections(rois, cls_score, bbox_pred, (height, width), **DC5_DETECTIONS)
    assert_same_detections(found, (boxes, scores, labels))


def test_single_frame_checkpoint_converts_and_computes_the_toolbox_head():
    source = toolbox_state_dict(**TOY, num_fcs=2, selsa=False, troi=False)
    source = OrderedDict((k[len("detector.") :], v) for k, v in source.items())  # a plain mmdet FasterRCNN
    cfg = toy_cfg("single_frame_R_50_DC5.yaml")
    converted, report = convert_mmtrack_checkpoint(source, cfg, source="faster_rcnn.pth")
    assert "mmtrack model: single-frame Faster R-CNN" in report.notes
    model = build_model(cfg).eval()
    model.load_state_dict(converted, strict=True)
    x = torch.randn(6, 32, 7, 7, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        predictions = model.roi_heads.box_predictor(model.roi_heads.box_head(x))
    prefixed = {f"detector.{k}": v for k, v in source.items()}
    cls_score, bbox_pred = toolbox_bbox_head(prefixed, x, num_fcs=2)
    torch.testing.assert_close(predictions[0], cls_score)
    torch.testing.assert_close(predictions[1], bbox_pred)


def test_classes_follow_the_target_datasets_order_with_background_last():
    reordered = list(reversed(MMTRACK_VID_CLASSES))
    MetadataCatalog.get("toolbox_test_reversed_classes").thing_classes = reordered
    source = toolbox_state_dict(**TOY)
    cfg = toy_cfg(extra=["DATASETS.TEST", ("toolbox_test_reversed_classes",)])
    converted, report = convert_mmtrack_checkpoint({"state_dict": source}, cfg, source="toy.pth")
    cls_w, reg_b = (source[f"detector.roi_head.bbox_head.{k}"] for k in ("fc_cls.weight", "fc_reg.bias"))
    ours_cls_w, ours_reg_b = (converted[f"roi_heads.box_predictor.{k}"] for k in ("cls_score.weight", "bbox_pred.bias"))
    for i, name in enumerate(reordered):
        j = MMTRACK_VID_CLASSES.index(name)
        assert torch.equal(ours_cls_w[i], cls_w[j])
        assert torch.equal(ours_reg_b[4 * i : 4 * i + 4], reg_b[4 * j : 4 * j + 4])
    assert torch.equal(ours_cls_w[30], cls_w[30])
    assert any("reordered" in note for note in report.notes)


# ---- names and shapes of the published models --------------------------------------------------


@pytest.mark.parametrize(
    "config, depth, groups, num_fcs, selsa, troi",
    [
        ("selsa_troi_R_50_DC5.yaml", 50, 1, 3, True, True),
        ("selsa_troi_R_101_DC5.yaml", 101, 1, 3, True, True),
        ("selsa_troi_X_101_DC5.yaml", 101, 64, 3, True, True),
        ("selsa_R_50_DC5.yaml", 50, 1, 2, True, False),
        ("selsa_R_101_DC5.yaml", 101, 1, 2, True, False),
        ("selsa_X_101_DC5.yaml", 101, 64, 2, True, False),
        ("single_frame_R_50_DC5.yaml", 50, 1, 2, False, False),
        ("single_frame_R_101_DC5.yaml", 101, 1, 2, False, False),
    ],
)
def test_published_model_shapes_load_strictly(config, depth, groups, num_fcs, selsa, troi):
    source = toolbox_state_dict(depth, groups, num_fcs=num_fcs, selsa=selsa, troi=troi, device="meta")
    cfg = setup_cfg(get_config_file(CONVERTED + config))
    converted, report = convert_mmtrack_checkpoint({"state_dict": source}, cfg, source=config)
    build_meta_model(cfg).load_state_dict(converted, strict=True, assign=True)
    num_bn = sum(k.endswith("num_batches_tracked") for k in source)
    assert len(report.mapped) == len(source) - num_bn == len(converted)
    assert len(report.ignored) == num_bn


def test_paper_config_is_rejected_for_a_toolbox_checkpoint():
    source = toolbox_state_dict(device="meta")
    cfg = setup_cfg(get_config_file("ImageNetVID/selsa_troi_R_50_DC5.yaml"))
    with pytest.raises(ConversionError, match=r"paper\.pth: the config differs .*RPN\.IN_FEATURES is \['res4'\]"):
        convert_mmtrack_checkpoint({"state_dict": source}, cfg, source="paper.pth")


# ---- torchvision backbones ------------------------------------------------------------------------


def test_torchvision_resnet50_computes_the_same_function():
    tv = torchvision.models.resnet50().eval()
    generator = torch.Generator().manual_seed(6)
    for module in tv.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    # torchvision dilates conv5 from its second block on (Detectron2 and the toolbox: all blocks),
    # so the comparison is without dilation.
    opts = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.RES5_DILATION", 1]
    cfg = setup_cfg(get_config_file("ImageNetVID/single_frame_R_50_DC5.yaml"), opts)
    converted, report = convert_torchvision_checkpoint(tv.state_dict(), cfg, source="resnet50.pth")
    reasons = {reason for _, reason in report.ignored}
    assert reasons == {"ImageNet classifier", "BatchNorm update counters, unused by FrozenBN"}
    bottom_up = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    bottom_up.load_state_dict({k[len("backbone.bottom_up.") :]: v for k, v in converted.items()}, strict=True)
    x = torch.randn(1, 3, 64, 96, generator=generator)
    with torch.no_grad():
        ours = bottom_up(x)["res5"]
        theirs = torch.nn.Sequential(*list(tv.children())[:-2])(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "arch, config", [("resnet101", "troi_R_101_DC5.yaml"), ("resnext101_64x4d", "troi_X_101_DC5.yaml")]
)
def test_torchvision_101_layer_shapes_match(arch, config):
    with torch.device("meta"):
        state_dict = getattr(torchvision.models, arch)().state_dict()
    cfg = setup_cfg(get_config_file("ImageNetVID/" + config))
    converted, _ = convert_torchvision_checkpoint(state_dict, cfg, source=f"{arch}.pth")
    assert len(converted) == sum(1 for k in build_meta_model(cfg).state_dict() if k.startswith("backbone.bottom_up."))


def test_torchvision_resnext_32x8d_does_not_fit_a_64x4d_config():
    with torch.device("meta"):
        state_dict = torchvision.models.resnext101_32x8d().state_dict()
    cfg = setup_cfg(get_config_file("ImageNetVID/troi_X_101_DC5.yaml"))
    with pytest.raises(ConversionError, match=r"x\.pth: shapes differ from the model's: backbone\.bottom_up\.res2"):
        convert_torchvision_checkpoint(state_dict, cfg, source="x.pth")


def test_caffe_style_config_is_rejected_for_torchvision_weights():
    cfg = setup_cfg(get_config_file("ImageNetVID/single_frame_R_50_DC5.yaml"), ["MODEL.RESNETS.STRIDE_IN_1X1", True])
    with torch.device("meta"):
        state_dict = torchvision.models.resnet50().state_dict()
    with pytest.raises(ConversionError, match="STRIDE_IN_1X1 is True, torchvision uses False"):
        convert_torchvision_checkpoint(state_dict, cfg, source="r50.pth")


# ---- strictness and errors ---------------------------------------------------------------------------


def test_strict_conversion_names_unused_and_missing_keys():
    cfg = setup_cfg(get_config_file(CONVERTED + "selsa_troi_R_50_DC5.yaml"))
    source = toolbox_state_dict(device="meta")
    source["detector.roi_head.bbox_head.extra.weight"] = torch.empty(3, device="meta")
    del source["detector.neck.convs.0.conv.bias"]
    expected = r"src\.pth: 1 source keys .*bbox_head\.extra\.weight; 1 model keys are not filled: backbone\.reduce\.b"
    with pytest.raises(ConversionError, match=expected):
        convert_mmtrack_checkpoint({"state_dict": source}, cfg, source="src.pth")
    converted, report = convert_mmtrack_checkpoint({"state_dict": source}, cfg, source="src.pth", strict=False)
    assert "backbone.reduce.bias" not in converted
    assert sum(note.startswith("not strict") for note in report.notes) == 2


def test_flow_checkpoint_needs_a_flow_config():
    # FGFA and DFF convert with their own configs (tests/checkpoint/test_convert_flow_checkpoints.py).
    cfg = setup_cfg(get_config_file(CONVERTED + "selsa_R_50_DC5.yaml"))
    source = {"detector.backbone.conv1.weight": torch.zeros(1), "motion.conv1.0.conv.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match=r"dff\.pth: the config differs from mmtrack's DFF: .*META_ARCHITECTURE"):
        convert_mmtrack_checkpoint({"state_dict": source}, cfg, source="dff.pth")


def test_unreadable_and_unknown_files(tmp_path):
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(ConversionError, match=f"{missing}: no such file"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ConversionError, match=f"{garbage}: not a readable PyTorch checkpoint"):
        load_checkpoint(str(garbage))
    with_numpy = tmp_path / "numpy.pth"
    torch.save({"state_dict": {}, "meta": {"score": np.float64(1.0)}}, with_numpy)
    with pytest.raises(ConversionError, match="Python objects besides tensors .*--unsafe-pickle"):
        load_checkpoint(str(with_numpy))
    assert load_checkpoint(str(with_numpy), unsafe_pickle=True)["meta"]["score"] == 1.0
    cfg = setup_cfg(get_config_file(CONVERTED + "selsa_R_50_DC5.yaml"))
    with pytest.raises(ConversionError, match=r"odd\.pth: unknown checkpoint format.*top-level keys model, __author__"):
        convert_mmtrack_checkpoint({"model": {"a": 1}, "__author__": "x"}, cfg, source="odd.pth")


# ---- the tool -----------------------------------------------------------------------------------------


def test_tool_dry_run_writes_nothing_and_output_loads(tmp_path, capsys):
    tool = load_tool("convert_checkpoint")
    config = tmp_path / "toy.yaml"
    config.write_text(f'_BASE_: "{get_config_file(CONVERTED + "selsa_troi_R_50_DC5.yaml")}"\n' + TOY_YAML)
    source = tmp_path / "toy_source.pth"
    torch.save({"state_dict": toolbox_state_dict(**TOY), "meta": {"CLASSES": MMTRACK_VID_CLASSES}}, source)
    output = tmp_path / "out" / "toy.pth"
    args = ["mmtrack", str(source), str(output), "--config-file", str(config)]

    assert tool.main(args + ["--dry-run", "-v"]) == 0
    printed = capsys.readouterr().out
    assert "dry run: nothing written" in printed and not output.exists()
    assert "detector.neck.convs.0.conv.weight -> backbone.reduce.weight [32, 256, 3, 3]" in printed

    assert tool.main(args) == 0
    model = build_model(setup_cfg(str(config), ["MODEL.DEVICE", "cpu"]))
    DetectionCheckpointer(model).load(str(output))
    expected = torch.load(source)["state_dict"]["detector.roi_head.bbox_head.shared_fcs.2.weight"]
    assert torch.equal(model.roi_heads.box_head.fc3.weight, expected)

    assert tool.main(["torchvision", str(source), "--dry-run", "--config-file", str(config)]) == 1
    assert "source keys have no counterpart" in capsys.readouterr().err


# ---- the toolbox's resize ---------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(720, 1280), (375, 500), (1080, 1920), (480, 640)])
def test_toolbox_resize_matches_the_toolbox_sizes_and_pixels(height, width):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    transform = MMTrackResizeShortestEdge(600, 1000).get_transform(image)
    factor = min(1000 / max(height, width), 600 / min(height, width))
    size = (int(width * factor + 0.5), int(height * factor + 0.5))
    out = transform.apply_image(image)
    assert out.dtype == np.uint8 and (out.shape[1], out.shape[0]) == size
    np.testing.assert_array_equal(out, cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    if (height, width) == (720, 1280):  # Detectron2's own resize gives 562 rows here
        assert T.ResizeShortestEdge(600, 1000).get_transform(image).new_h == 562 != out.shape[0]
