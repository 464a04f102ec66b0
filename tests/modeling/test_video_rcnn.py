"""The video meta-architecture on tiny synthetic frame groups, for each detector variant."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from helpers.configs import tiny_cfg
from helpers.frame_groups import frame, group

VARIANTS = ["single_frame", "troi", "selsa", "selsa_troi"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_step_gives_finite_losses_and_gradients(variant):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(variant))
    model.train()
    batch = [group("a", 0, [1, 2], True), group("b", 3, [4, 5], True)]
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for n, g in grads.items() if "roi_heads" in n), "ROI heads must all get gradients"
    if "troi" in variant:
        assert any(n.startswith("roi_heads.box_pooler.aggregation") for n in grads)
    if "selsa" in variant:
        assert grads["roi_heads.box_head.aggregators.0.fc_embed.weight"].abs().sum() > 0


@pytest.mark.parametrize("variant", ["troi", "selsa_troi"])
def test_supports_change_the_output_and_backbone_runs_once_per_frame(variant):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(variant, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0))
    model.eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    video = [group("v", t, [s for s in range(5) if s != t][:3]) for t in range(5)]
    with torch.no_grad():
        cached = [model([x])[0]["instances"] for x in video]
    assert sum(calls) == 5, "each of the 5 distinct frames goes through the backbone once"

    model.feature_cache.capacity = 0
    with torch.no_grad():
        uncached = [model([x])[0]["instances"] for x in video]
        other_supports = model([group("v", 0, [7, 8, 9])])[0]["instances"]
    for a, b in zip(cached, uncached):
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert not torch.equal(cached[0].scores[:5], other_supports.scores[:5])


def test_cache_is_cleared_when_training_resumes():
    model = build_model(tiny_cfg("troi"))
    model.eval()
    with torch.no_grad():
        model([group("v", 0, [1, 2])])
    assert len(model.feature_cache) == 3
    model.train()
    assert len(model.feature_cache) == 0


def test_frames_without_ids_are_computed_but_not_cached():
    model = build_model(tiny_cfg("troi"))
    model.eval()
    with torch.no_grad():
        model([group("v", 0, [1])])
        model([{"image": frame("w", 0)["image"], "supports": [{"image": frame("w", 1)["image"]}]}])
    assert len(model.feature_cache) == 2, "only the frames of video v, which have ids"


def test_single_frame_detector_ignores_supports():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("single_frame", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0))
    model.eval()
    with torch.no_grad():
        a = model([group("v", 0, [1, 2])])[0]["instances"]
        b = model([group("v", 0, [])])[0]["instances"]
    torch.testing.assert_close(a.scores, b.scores)


@pytest.mark.parametrize("variant", ["troi", "selsa_troi"])
def test_batch_with_unequal_support_counts_trains(variant):
    model = build_model(tiny_cfg(variant))
    model.train()
    with EventStorage():
        losses = model([group("a", 0, [1], True), group("b", 0, [1, 2, 3], True)])
    assert torch.isfinite(sum(losses.values()))


@pytest.mark.parametrize("variant", ["troi", "selsa_troi"])
def test_training_and_inference_give_the_heads_the_same_supports(variant):
    """The two roads to SupportFrames (one batched backbone pass in training, the per-frame
    cache in inference) carry the same maps and proposals, so the pooler gives the same
    features for the same boxes."""
    torch.manual_seed(0)
    model = build_model(
        tiny_cfg(variant, "MODEL.SELSA.SUPPORT_PROPOSALS_TRAIN", 8, "MODEL.SELSA.SUPPORT_PROPOSALS_TEST", 8)
    )
    x = group("v", 1, [0, 2, 3])
    model.train()
    with torch.no_grad():
        _, train_features, train_supports = model._training_features([x])
    model.eval()
    with torch.no_grad():
        target, *supports = model.frame_outputs([x] + x["supports"])
    names = model.roi_heads.box_in_features
    for name in names:
        torch.testing.assert_close(train_features[name][0], target.features[name])
        torch.testing.assert_close(train_supports.features[0][name], torch.stack([f.features[name] for f in supports]))
    if model.needs_support_proposals:
        for train_p, test_f in zip(train_supports.proposals[0], supports):
            torch.testing.assert_close(train_p.proposal_boxes.tensor, test_f.proposals[:8].proposal_boxes.tensor)
    boxes = [Boxes(torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 10.0, 90.0, 60.0]]))]
    with torch.no_grad():
        inference_supports = [[torch.stack([f.features[n] for f in supports])] for n in names]
        torch.testing.assert_close(
            model.roi_heads.box_pooler([train_features[n] for n in names], boxes, train_supports.maps(names)),
            model.roi_heads.box_pooler([target.features[n][None] for n in names], boxes, inference_supports),
        )


@pytest.mark.parametrize("variant", ["troi", "selsa", "selsa_troi"])
def test_inference_without_any_support_frame(variant):
    model = build_model(tiny_cfg(variant, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0))
    model.eval()
    with torch.no_grad():
        instances = model([group("v", 0, [])])[0]["instances"]
    assert len(instances) > 0 and torch.isfinite(instances.scores).all()
