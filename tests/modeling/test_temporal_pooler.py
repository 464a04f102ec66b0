import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling.poolers import ROIPooler, assign_boxes_to_levels, convert_boxes_to_pooler_format
from detectron2.structures import Boxes

from temporal_roi_align import add_video_config
from temporal_roi_align.layers import TemporalAttentionalAggregation, most_similar_roi_align
from temporal_roi_align.modeling import TemporalROIPooler

CHANNELS = 8


def make_pooler(scales=(1 / 8,), **kwargs):
    kwargs = {"channels": CHANNELS, "topk": 3, "num_attention_blocks": 2, "chunk_size": 20, **kwargs}
    return TemporalROIPooler(3, scales, 2, "ROIAlignV2", canonical_box_size=32, canonical_level=3, **kwargs)


def make_inputs(scales=(1 / 8,), boxes_per_image=(3, 2), num_supports=2, dtype=torch.float32):
    """Feature maps of a 128x160 image batch, random boxes of varied sizes, support maps."""
    torch.manual_seed(0)
    num_images = len(boxes_per_image)
    x = [torch.randn(num_images, CHANNELS, int(128 * s), int(160 * s), dtype=dtype) for s in scales]
    box_lists = []
    for num_boxes in boxes_per_image:
        corner = torch.rand(num_boxes, 2) * torch.tensor([100.0, 80.0])
        size = 8 + torch.rand(num_boxes, 2) * 120
        box_lists.append(Boxes(torch.cat([corner, corner + size], dim=1).to(dtype)))
    # supports[level][image]: [T, C, H, W], maps a little larger than the target's.
    supports = [
        [torch.randn(num_supports, CHANNELS, m.shape[2] + 1, m.shape[3], dtype=dtype) for _ in range(num_images)]
        for m in x
    ]
    return x, box_lists, supports


def reference_pooler(pooler, x, box_lists, supports):
    """RoI by RoI: ROIPooler, the RoI's level, the operators on its own image's supports."""
    roi_feats = ROIPooler(pooler.output_size, [1 / 8, 1 / 16][: len(x)], 2, "ROIAlignV2", 32, 3)(x, box_lists)
    if len(x) == 1:
        levels = torch.zeros(len(roi_feats), dtype=torch.int64)
    else:
        levels = assign_boxes_to_levels(box_lists, pooler.min_level, pooler.max_level, 32, 3)
    images = convert_boxes_to_pooler_format(box_lists)[:, 0].long()
    out = []
    for r in range(len(roi_feats)):
        roi, image_supports = roi_feats[r : r + 1], supports[levels[r]][images[r]]
        out.append(pooler.aggregation(roi, most_similar_roi_align(roi, image_supports, pooler.topk)))
    return torch.cat(out)


@pytest.mark.parametrize("scales", [(1 / 8,), (1 / 8, 1 / 16)])
def test_without_supports_equals_roi_pooler(scales):
    x, box_lists, _ = make_inputs(scales)
    pooler = make_pooler(scales)
    expected = ROIPooler(3, scales, 2, "ROIAlignV2", 32, 3)(x, box_lists)
    no_supports = [[torch.zeros(0, CHANNELS, 4, 4)] * 2 for _ in scales]
    for supports in (None, no_supports):
        torch.testing.assert_close(pooler(x, box_lists, supports), expected, rtol=0, atol=0)


def test_without_supports_equals_roi_align():
    x, box_lists, _ = make_inputs()
    expected = ROIAlign((3, 3), 1 / 8, 2, aligned=True)(x[0], convert_boxes_to_pooler_format(box_lists))
    torch.testing.assert_close(make_pooler()(x, box_lists), expected, rtol=0, atol=0)


@pytest.mark.parametrize("scales", [(1 / 8,), (1 / 8, 1 / 16)])
@pytest.mark.parametrize("boxes_per_image", [(3, 2), (0, 4), (1,)])
@pytest.mark.parametrize("num_supports", [1, 3])
@pytest.mark.parametrize("similarity", ["direct", "gram"])
def test_matches_per_roi_reference(scales, boxes_per_image, num_supports, similarity):
    x, box_lists, supports = make_inputs(scales, boxes_per_image, num_supports)
    pooler = make_pooler(scales, similarity=similarity)
    with torch.no_grad():
        expected = reference_pooler(pooler, x, box_lists, supports)
        torch.testing.assert_close(pooler(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooler(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)


def test_multi_level_uses_more_than_one_level():
    x, box_lists, _ = make_inputs((1 / 8, 1 / 16))
    levels = assign_boxes_to_levels(box_lists, 3, 4, 32, 3)
    assert set(levels.tolist()) == {0, 1}


@pytest.mark.parametrize("num_attention_blocks, embed", [(2, "shared"), (4, "grouped"), (0, "shared")])
def test_inference_and_training_paths_agree(num_attention_blocks, embed):
    x, box_lists, supports = make_inputs(num_supports=4)
    pooler = make_pooler(num_attention_blocks=num_attention_blocks, embed=embed)
    with torch.no_grad():
        inferred = pooler(x, box_lists, supports)
    x[0].requires_grad_()
    trained = pooler(x, box_lists, supports)
    assert trained.requires_grad and not inferred.requires_grad
    torch.testing.assert_close(trained, inferred, rtol=1e-5, atol=1e-5)


def test_inference_path_when_nothing_requires_grad(monkeypatch):
    # The reference breaks the ties of all-zero cells (boxes past the image) as the PyTorch path does.
    monkeypatch.setenv("TRA_NO_COMPILED_OPS", "1")
    x, box_lists, supports = make_inputs()
    pooler = make_pooler().requires_grad_(False)
    out = pooler(x, box_lists, supports)  # grad mode on, nothing to differentiate
    assert not out.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(out, reference_pooler(pooler, x, box_lists, supports), rtol=1e-5, atol=1e-5)


def test_images_with_different_support_counts(monkeypatch):
    monkeypatch.setenv("TRA_NO_COMPILED_OPS", "1")  # ties of all-zero cells broken as by the reference
    x, box_lists, supports = make_inputs(num_supports=3)
    supports = [[level[0][:1], level[1]] for level in supports]  # image 0: T=1, image 1: T=3
    pooler = make_pooler()
    with torch.no_grad():
        expected = reference_pooler(pooler, x, box_lists, supports)
        torch.testing.assert_close(pooler(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)
    # An image without supports keeps its ROIAlign features.
    no_support_for_image_0 = [[level[0][:0], level[1]] for level in supports]
    plain = ROIPooler(3, (1 / 8,), 2, "ROIAlignV2", 32, 3)(x, box_lists)
    out = pooler(x, box_lists, no_support_for_image_0)
    torch.testing.assert_close(out[:3], plain[:3], rtol=0, atol=0)
    torch.testing.assert_close(out[3:], pooler(x, box_lists, supports)[3:], rtol=0, atol=0)


def test_no_boxes():
    x, box_lists, supports = make_inputs(boxes_per_image=(0, 0))
    out = make_pooler()(x, box_lists, supports)
    assert out.shape == (0, CHANNELS, 3, 3)


def test_gradients_reach_features_supports_and_embedding():
    x, box_lists, supports = make_inputs()
    x[0].requires_grad_()
    supports[0][1].requires_grad_()
    pooler = make_pooler()
    pooler(x, box_lists, supports).square().sum().backward()
    for grad in (x[0].grad, supports[0][1].grad, pooler.aggregation.embed.weight.grad):
        assert grad is not None and grad.abs().sum() > 0


def test_gradcheck():
    torch.manual_seed(1)
    pooler = make_pooler(channels=4, num_attention_blocks=2, topk=2).double()
    feature_map = torch.randn(1, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    support_maps = torch.randn(2, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    box_lists = [Boxes(torch.tensor([[2.0, 3.0, 30.0, 25.0], [10.0, 0.0, 38.0, 31.0]], dtype=torch.float64))]

    def pool(feature_map, support_maps):
        return pooler([feature_map], box_lists, [[support_maps]])

    assert torch.autograd.gradcheck(pool, (feature_map, support_maps))


def test_from_config():
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.TEMPORAL_ROI_ALIGN.TOPK = 3
    cfg.MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS = 2
    cfg.MODEL.TEMPORAL_ROI_ALIGN.EMBED = "grouped"
    cfg.MODEL.TEMPORAL_ROI_ALIGN.CHUNK_SIZE = 100
    pooler = TemporalROIPooler(cfg, {"res4": ShapeSpec(channels=16, stride=16)})
    assert pooler.output_size == (7, 7) and pooler.topk == 3 and pooler.chunk_size == 100
    assert isinstance(pooler.aggregation, TemporalAttentionalAggregation)
    assert pooler.aggregation.num_blocks == 2 and pooler.aggregation.embed.groups == 2
    assert pooler.level_poolers[0].spatial_scale == 1 / 16
    assert "aggregation.embed.weight" in pooler.state_dict()


def test_bad_support_features():
    x, box_lists, supports = make_inputs()
    pooler = make_pooler()
    with pytest.raises(ValueError, match=r"one entry per feature level \(1\), got 2 entries"):
        pooler(x, box_lists, supports * 2)
    with pytest.raises(ValueError, match=r"supports\[0\] must hold the supports of each of the 2 images, got 1"):
        pooler(x, box_lists, [supports[0][:1]])
    with pytest.raises(ValueError, match=r"supports\[0\]\[1\] must be \[T, 8, H, W\]"):
        pooler(x, box_lists, [[supports[0][0], supports[0][1][:, :4]]])
    two_levels = make_pooler((1 / 8, 1 / 16))
    x2, box_lists2, supports2 = make_inputs((1 / 8, 1 / 16))
    with pytest.raises(ValueError, match="same number of supports"):
        two_levels(x2, box_lists2, [supports2[0], [m[:1] for m in supports2[1]]])


def test_similarity_methods_agree_in_training_and_inference(monkeypatch):
    """ "gram" and "direct" give the same features on both paths; the inference path also takes
    TAFA's target embedding from the map's tap products (many RoI cells on a small map)."""
    x, box_lists, supports = make_inputs((1 / 8, 1 / 16), boxes_per_image=(60, 45), num_supports=3)
    direct = make_pooler((1 / 8, 1 / 16), similarity="direct")
    gram = make_pooler((1 / 8, 1 / 16), similarity="gram")
    gram.load_state_dict(direct.state_dict())
    embedded = []
    embed_pooled = gram.aggregation.embed_pooled
    monkeypatch.setattr(gram.aggregation, "embed_pooled", lambda *a: embedded.append(1) or embed_pooled(*a))
    with torch.no_grad():
        expected = reference_pooler(direct, x, box_lists, supports)
        torch.testing.assert_close(gram(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(direct(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)
    assert embedded, "the embedding from tap products was used"
    x[0].requires_grad_()
    torch.testing.assert_close(gram(x, box_lists, supports), expected, rtol=1e-5, atol=1e-5)


def test_pooler_refuses_what_it_cannot_pool():
    with pytest.raises(ValueError, match="pools with ROIAlign or ROIAlignV2, not 'ROIPool'"):
        TemporalROIPooler(3, (1 / 8,), 2, "ROIPool", channels=CHANNELS)
    with pytest.raises(ValueError, match="similarity must be one of"):
        make_pooler(similarity="fast")


def test_inspect_reports_the_chosen_locations_and_attention():
    x, box_lists, supports = make_inputs((1 / 8, 1 / 16), boxes_per_image=(3, 2), num_supports=3)
    pooler = make_pooler((1 / 8, 1 / 16))
    before = pooler(x, box_lists, supports)
    found = pooler.inspect(x, box_lists, supports)
    torch.testing.assert_close(pooler(x, box_lists, supports), before)  # forward unchanged
    roi_feats = ROIPooler(3, (1 / 8, 1 / 16), 2, "ROIAlignV2", 32, 3)(x, box_lists)
    levels = assign_boxes_to_levels(box_lists, 3, 4, 32, 3)
    images = convert_boxes_to_pooler_format(box_lists)[:, 0].long()
    assert found.locations.shape == (5, 3, 3, 3, 3) and found.attention.shape == (5, 4, 3, 3)
    assert found.map_sizes == [tuple(supports[0][0].shape[-2:]), tuple(supports[1][0].shape[-2:])]
    for r in range(5):
        maps = supports[levels[r]][images[r]]
        for t in range(3):
            for y in range(3):
                for xx in range(3):
                    query = roi_feats[r, :, y, xx]
                    cosine = torch.nn.functional.cosine_similarity(maps[t].flatten(1), query[:, None], dim=0)
                    assert int(found.locations[r, t, y, xx, 0]) == int(cosine.argmax())
                    assert float(found.similarities[r, t, y, xx, 0]) == pytest.approx(float(cosine.max()), abs=1e-5)
        # Eq. 7's weights, averaged over the blocks: frames sum to one.
        aligned = most_similar_roi_align(roi_feats[r : r + 1], maps, pooler.topk)
        frames = torch.cat([roi_feats[r : r + 1][None], aligned])
        embedded = pooler.aggregation.embed(frames.flatten(0, 1)).view_as(frames).unflatten(2, (2, 4))
        logits = (embedded * embedded[:1]).sum(dim=3) / 2.0  # sqrt(C / N) = 2
        torch.testing.assert_close(found.attention[r], logits.softmax(dim=0)[:, 0].mean(dim=1), rtol=1e-5, atol=1e-5)
