"""MaskTrackRCNN / MaskTrackROIHeads (modeling/masktrack.py) on tiny synthetic frame groups:
training with the reference frame, Temporal RoI Align on the FPN box and mask RoIs, inference
with masks at the original resolution, track embeddings and the tracker's ids."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.modeling import (
    MaskTrackRCNN,
    MaskTrackROIHeads,
    MaskTrackTracker,
    SupportFrames,
    TemporalROIPooler,
)

H, W = 64, 96
LOSSES = {"loss_cls", "loss_box_reg", "loss_mask", "loss_track", "loss_rpn_cls", "loss_rpn_loc"}


# The toy configs with a 64-channel FPN (P2-P6) instead of the toy detector's conv4, as the
# YouTube-VIS configs have: the poolers and the track head read several levels.
FPN = [
    "MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.OUT_CHANNELS", 64,
    "MODEL.FPN.NORM", "GN",
    "MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32], [64], [128], [256]],
    "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
]  # fmt: skip


def tiny_cfg(variant="masktrack", *opts):
    return setup_cfg(get_config_file(f"toy/{variant}.yaml"), ["MODEL.DEVICE", "cpu", *FPN, *opts])


def tiny_model(variant="masktrack", *opts, seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(variant, *opts))


def frame(video, index, height=H, width=W):
    g = torch.Generator().manual_seed(hash((video, index)) % 2**31)
    return {
        "image": torch.randint(0, 255, (3, height, width), generator=g, dtype=torch.uint8),
        "video_id": video,
        "frame_id": index,
    }


def instances(track_ids, shift=0.0):
    inst = Instances((H, W))
    boxes = torch.tensor([[10.0, 12.0, 50.0, 40.0], [40.0, 20.0, 90.0, 60.0], [5.0, 30.0, 30.0, 62.0]])
    inst.gt_boxes = Boxes(boxes[: len(track_ids)] + shift)
    inst.gt_classes = torch.tensor([1, 2, 0])[: len(track_ids)]
    inst.gt_track_ids = torch.tensor(track_ids, dtype=torch.int64)
    masks = torch.zeros(len(track_ids), H, W, dtype=torch.bool)
    for m, (x0, y0, x1, y1) in zip(masks, inst.gt_boxes.tensor.round().long().tolist()):
        m[y0:y1, x0:x1] = True
    inst.gt_masks = BitMasks(masks)
    return inst


def training_group(video, target, reference, supports=(), targets=(1, 2), references=(2, 3)):
    x = frame(video, target)
    x.update(height=H, width=W, instances=instances(list(targets)), supports=[frame(video, s) for s in supports])
    ref = frame(video, reference)
    ref_instances = instances(list(references), shift=2.0)
    ref_instances.remove("gt_masks")
    ref["instances"] = ref_instances
    x["reference"] = ref
    return x


# ---- construction ----------------------------------------------------------------------------------


def test_registered_meta_architecture_and_heads():
    model = tiny_model()
    assert type(model) is MaskTrackRCNN and type(model.roi_heads) is MaskTrackROIHeads
    assert type(model.roi_heads.box_pooler) is ROIPooler and type(model.roi_heads.mask_pooler) is ROIPooler
    assert not model.needs_supports and model.roi_heads.track_head.embedding_dim == 128
    troi = tiny_model("masktrack_troi")
    assert type(troi.roi_heads.box_pooler) is TemporalROIPooler
    assert type(troi.roi_heads.mask_pooler) is TemporalROIPooler and troi.needs_supports
    assert troi.roi_heads.mask_pooler.output_size == (14, 14) and troi.roi_heads.mask_pooler.topk == 4
    box_only = tiny_model("masktrack_troi", "MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER", False)
    assert type(box_only.roi_heads.mask_pooler) is ROIPooler and box_only.needs_supports
    # Multi-level: the TRoI pooler reads P2-P5, as the box head's RoIAlign.
    assert len(troi.roi_heads.box_pooler.level_poolers) == 4
    assert isinstance(troi.tracker, MaskTrackTracker)


def test_config_errors():
    with pytest.raises(ValueError, match="MaskTrackROIHeads segments what it tracks: set MODEL.MASK_ON"):
        tiny_model("masktrack", "MODEL.MASK_ON", False)
    with pytest.raises(ValueError, match="MaskTrackRCNN needs MODEL.ROI_HEADS.NAME: MaskTrackROIHeads"):
        tiny_model("masktrack", "MODEL.ROI_HEADS.NAME", "VideoROIHeads")


# ---- training ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["masktrack", "masktrack_troi"])
def test_training_step_gives_every_loss_and_gradients(variant):
    model = tiny_model(variant)
    model.train()
    batch = [training_group("a", 0, 3, [1, 2]), training_group("b", 4, 2, [0, 5], targets=(7,), references=())]
    with EventStorage() as storage:
        losses = model(batch)
        assert 0 <= storage.latest()["track_head/match_accuracy"][0] <= 1
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "roi_heads.track_head.fc1.weight",
        "roi_heads.mask_head.predictor.weight",
        "backbone.fpn_output2.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    if variant == "masktrack_troi":
        for pooler in ("box_pooler", "mask_pooler"):
            assert grads[f"roi_heads.{pooler}.aggregation.embed.weight"].abs().sum() > 0, pooler


@pytest.mark.parametrize("variant", ["masktrack", "masktrack_troi"])
def test_one_backbone_pass_and_the_reference_on_its_own_maps(variant, monkeypatch):
    """Targets, references (and supports with TRoI) go through the backbone once; the track head
    gets each reference frame's own maps and ground truth, the TRoI poolers the supports only."""
    model = tiny_model(variant)
    model.train()
    batch = [training_group("a", 0, 3, [1, 2]), training_group("b", 4, 2, [0])]
    calls, seen = [], {}
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    heads_forward = model.roi_heads.forward

    def spy(images, features, proposals, targets=None, supports=None, reference=None):
        seen.update(features=features, supports=supports, reference=reference)
        return heads_forward(images, features, proposals, targets, supports, reference)

    monkeypatch.setattr(model.roi_heads, "forward", spy)
    with EventStorage():
        model(batch)
    num_supports = 3 if variant == "masktrack_troi" else 0
    assert calls == [2 + 2 + num_supports]
    with torch.no_grad():
        alone = model.backbone(model.preprocess_image([x["reference"] for x in batch]).tensor)
    for name, maps in seen["reference"].features.items():
        torch.testing.assert_close(maps, alone[name], rtol=1e-4, atol=1e-4)
    assert [r.gt_track_ids.tolist() for r in seen["reference"].instances] == [[2, 3], [2, 3]]
    if variant == "masktrack":
        assert seen["supports"] is None
    else:
        assert [len(f["p2"]) for f in seen["supports"].features] == [2, 1]


def test_track_targets_follow_the_reference_identities(monkeypatch):
    """Target tracks 1, 2 against reference tracks 2, 3: RoIs of track 2 get label 1 (the
    reference's first box), RoIs of track 1 label 0 (new)."""
    model = tiny_model()
    model.train()
    head = model.roi_heads.track_head
    sample = head.sample_targets
    labels = []

    def spy(proposals, targets, ref_targets):
        boxes, match = sample(proposals, targets, ref_targets)
        labels.append((boxes, match, targets))
        return boxes, match

    monkeypatch.setattr(head, "sample_targets", spy)
    with EventStorage():
        model([training_group("a", 0, 3)])
    (boxes,), (match,), (target,) = labels[0]
    gt_boxes = target.gt_boxes.tensor
    for box, label in zip(boxes.tensor, match.tolist()):
        for gt, expected in zip(gt_boxes, (0, 1)):
            if torch.equal(box, gt):
                assert label == expected
    assert set(match.tolist()) <= {-1, 0, 1} and {0, 1} <= set(match.tolist())


def test_training_without_a_reference_is_refused():
    model = tiny_model()
    model.train()
    x = training_group("a", 0, 3)
    del x["reference"]
    x["file_name"] = "frame_0.jpg"
    with EventStorage(), pytest.raises(ValueError, match=r"needs a 'reference' frame .*frame_0.jpg.*VISDatasetMapper"):
        model([x])


# ---- inference --------------------------------------------------------------------------------------


def test_inference_outputs_masks_at_the_original_resolution_embeddings_and_ids():
    model = tiny_model("masktrack", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    model.eval()
    x = dict(frame("v", 0), height=2 * H, width=2 * W)
    with torch.no_grad():
        out = model([x])[0]["instances"]
    assert 0 < len(out) <= 10
    assert out.pred_masks.dtype == torch.bool and out.pred_masks.shape == (len(out), 2 * H, 2 * W)
    assert out.track_embeddings.shape == (len(out), 128)
    assert out.pred_track_ids.tolist() == list(range(len(out))), "the first frame starts a track per detection"
    assert {"pred_boxes", "scores", "pred_classes"} <= set(out.get_fields())


def test_embeddings_are_the_track_head_on_the_detected_boxes():
    model = tiny_model("masktrack", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    model.eval()
    x = dict(frame("v", 0), height=H, width=W)
    with torch.no_grad():
        out = model([x])[0]["instances"]
        features = model.backbone(model.preprocess_image([x]).tensor)
        expected = model.roi_heads.track_head.embed(features, [out.pred_boxes])[0]
    torch.testing.assert_close(out.track_embeddings, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["masktrack", "masktrack_troi"])
def test_the_tracker_links_the_frames_of_a_video_and_restarts_on_the_next(variant):
    """The ids are those of a MaskTrackTracker fed each frame's postprocessed detections in
    order, restarted at each new video."""
    model = tiny_model(variant, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.SUPPORT.NUM_TEST", 2)
    model.eval()
    videos = [("a", 4), ("b", 3)]
    outputs = []
    with torch.no_grad():
        for video, length in videos:
            for t in range(length):
                x = dict(frame(video, t), height=H, width=W)
                x["supports"] = [frame(video, s) for s in (0, length - 1)]
                outputs.append((video, model([x])[0]["instances"]))
    reference = MaskTrackTracker(tiny_cfg(variant))
    previous = None
    for video, out in outputs:
        if video != previous:
            reference.reset()
            previous = video
        assert out.pred_track_ids.tolist() == reference.update(out, out.track_embeddings).tolist()
    assert any(
        len(set(out.pred_track_ids.tolist()) & set(prev.pred_track_ids.tolist()))
        for (_, prev), (_, out) in zip(outputs[:3], outputs[1:4])
    ), "tracks continue within video a"
    assert outputs[4][1].pred_track_ids.tolist() == list(range(len(outputs[4][1])))


def test_the_tracker_restarts_when_frames_go_back_or_the_mode_changes():
    model = tiny_model("masktrack", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    model.eval()
    with torch.no_grad():
        for t in (0, 1, 2):
            model([frame("v", t)])
        assert model.tracker.frame == 3
        model([frame("v", 1)])  # the same video again from an earlier frame: a new pass
        assert model.tracker.frame == 1
        model([frame("v", 2)])
        assert model.tracker.frame == 2
        model.train()
        model.eval()
        assert model.tracker.frame == 0
        model([{"image": frame("v", 0)["image"]}])  # no video_id: a video of its own
        model([{"image": frame("v", 1)["image"]}])
        assert model.tracker.frame == 1


def test_troi_masks_see_the_supports():
    model = tiny_model("masktrack_troi", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)
    model.eval()
    heads = model.roi_heads
    x = frame("v", 0)
    with torch.no_grad():
        target, *supports = model.frame_outputs([x, frame("v", 1), frame("v", 2)])
        features = {k: v[None] for k, v in target.features.items()}
        boxes = Boxes(torch.tensor([[10.0, 12.0, 50.0, 40.0], [40.0, 20.0, 90.0, 60.0]]))
        detections = Instances((H, W), pred_boxes=boxes, pred_classes=torch.tensor([0, 1]))
        support_maps = SupportFrames([{k: torch.stack([s.features[k] for s in supports]) for k in features}])
        none = SupportFrames([{k: v[:0] for k, v in support_maps.features[0].items()}])
        with_supports = heads.forward_with_given_boxes(features, [detections[:]], support_maps)[0]
        without = heads.forward_with_given_boxes(features, [detections[:]], none)[0]
        plain = heads.forward_with_given_boxes(features, [detections[:]])[0]
    torch.testing.assert_close(without.pred_masks, plain.pred_masks)
    assert not torch.allclose(with_supports.pred_masks, plain.pred_masks)
    # The track embeddings use plain RoIAlign on the target frame: the same with or without supports.
    torch.testing.assert_close(with_supports.track_embeddings, plain.track_embeddings)
