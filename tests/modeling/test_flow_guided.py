"""FgfaRCNN and DffRCNN (modeling.flow_guided) on tiny synthetic frame groups (the toy configs:
ResNet-18 GN, FlowNetS 8 times narrower): what the RPN and ROI heads see in training and at test,
the backbone passes, gradients, the trainer, the predictor, and bad inputs.

The flow of a pair of frames is made exactly 0 by zeroing ``predict_flow2`` (no bias) where a test
needs warping to be the identity (``exact`` warp convention, the toy configs')."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from temporal_roi_align.data.support_frames import SupportSelector
from temporal_roi_align.engine import VideoTrainer, setup_cfg
from temporal_roi_align.layers import flow_warp, resize_flow
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.predictor import VideoPredictor

from helpers.configs import tiny_cfg
from helpers.frame_groups import frame, group

FEATURE = "res4_reduced"  # the toy configs' warped map (RPN and box head input)


def build(variant, *opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(variant, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, *opts))


def zero_flow(model):
    with torch.no_grad():
        model.flow_net.predict_flow2.weight.zero_()


def record_rpn_inputs(model):
    """The feature dicts the RPN receives, one per call."""
    seen = []
    model.proposal_generator.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    return seen


def backbone_map(model, *frames):
    """``[len(frames), C, H, W]``: the warped feature of each frame, computed directly."""
    with torch.no_grad():
        return model.backbone(model.preprocess_image(frames).tensor)[FEATURE]


def flows(model, target, references):
    images = model.preprocess_image([target] + references)
    with torch.no_grad():
        return model.flow_net(images.tensor[:1], images.tensor[1:], images.image_sizes[:1])


def training_losses(model, batch):
    model.train()
    with EventStorage():
        return model(batch)


# ---- FGFA -------------------------------------------------------------------------------------


def test_fgfa_with_every_support_the_target_gives_the_targets_features():
    model = build("fgfa").eval()
    zero_flow(model)
    seen = record_rpn_inputs(model)
    target = group("v", 3, [3, 3, 3, 3])  # four copies of the target frame as supports
    expected = backbone_map(model, target)
    with torch.no_grad():
        model([target])
    assert list(seen[0]) == [FEATURE]
    torch.testing.assert_close(seen[0][FEATURE], expected, rtol=1e-5, atol=1e-5)
    # Training aggregates the two warped copies only: the same map.
    training_losses(model, [group("v", 3, [3, 3], with_instances=True)])
    torch.testing.assert_close(seen[1][FEATURE], expected, rtol=1e-5, atol=1e-5)


def test_fgfa_test_time_aggregation_puts_the_unwarped_target_among_its_warped_supports():
    model = build("fgfa", "MODEL.FLOW_NET.WARP_CONVENTION", "toolbox").eval()
    seen = record_rpn_inputs(model)
    x = group("v", 2, [0, 1, 3, 4])
    with torch.no_grad():
        model([x])
        maps = backbone_map(model, x, *x["supports"])
        flow = flows(model, x, x["supports"])
        assert flow.abs().mean() > 0.01  # a real (random) flow
        warped = flow_warp(maps[1:], resize_flow(flow, maps.shape[-2:]), "toolbox")
        target = maps[:1]
        expected = model.aggregator(target, torch.cat([warped[:2], target, warped[2:]]))
        without_target = model.aggregator(target, warped)
    torch.testing.assert_close(seen[0][FEATURE], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(seen[0][FEATURE], without_target, atol=1e-3)


def test_fgfa_training_aggregates_the_warped_supports_and_optionally_the_target():
    batch = [group("a", 2, [1, 4], with_instances=True), group("b", 0, [3], with_instances=True)]
    for with_target in (False, True):
        model = build("fgfa", "MODEL.FGFA.TRAIN_WITH_TARGET", with_target)
        zero_flow(model)  # warping = identity: the warped supports are the supports' maps
        seen = record_rpn_inputs(model)
        training_losses(model, batch)
        for i, x in enumerate(batch):
            maps = backbone_map(model, x, *x["supports"])
            target, frames = maps[:1], (maps if with_target else maps[1:])
            with torch.no_grad():
                expected = model.aggregator(target, frames)
            torch.testing.assert_close(seen[0][FEATURE][i : i + 1], expected, rtol=1e-4, atol=1e-5)


def test_fgfa_caches_only_the_warped_map_and_runs_the_backbone_once_per_frame():
    model = build("fgfa").eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames = range(6)
    selector = SupportSelector("stride", 4)
    with torch.no_grad():
        for t in frames:
            model([group("v", t, selector(t, frames))])
    assert sum(calls) == 6
    cached = model.feature_cache.get(("v", 0, (3, 64, 96)))
    assert list(cached.features) == [FEATURE] and cached.proposals is None


def test_fgfa_troi_heads_see_the_aggregate_and_the_unwarped_supports():
    model = build("fgfa_troi").eval()
    heads_inputs = []
    model.roi_heads.register_forward_pre_hook(lambda m, args: heads_inputs.append(args))
    rpn_inputs = record_rpn_inputs(model)
    x = group("v", 2, [1, 3])
    with torch.no_grad():
        found = model([x])[0]["instances"]
    _, features, _, _, supports = heads_inputs[0]
    assert features is rpn_inputs[0]  # the aggregated map
    torch.testing.assert_close(supports.features[0][FEATURE], backbone_map(model, *x["supports"]))
    assert len(found) > 0
    heads_inputs.clear()
    training_losses(model, [group("a", 2, [1, 4], with_instances=True)])
    x = group("a", 2, [1, 4])
    torch.testing.assert_close(heads_inputs[0][4].features[0][FEATURE], backbone_map(model, *x["supports"]))


# ---- DFF --------------------------------------------------------------------------------------


def test_dff_runs_the_backbone_on_key_frames_only_and_warps_their_features():
    model = build("dff").eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    seen = record_rpn_inputs(model)
    selector = SupportSelector("key_frame", 1, stride=5)
    frames = range(12)
    with torch.no_grad():
        for t in frames:
            model([group("v", t, selector(t, frames))])
    assert sum(calls) == 3, "frames 0, 5 and 10 only"
    assert len(seen) == 12
    key, current = group("v", 5, []), group("v", 8, [])
    key_map = backbone_map(model, key)
    torch.testing.assert_close(seen[5][FEATURE], key_map)
    with torch.no_grad():
        expected = flow_warp(key_map, resize_flow(flows(model, current, [key]), key_map.shape[-2:]), "exact")
    torch.testing.assert_close(seen[8][FEATURE], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(seen[8][FEATURE], key_map, atol=1e-3)


def test_dff_training_warps_the_support_to_the_target_and_keeps_still_images_unwarped():
    model = build("dff")
    seen = record_rpn_inputs(model)
    video = group("a", 4, [7], with_instances=True)
    still = {**group("det", 0, [0], with_instances=True), "video_length": 1}
    losses = training_losses(model, [video, still])
    support_maps = backbone_map(model, video["supports"][0], still["supports"][0])
    with torch.no_grad():
        flow = flows(model, video, video["supports"])
        expected = flow_warp(support_maps[:1], resize_flow(flow, support_maps.shape[-2:]), "exact")
    torch.testing.assert_close(seen[0][FEATURE][:1], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(seen[0][FEATURE][1:], support_maps[1:])
    # The still image's flow takes part with a zero weight: a batch of still images alone gives
    # every flow-network parameter a zero gradient (all parameters used, as DDP requires).
    sum(losses.values()).backward()
    assert model.flow_net.conv1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    sum(training_losses(model, [still]).values()).backward()
    grads = [p.grad for p in model.flow_net.parameters()]
    assert all(g is not None and not g.any() for g in grads)


# ---- both ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, supports", [("fgfa", [1, 4]), ("fgfa_troi", [1, 4]), ("dff", [4])])
def test_gradients_reach_the_flow_network(variant, supports):
    model = build(variant)
    losses = training_losses(model, [group("a", 2, supports, with_instances=True)])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    sum(losses.values()).backward()
    for name in ("conv1.weight", "conv6_1.weight", "predict_flow6.weight", "predict_flow2.weight"):
        grad = model.flow_net.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    if variant.startswith("fgfa"):
        assert model.aggregator.embed_convs[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["fgfa", "dff", "fgfa_troi"])
def test_toy_config_trains_two_iterations_and_evaluates(variant, vid_toy_datasets_env, tmp_path):
    cfg = setup_cfg(
        get_config_file(f"toy/{variant}.yaml"),
        [
            "SOLVER.MAX_ITER",
            2,
            "SOLVER.STEPS",
            (),
            "SOLVER.WARMUP_ITERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            2,
            "INPUT.MIN_SIZE_TRAIN",
            (64,),
            "INPUT.MIN_SIZE_TEST",
            64,
            "OUTPUT_DIR",
            str(tmp_path),
            "MODEL.DEVICE",
            "cpu",
        ]
        + (["INPUT.SUPPORT.NUM_TEST", 2] if variant.startswith("fgfa") else []),
    )
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    before = {k: v.clone() for k, v in trainer.model.flow_net.state_dict().items()}
    trainer.train()
    assert trainer.iter == 2 and (tmp_path / "model_final.pth").is_file()
    after = trainer.model.flow_net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the flow network is trained"
    results = VideoTrainer.test(cfg, trainer.model)
    assert np.isfinite(results["bbox"]["AP50"])


def clip(count=7, height=48, width=64):
    """Frames of a bright square moving right on a noisy background (BGR uint8)."""
    rng = np.random.default_rng(0)
    frames = []
    for t in range(count):
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        image[14:34, 6 + 4 * t : 26 + 4 * t] = (40, 200, 240)
        frames.append(image)
    return frames


def predictor(variant, *opts):
    torch.manual_seed(0)
    cfg = setup_cfg(
        get_config_file(f"toy/{variant}.yaml"),
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.MIN_SIZE_TEST", 48, "MODEL.DEVICE", "cpu", *opts],
    )
    return VideoPredictor(cfg, check_weights=False)


def test_dff_predictor_online_is_offline_and_runs_the_backbone_on_key_frames():
    frames = clip()
    p = predictor("dff", "VIDEO.KEY_FRAME_INTERVAL", 3)
    assert p.online_supports == p.offline_supports == SupportSelector("key_frame", 1, stride=3)
    calls = []
    p.model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    offline = [x["instances"] for x in p.predict_video(frames)]
    online = [x["instances"] for x in p.predict_stream(iter(frames))]
    assert sum(calls) == 2 * 3, "frames 0, 3 and 6 of each pass"
    for a, b in zip(offline, online):
        assert a.image_size == (48, 64) and len(a) > 0
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)


def test_fgfa_predictor_offline_and_online():
    frames = clip(count=5)
    p = predictor("fgfa", "INPUT.SUPPORT.NUM_TEST", 2)
    assert p.online_supports == SupportSelector("past", 2)
    offline = [x["instances"].scores for x in p.predict_video(frames)]
    online = [x["instances"].scores for x in p.predict_stream(iter(frames))]
    assert len(offline) == len(online) == 5 and all(len(s) > 0 for s in offline)
    # Online, frame 2 cannot depend on frames 3 and 4; offline it does (supports 1 and 3).
    changed = frames[:3] + [np.zeros_like(frames[0])] * 2
    torch.testing.assert_close([x["instances"].scores for x in p.predict_stream(iter(changed))][2], online[2])
    assert not torch.equal(p.predict_video(changed)[2]["instances"].scores, offline[2])


# ---- bad inputs -------------------------------------------------------------------------------


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="DffRCNN: the ROI heads use support frames"):
        build("dff", "MODEL.TEMPORAL_ROI_ALIGN.ENABLED", True)
    with pytest.raises(ValueError, match="FgfaRCNN: the ROI heads use support proposals"):
        build("fgfa", "MODEL.ROI_BOX_HEAD.NAME", "SelsaBoxHead")
    with pytest.raises(ValueError, match=r"WARP_CONVENTION 'mmtrack': must be one of \('toolbox', 'exact'\)"):
        build("fgfa", "MODEL.FLOW_NET.WARP_CONVENTION", "mmtrack")
    with pytest.raises(ValueError, match="must be backbone outputs with the same channels"):
        build("fgfa", "MODEL.RPN.IN_FEATURES", ["res4"])
    with pytest.raises(ValueError, match="DffRCNN needs MODEL.ROI_HEADS.NAME: VideoROIHeads, got StandardROIHeads"):
        build("dff", "MODEL.ROI_HEADS.NAME", "StandardROIHeads")
    dff = build("dff")
    with pytest.raises(ValueError, match=r"DffRCNN: training frame a/2 has 2 support frames; .*NUM_TRAIN 1"):
        training_losses(dff, [{**group("a", 2, [1, 3], with_instances=True), "file_name": "a/2"}])
    with pytest.raises(ValueError, match=r"DffRCNN: frame 2 has 2 support frames; .*key_frame"):
        dff.eval()([group("a", 2, [0, 1])])
    fgfa = build("fgfa")
    with pytest.raises(ValueError, match="FgfaRCNN: training frame 2 has no support frame"):
        training_losses(fgfa, [group("a", 2, [], with_instances=True)])
    small = {**frame("a", 1, height=32), "file_name": "a/1"}
    with pytest.raises(ValueError, match=r"support frame a/1 is \(3, 32, 96\)"):
        fgfa.eval()([{**group("a", 2, []), "supports": [small]}])
