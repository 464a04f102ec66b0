"""Conversion of mmtrack's FGFA and DFF ImageNet VID checkpoints (convert_mmtrack_checkpoint) to
FgfaRCNN and DffRCNN.

Source checkpoints have mmtrack's names and shapes (its faster_rcnn_r50_dc5 detector under
``detector.``, FlowNetSimple under ``motion.``, FGFA's EmbedAggregator under ``aggregator.``) and
random values; the numeric tests use a toy-sized detector (test_convert_checkpoint.TOY) with the
full FlowNetS. The converted models are compared with mmtrack's test-time computation composed
from the source tensors (the ``toolbox_*`` functions of mmdet_reference.py,
test_convert_checkpoint.py, test_flow_rules.py and test_flow_warp.py, written from mmtrack's
definitions)."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from torchvision.ops import roi_align

from temporal_roi_align.checkpoint import ConversionError, convert_mmtrack_checkpoint, mmtrack_config
from temporal_roi_align.checkpoint.common import build_meta_model
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file

from helpers import load_tool
from helpers.mmdet_reference import toolbox_bbox_head, toolbox_detections, toolbox_rpn
from helpers.mmtrack_reference import (
    CONVERTED,
    DC5_DETECTIONS,
    DC5_RPN,
    TOOLBOX_FLOWNET,
    TOY,
    TOY_OPTS,
    TOY_YAML,
    assert_same_detections,
    toolbox_dc5_features,
    toolbox_embed_aggregator,
    toolbox_flow_state_dict,
    toolbox_flow_warp_feats,
    toolbox_flownet,
)
from helpers.mmtrack_reference import toolbox_state_dict as toolbox_detector_state_dict

HEIGHT, WIDTH = 100, 140  # padded to 112 x 144 (multiples of 16)


def toolbox_checkpoint(fgfa, device="cpu", **detector):
    """mmtrack's FGFA (``fgfa=True``) or DFF state dict: the detector (2 shared FCs, no SELSA or
    TRoI), ``motion.*`` and, for FGFA, ``aggregator.embed_convs.0`` with the neck's channels."""
    state = toolbox_detector_state_dict(num_fcs=2, selsa=False, troi=False, device=device, **detector)
    if device == "meta":
        for key, shape in TOOLBOX_FLOWNET:
            state["motion." + key] = torch.empty(shape, device="meta")
    else:
        state.update((k, v) for k, v in toolbox_flow_state_dict().items() if k.startswith("motion."))
    if fgfa:
        channels = detector.get("neck", 512)
        generator = torch.Generator().manual_seed(11)
        for name, shape in (("weight", (channels, channels, 3, 3)), ("bias", (channels,))):
            if device == "meta":
                value = torch.empty(shape, device="meta")
            else:
                value = torch.randn(shape, generator=generator) / (9 * channels) ** 0.5
            state[f"aggregator.embed_convs.0.conv.{name}"] = value
    return state


def toy_model(name):
    """The converted toy-sized model of converted/<name>.yaml and its source state dict."""
    source = toolbox_checkpoint(name.startswith("fgfa"), **TOY)
    cfg = setup_cfg(get_config_file(CONVERTED + name), TOY_OPTS + ["MODEL.DEVICE", "cpu"])
    converted, report = convert_mmtrack_checkpoint({"state_dict": source, "meta": {}}, cfg, source="toy.pth")
    model = build_model(cfg).eval()
    model.load_state_dict(converted, strict=True)
    return source, model, report


def frames(count, seed):
    """``count`` frame dicts of one video (0-255 RGB float images), ids 0 .. count-1."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.rand(3, HEIGHT, WIDTH, generator=generator) * 255,
            "height": HEIGHT,
            "width": WIDTH,
            "video_id": "v",
            "frame_id": i,
            "file_name": f"v/{i}",
        }
        for i in range(count)
    ]


def toolbox_images(model, frame_dicts):
    """mmtrack's normalised images, padded to 16: ``[N, 3, 112, 144]``."""
    return torch.stack([F.pad((f["image"] - model.pixel_mean) / model.pixel_std, (0, 4, 0, 12)) for f in frame_dicts])


def toolbox_features(source, images):
    """mmtrack's detector.extract_feat (backbone and neck) of each image."""
    return torch.cat([toolbox_dc5_features(source, image[None]) for image in images])


def toolbox_detect(source, x):
    """mmtrack's RPN and box head on the features ``x`` of one image (``simple_test``)."""
    proposals = toolbox_rpn(source, [x], (HEIGHT, WIDTH), **DC5_RPN)
    roi_feats = roi_align(x, [proposals], 7, 1 / 16, 2, aligned=True)
    cls_score, bbox_pred = toolbox_bbox_head(source, roi_feats, num_fcs=2)
    return toolbox_detections(proposals, cls_score, bbox_pred, (HEIGHT, WIDTH), **DC5_DETECTIONS)


def test_fgfa_gives_mmtracks_flows_warped_features_weights_and_detections():
    """mmtrack's FGFA.extract_feats with a fixed stride once its memo holds frames t-2 .. t+2
    (here 2 supports on each side): flows from the target to every memo frame, the memo warped,
    the target's own features at num_left_ref_imgs = 2, EmbedAggregator; then simple_test."""
    source, model, report = toy_model("fgfa_R_50_DC5.yaml")
    assert "mmtrack model: FGFA" in report.notes
    video = frames(5, seed=0)
    target = {**video[2], "supports": video[:2] + video[3:]}
    with torch.no_grad():
        found = model([target])[0]["instances"]

        images = toolbox_images(model, video)
        feats = toolbox_features(source, images)
        flow_imgs = torch.cat((images[2:3].repeat(5, 1, 1, 1), images), dim=1)
        their_flows = toolbox_flownet(source, flow_imgs, (HEIGHT, WIDTH))
        their_warped = toolbox_flow_warp_feats(feats, their_flows)
        their_warped[2] = feats[2]
        their_weights, aggregated = toolbox_embed_aggregator(source, feats[2:3], their_warped)
        expected = toolbox_detect(source, aggregated)

        # The converted parts, as FgfaRCNN composes them.
        supports = torch.cat([images[:2], images[3:]])
        flows = model.flow_net(images[2:3], supports, [(HEIGHT, WIDTH)])
        warped = model._warp({"res5_reduced": torch.cat([feats[:2], feats[3:]])}, flows)["res5_reduced"]
        stacked = torch.cat([warped[:2], feats[2:3], warped[2:]])
        weights = model.aggregator.weights(feats[2:3], stacked)
    assert their_flows.abs().mean() > 0.1  # flows that move features
    torch.testing.assert_close(flows, torch.cat([their_flows[:2], their_flows[3:]]), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(stacked, their_warped, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(weights, their_weights, rtol=1e-4, atol=1e-5)
    assert_same_detections(found, expected)


def test_dff_gives_mmtracks_key_frame_and_warped_frame_detections():
    """mmtrack's DFF.extract_feats: a key frame's own features; another frame's are the key
    frame's warped by the flow from that frame to the key frame."""
    source, model, report = toy_model("dff_R_50_DC5.yaml")
    assert "mmtrack model: DFF" in report.notes
    key, current = frames(2, seed=1)
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        found_key = model([{**key, "supports": [key]}])[0]["instances"]
        found = model([{**current, "supports": [key]}])[0]["instances"]

        images = toolbox_images(model, [key, current])
        key_feats = toolbox_features(source, images[:1])
        flow = toolbox_flownet(source, torch.cat((images[1:], images[:1]), dim=1), (HEIGHT, WIDTH))
        assert flow.abs().mean() > 0.1
        warped = toolbox_flow_warp_feats(key_feats, flow)
        ours_warped = model._warp(
            {"res5_reduced": key_feats}, model.flow_net(images[1:], images[:1], [(HEIGHT, WIDTH)])
        )
    assert sum(calls) == 1, "the key frame's features are reused"
    torch.testing.assert_close(ours_warped["res5_reduced"], warped, rtol=1e-4, atol=1e-4)
    assert_same_detections(found_key, toolbox_detect(source, key_feats))
    assert_same_detections(found, toolbox_detect(source, warped))


def test_toolbox_warp_convention_matters():
    """The converted config warps with mmtrack's grid (x / W: a zero flow moves features by up to
    a pixel); the exact grid would not reproduce it."""
    _, model, _ = toy_model("dff_R_50_DC5.yaml")
    features = torch.randn(1, 32, 7, 9, generator=torch.Generator().manual_seed(2))
    zero = torch.zeros(1, 2, 112, 144)
    with torch.no_grad():
        theirs = toolbox_flow_warp_feats(features, zero)
        torch.testing.assert_close(model._warp({"res5_reduced": features}, zero)["res5_reduced"], theirs)
        model.warp_convention = "exact"
        torch.testing.assert_close(model._warp({"res5_reduced": features}, zero)["res5_reduced"], features)
    assert not torch.allclose(theirs, features, atol=1e-2)


@pytest.mark.parametrize(
    "config, depth, groups, fgfa",
    [
        ("fgfa_R_50_DC5.yaml", 50, 1, True),
        ("fgfa_R_101_DC5.yaml", 101, 1, True),
        ("fgfa_X_101_DC5.yaml", 101, 64, True),
        ("dff_R_50_DC5.yaml", 50, 1, False),
        ("dff_R_101_DC5.yaml", 101, 1, False),
        ("dff_X_101_DC5.yaml", 101, 64, False),
    ],
)
def test_published_model_shapes_load_strictly(config, depth, groups, fgfa):
    source = toolbox_checkpoint(fgfa, device="meta", depth=depth, groups=groups)
    cfg = setup_cfg(get_config_file(CONVERTED + config))
    assert dict(mmtrack_config(False, False, "fgfa" if fgfa else "dff"))["MODEL.META_ARCHITECTURE"] == (
        cfg.MODEL.META_ARCHITECTURE
    )
    converted, report = convert_mmtrack_checkpoint({"state_dict": source}, cfg, source=config)
    build_meta_model(cfg).load_state_dict(converted, strict=True, assign=True)
    num_bn = sum(k.endswith("num_batches_tracked") for k in source)
    assert len(report.mapped) == len(source) - num_bn == len(converted)
    assert sum(k.startswith("flow_net.") for k in converted) == len(TOOLBOX_FLOWNET)
    assert ("aggregator.embed_convs.0.weight" in converted) == fgfa
    assert any(note.startswith("config: mmtrack's") for note in report.notes)


def test_config_must_be_mmtracks_test_time_model():
    fgfa = toolbox_checkpoint(True, device="meta")
    # Our own training config: the exact warp grid, Detectron2's deltas and resize.
    cfg = setup_cfg(get_config_file("ImageNetVID/fgfa_R_50_DC5.yaml"))
    with pytest.raises(
        ConversionError,
        match=r"fgfa\.pth: the config differs from mmtrack's FGFA: .*WARP_CONVENTION "
        r"is 'exact', mmtrack uses 'toolbox'",
    ):
        convert_mmtrack_checkpoint({"state_dict": fgfa}, cfg, source="fgfa.pth")
    # A SELSA config for an FGFA checkpoint, a DFF config for an FGFA one.
    for other, meta_arch in (("selsa_R_50_DC5.yaml", "VideoRCNN"), ("dff_R_50_DC5.yaml", "DffRCNN")):
        cfg = setup_cfg(get_config_file(CONVERTED + other))
        with pytest.raises(ConversionError, match=f"META_ARCHITECTURE is '{meta_arch}', mmtrack uses 'FgfaRCNN'"):
            convert_mmtrack_checkpoint({"state_dict": fgfa}, cfg, source="fgfa.pth")
    # Without strict, the differences are listed and the tensors converted.
    cfg = setup_cfg(get_config_file(CONVERTED + "fgfa_R_50_DC5.yaml"), ["INPUT.SUPPORT.NUM_TEST", 20])
    converted, report = convert_mmtrack_checkpoint({"state_dict": fgfa}, cfg, source="fgfa.pth", strict=False)
    assert "config differs from mmtrack's FGFA: INPUT.SUPPORT.NUM_TEST is 20, mmtrack uses 30" in report.notes
    assert "flow_net.predict_flow2.weight" in converted
    with pytest.raises(ValueError, match="no mmtrack model"):
        mmtrack_config(True, False, "fgfa")


def test_tool_converts_a_toy_fgfa_checkpoint(tmp_path, capsys):
    tool = load_tool("convert_checkpoint")
    config = tmp_path / "toy.yaml"
    config.write_text(f'_BASE_: "{get_config_file(CONVERTED + "fgfa_R_50_DC5.yaml")}"\n' + TOY_YAML)
    source = toolbox_checkpoint(True, **TOY)
    torch.save({"state_dict": source}, tmp_path / "fgfa_toy.pth")
    output = tmp_path / "converted.pth"
    assert tool.main(["mmtrack", str(tmp_path / "fgfa_toy.pth"), str(output), "--config-file", str(config), "-v"]) == 0
    printed = capsys.readouterr().out
    assert "note: mmtrack model: FGFA" in printed
    assert "motion.upsample_flow5.conv.weight -> flow_net.upsample_flow6to5.weight [2, 2, 4, 4]" in printed
    state = torch.load(output)["model"]
    assert torch.equal(state["aggregator.embed_convs.0.bias"], source["aggregator.embed_convs.0.conv.bias"])


def test_pretrained_flow_network_alone_converts_into_a_training_start(tmp_path, capsys):
    """mmtrack's flownet_simple.pth (FlowNetS alone, without "motion.") -> flow_net.*, added with
    --base to the converted ImageNet backbone: one MODEL.WEIGHTS file to train FGFA or DFF from."""
    tool = load_tool("convert_checkpoint")
    flownet = OrderedDict(
        (k[len("motion.") :], v) for k, v in toolbox_flow_state_dict(3).items() if k.startswith("motion.")
    )
    torch.save({"state_dict": flownet}, tmp_path / "flownet_simple.pth")
    backbone = {"backbone.bottom_up.stem.conv1.weight": torch.zeros(2)}
    torch.save({"model": backbone, "__author__": "test"}, tmp_path / "R-50.pth")
    config = get_config_file("ImageNetVID/dff_R_50_DC5.yaml")
    output = tmp_path / "start.pth"
    args = ["mmtrack", str(tmp_path / "flownet_simple.pth"), str(output), "--config-file", config]
    assert tool.main(args + ["--base", str(tmp_path / "R-50.pth")]) == 0
    printed = capsys.readouterr().out
    assert "FlowNetSimple alone" in printed and f"added to the {len(backbone)} tensors of" in printed
    state = torch.load(output)["model"]
    assert len(state) == len(TOOLBOX_FLOWNET) + 1
    assert torch.equal(state["flow_net.conv3_1.weight"], flownet["conv3.1.conv.weight"])
    assert torch.equal(state["backbone.bottom_up.stem.conv1.weight"], backbone["backbone.bottom_up.stem.conv1.weight"])
    # Names present in both files are refused; so is a config whose flow network is narrower.
    assert tool.main(args + ["--base", str(output)]) == 1
    assert "flow_net.conv1.weight" in capsys.readouterr().err
    toy = get_config_file("toy/dff.yaml")
    assert tool.main(["mmtrack", str(tmp_path / "flownet_simple.pth"), "--dry-run", "--config-file", toy]) == 1
    assert "WIDTH_DIVISOR is 8, mmtrack uses 1" in capsys.readouterr().err
