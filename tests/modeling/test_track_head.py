"""temporal_roi_align.modeling.track_head: MaskTrack R-CNN's track head and its training targets,
against computations written here from the toolbox's definitions (mmtracking 0.14 RoITrackHead,
RoIEmbedHead; mmdetection 2.x MaxIoUAssigner, RandomSampler, SingleRoIExtractor)."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import box_iou, roi_align

from temporal_roi_align import add_video_config
from temporal_roi_align.modeling import (
    ROI_TRACK_HEAD_REGISTRY,
    MaskTrackHead,
    build_track_head,
    match_logits,
    sample_track_targets,
)

STRIDES = (4, 8, 16, 32)
FEATURES = ("p2", "p3", "p4", "p5")


def make_cfg(*opts):
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.MODEL.ROI_HEADS.IN_FEATURES = list(FEATURES)
    cfg.merge_from_list(list(opts))
    return cfg


def input_shape(channels):
    shapes = {f: ShapeSpec(channels=channels, stride=s) for f, s in zip(FEATURES, STRIDES)}
    shapes["p6"] = ShapeSpec(channels=channels, stride=64)  # not pooled (not in ROI_HEADS.IN_FEATURES)
    return shapes


def small_head(channels=4, fc_dim=6, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    head = build_track_head(make_cfg("MODEL.ROI_TRACK_HEAD.FC_DIM", fc_dim), input_shape(channels))
    return head.to(dtype)


def features(n, channels, size=64, dtype=torch.float32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {
        f: torch.randn(n, channels, size // s, size // s, generator=generator, dtype=dtype)
        for f, s in zip(FEATURES, STRIDES)
    }


def toolbox_embed(head, feats, boxes):
    """SingleRoIExtractor (level floor(log2(sqrt(area) / 56 + 1e-6)) clamped to 0..3, mmcv
    RoIAlign 7x7, aligned, sampling_ratio 0) then RoIEmbedHead (flatten, relu(fc) per FC)."""
    rows = []
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes.tensor.to(feats["p2"].dtype):
            scale = torch.sqrt((box[2] - box[0]) * (box[3] - box[1]))
            level = int(torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, 3))
            fmap = feats[FEATURES[level]][image : image + 1]
            rows.append(roi_align(fmap, [box[None]], 7, 1.0 / STRIDES[level], 0, aligned=True)[0])
    x = torch.stack(rows).flatten(1) if rows else feats["p2"].new_zeros(0, feats["p2"].shape[1] * 49)
    for fc in head.fcs:
        x = F.relu(F.linear(x, fc.weight, fc.bias))
    return x


# Boxes of 16..200 pixels: their FPN levels cover p2..p5 (sqrt(area) 16 and 40 -> p2, 80 -> p3, 150 -> p4, 240 -> p5).
BOXES = [
    Boxes(torch.tensor([[2.0, 3.0, 18.0, 19.0], [10.0, 5.5, 50.0, 45.5], [0.0, 0.0, 80.0, 80.0],
                        [4.0, 6.0, 154.0, 156.0]])),
    Boxes(torch.tensor([[1.0, 1.0, 241.0, 241.0], [30.0, 20.0, 36.0, 60.0]])),
]  # fmt: skip


# ---- construction --------------------------------------------------------------------------------


def test_default_head_is_the_toolbox_embed_head():
    """RoIEmbedHead(num_fcs=2, in_channels=256, roi_feat_size=7, fc_out_channels=1024), no convs;
    RoIAlign 7x7, sampling_ratio 0, aligned, on strides 4..32."""
    with torch.device("meta"):
        head = build_track_head(make_cfg(), input_shape(256))
    assert isinstance(head, MaskTrackHead) and ROI_TRACK_HEAD_REGISTRY.get("MaskTrackHead") is MaskTrackHead
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        "fc1.weight": (1024, 256 * 49),
        "fc1.bias": (1024,),
        "fc2.weight": (1024, 1024),
        "fc2.bias": (1024,),
    }
    assert head.embedding_dim == 1024 and head.in_features == list(FEATURES)
    assert head.pooler.output_size == (7, 7)
    assert [p.spatial_scale for p in head.pooler.level_poolers] == [1 / s for s in STRIDES]
    assert all(p.sampling_ratio == 0 and p.aligned for p in head.pooler.level_poolers)
    assert head.sampling == dict(batch_size_per_image=128, positive_fraction=0.25, iou_threshold=0.5, append_gt=True)
    assert head.loss_weight == 1.0


def test_features_with_different_channels_are_refused():
    shapes = input_shape(8)
    shapes["p3"] = ShapeSpec(channels=16, stride=8)
    with pytest.raises(ValueError, match="different channels"):
        build_track_head(make_cfg(), shapes)
    with pytest.raises(ValueError, match="at least one FC"):
        build_track_head(make_cfg("MODEL.ROI_TRACK_HEAD.NUM_FC", 0), input_shape(8))


# ---- embeddings and logits -------------------------------------------------------------------------


def test_embeddings_match_the_toolbox_roi_extractor_and_fcs():
    head = small_head(dtype=torch.float64)
    feats = features(2, 4, size=256, dtype=torch.float64)
    ours = head.embed(feats, BOXES)
    assert [tuple(e.shape) for e in ours] == [(4, 6), (2, 6)]
    torch.testing.assert_close(torch.cat(ours), toolbox_embed(head, feats, BOXES), rtol=1e-12, atol=1e-12)
    assert (torch.cat(ours) >= 0).all()  # ReLU after the last FC too


def test_match_logits_are_a_zero_column_then_dot_products():
    e = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    r = torch.tensor([[2.0, 1.0], [-1.0, 4.0]])
    expected = torch.tensor([[0.0, 4.0, 7.0], [0.0, -1.0, -4.0], [0.0, 6.5, -1.0]])
    torch.testing.assert_close(match_logits(e, r), expected)
    assert match_logits(e, r[:0]).tolist() == [[0.0]] * 3
    assert match_logits(e[:0], r).shape == (0, 3)


def test_forward_gives_one_logit_matrix_per_image_with_odd_sizes():
    head = small_head()
    feats, ref_feats = features(3, 4, size=256, seed=1), features(3, 4, size=256, seed=2)
    boxes = [BOXES[0], Boxes(torch.zeros(0, 4)), BOXES[1][:1]]
    ref_boxes = [BOXES[1], BOXES[0][:3], Boxes(torch.zeros(0, 4))]
    logits = head(feats, boxes, ref_feats, ref_boxes)
    assert [tuple(x.shape) for x in logits] == [(4, 3), (0, 4), (1, 1)]
    embeddings, ref_embeddings = head.embed(feats, boxes), head.embed(ref_feats, ref_boxes)
    for x, e, r in zip(logits, embeddings, ref_embeddings):
        assert (x[:, 0] == 0).all()
        torch.testing.assert_close(x[:, 1:], e @ r.t())
    with pytest.raises(ValueError, match="2 target images but 3 reference images"):
        head(feats, boxes[:2], ref_feats, ref_boxes)


# ---- loss ------------------------------------------------------------------------------------------


def test_loss_on_a_hand_made_case():
    """Image 1: labels 1, 0, 2 and one background RoI (-1, no loss); 2 labels > 0.
    Image 2: one RoI of a new object against no reference (a single logit: CE 0), count max(0, 1).
    Loss = mean over the 2 images of (sum of CE / count)."""
    logits = [
        torch.tensor([[0.0, 2.0, 1.0], [0.0, -1.0, 3.0], [0.0, 1.0, 1.0], [0.0, 5.0, -5.0]], requires_grad=True),
        torch.tensor([[0.0]], requires_grad=True),
    ]
    labels = [torch.tensor([1, 0, 2, -1]), torch.tensor([0])]

    def ce(row, label):
        return -row[label] + math.log(sum(math.exp(v) for v in row))

    image1 = (ce([0, 2, 1], 1) + ce([0, -1, 3], 0) + ce([0, 1, 1], 2)) / 2
    image2 = ce([0], 0) / 1
    expected = (image1 + image2) / 2
    head = small_head()
    with EventStorage() as storage:
        loss = head.losses(logits, labels)["loss_track"]
        accuracy = storage.latest()["track_head/match_accuracy"][0]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Top-1 right: image 1 row 0 (argmax 1), image 2's row (0); wrong: row 1 (argmax 2, label 0),
    # row 2 (tie of columns 1 and 2 -> 1, label 2); the background row is not counted.
    assert accuracy == pytest.approx(2 / 4)
    loss.backward()
    assert (logits[0].grad[3] == 0).all() and logits[0].grad[:3].abs().sum() > 0  # background row: no gradient
    head.loss_weight = 0.5
    with EventStorage():
        assert head.losses(logits, labels)["loss_track"].item() == pytest.approx(expected / 2, rel=1e-6)


def test_loss_without_rois_is_zero_and_bad_inputs_are_refused():
    head = small_head()
    logits = [torch.zeros(0, 3, requires_grad=True)]
    with EventStorage():
        loss = head.losses(logits, [torch.zeros(0, dtype=torch.int64)])["loss_track"]
        loss.backward()
        assert loss.item() == 0.0
        assert head.losses([], [])["loss_track"].item() == 0.0
        with pytest.raises(ValueError, match="image 0 has 2 logit rows but 1 labels"):
            head.losses([torch.zeros(2, 3)], [torch.zeros(1, dtype=torch.int64)])
        with pytest.raises(ValueError, match="1 logit tensors but 2 label tensors"):
            head.losses([torch.zeros(2, 3)], [torch.zeros(2, dtype=torch.int64)] * 2)


def test_loss_gradients_gradcheck():
    labels = torch.tensor([2, 0, -1, 1, 2])
    head = small_head(dtype=torch.float64)
    logits = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def loss(x):
        with EventStorage():
            return head.losses([x, x[:2]], [labels, labels[:2]])["loss_track"]

    assert torch.autograd.gradcheck(loss, (logits,))


def test_head_gradients_gradcheck_and_reach_the_fc_weights():
    head = small_head(channels=1, fc_dim=8, dtype=torch.float64)
    feats = features(1, 1, size=32, dtype=torch.float64, seed=3)
    ref_feats = features(1, 1, size=32, dtype=torch.float64, seed=4)
    boxes = [Boxes(torch.tensor([[3.0, 4.0, 20.0, 22.0], [10.0, 2.0, 30.0, 25.0]]))]
    ref_boxes = [Boxes(torch.tensor([[5.0, 5.0, 24.0, 20.0]]))]
    labels = [torch.tensor([1, 0])]

    def loss(p2, ref_p2):
        with EventStorage():
            logits = head({**feats, "p2": p2}, boxes, {**ref_feats, "p2": ref_p2}, ref_boxes)
            return head.losses(logits, labels)["loss_track"]

    inputs = (feats["p2"].clone().requires_grad_(), ref_feats["p2"].clone().requires_grad_())
    assert torch.autograd.gradcheck(loss, inputs)
    loss(*inputs).backward()
    assert all(x.grad.abs().sum() > 0 for x in inputs)  # not a trivially zero gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


# ---- training targets ------------------------------------------------------------------------------


def toolbox_targets(proposals, gt_boxes, gt_ids, ref_ids, thr=0.5):
    """MaxIoUAssigner(pos = neg = min_pos = thr, match_low_quality, gt_max_assign_all) on the
    proposals, then add_gt_as_proposals (ground truths self-assigned, here appended), then
    RoIEmbedHead.get_targets: for every RoI its label (ref index + 1, 0, or -1 for background)."""
    labels = []
    iou = box_iou(gt_boxes, proposals) if len(proposals) else torch.zeros(len(gt_boxes), 0)
    assigned = []
    for p in range(len(proposals)):
        column = iou[:, p]
        assigned.append(int(column.argmax()) if len(column) and column.max() >= thr else -1)
    for g in range(len(gt_boxes)):
        best = iou[g].max() if iou.shape[1] else None
        if best is not None and best >= thr:
            for p in range(len(proposals)):
                if iou[g, p] == best:
                    assigned[p] = g
    assigned += list(range(len(gt_boxes)))
    ref_ids = ref_ids.tolist()
    for g in assigned:
        if g < 0:
            labels.append(-1)
        else:
            track = int(gt_ids[g])
            labels.append(ref_ids.index(track) + 1 if track in ref_ids else 0)
    return torch.cat([proposals, gt_boxes]), torch.tensor(labels)


def random_proposals(n, gt_boxes, generator, jitter=0.3):
    """n proposals, about half of them jittered copies of the ground-truth boxes."""
    g = len(gt_boxes)
    base = gt_boxes[torch.randint(g, (n,), generator=generator)]
    size = (base[:, 2:] - base[:, :2]).repeat(1, 2)
    near = base + (torch.rand(n, 4, generator=generator) - 0.5) * jitter * size
    far = torch.rand(n, 2, generator=generator) * 200
    far = torch.cat([far, far + 5 + torch.rand(n, 2, generator=generator) * 60], 1)
    boxes = torch.where((torch.arange(n) % 2 == 0)[:, None], near, far)
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], 1)


def instances(boxes, track_ids):
    return Instances((300, 300), gt_boxes=Boxes(boxes), gt_track_ids=torch.tensor(track_ids))


GT = torch.tensor(
    [[10.0, 10.0, 60.0, 80.0], [100.0, 40.0, 180.0, 90.0], [50.0, 150.0, 120.0, 260.0], [200.0, 200.0, 260.0, 280.0]]
)
GT_IDS = [7, 3, 11, 5]
REF_IDS = [5, 9, 7]  # 7 -> label 3, 5 -> label 1; 3 and 11 are new objects (label 0)


def test_targets_match_the_toolbox_assignment_when_everything_is_kept():
    generator = torch.Generator().manual_seed(0)
    proposals = random_proposals(200, GT, generator)
    boxes, labels = sample_track_targets(
        [Boxes(proposals)],
        [instances(GT, GT_IDS)],
        [instances(GT[:3], REF_IDS)],
        batch_size_per_image=10_000,
        positive_fraction=1.0,
        iou_threshold=0.5,
    )
    their_boxes, their_labels = toolbox_targets(proposals, GT, torch.tensor(GT_IDS), torch.tensor(REF_IDS))
    assert len(boxes[0]) == len(their_boxes) == 204
    # Same RoIs (foreground first here) with the same labels.
    order = [int((their_boxes == b).all(dim=1).nonzero()[0]) for b in boxes[0].tensor]
    assert sorted(order) == list(range(204))
    assert labels[0].tolist() == their_labels[order].tolist()
    assert set(labels[0].tolist()) == {-1, 0, 1, 3}
    positives = labels[0] >= 0
    assert positives.tolist() == sorted(positives.tolist(), reverse=True)  # foreground first


def test_a_ground_truth_claims_its_best_proposal_as_the_toolbox_assigner_does():
    """Proposal 0 overlaps A more (IoU 0.90) than B (0.74), but is B's best proposal (B's other
    proposal, A's box, has IoU 0.68 with it): the toolbox assigns it to B, as here."""
    a = torch.tensor([0.0, 0.0, 100.0, 100.0])
    b = torch.tensor([10.0, 10.0, 110.0, 110.0])
    gt = torch.stack([a, b])
    proposals = torch.tensor([[5.0, 5.0, 100.0, 100.0], [0.0, 0.0, 100.0, 100.0]])
    iou = box_iou(gt, proposals)
    assert iou[0, 0] > iou[1, 0] >= 0.5 and iou[1, 0] > iou[1, 1]
    _, labels = sample_track_targets(
        [Boxes(proposals)],
        [instances(gt, [1, 2])],
        [instances(gt, [2, 1])],
        batch_size_per_image=100,
        positive_fraction=1.0,
        iou_threshold=0.5,
    )
    # RoIs: proposal 0 -> B (track 2 -> ref 0 -> label 1), proposal 1 -> A (label 2), then gts A, B.
    assert sorted(labels[0].tolist()) == sorted([1, 2, 2, 1])
    _, their_labels = toolbox_targets(proposals, gt, torch.tensor([1, 2]), torch.tensor([2, 1]))
    assert their_labels.tolist() == [1, 2, 2, 1]


@pytest.mark.parametrize("num_proposals, near_only", [(400, False), (20, False), (60, True)])
def test_sampler_fractions(num_proposals, near_only):
    """At most 25% of 128 RoIs (32) foreground, the rest background: fewer foreground RoIs leave
    room for more background ones; fewer background RoIs leave the batch short."""
    generator = torch.Generator().manual_seed(num_proposals)
    torch.manual_seed(num_proposals)
    proposals = random_proposals(num_proposals, GT, generator, jitter=0.1 if near_only else 0.3)
    if near_only:
        proposals = proposals[::2]
    _, their_labels = toolbox_targets(proposals, GT, torch.tensor(GT_IDS), torch.tensor(REF_IDS))
    available_fg = int((their_labels >= 0).sum())
    available_bg = len(their_labels) - available_fg
    boxes, labels = sample_track_targets(
        [Boxes(proposals)],
        [instances(GT, GT_IDS)],
        [instances(GT[:3], REF_IDS)],
        batch_size_per_image=128,
        positive_fraction=0.25,
        iou_threshold=0.5,
    )
    fg = int((labels[0] >= 0).sum())
    assert fg == min(available_fg, 32) and len(boxes[0]) == len(labels[0])
    assert len(labels[0]) - fg == min(128 - fg, available_bg)
    if num_proposals == 400:
        assert (fg, len(labels[0])) == (32, 128)
    elif near_only:
        assert fg == 32 and available_bg < 96
    else:
        assert fg < 32 and len(labels[0]) == available_fg + available_bg < 128


def test_sampler_edge_cases_and_errors():
    proposals = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 90.0, 90.0]]))
    no_gt = Instances((100, 100), gt_boxes=Boxes(torch.zeros(0, 4)), gt_track_ids=torch.zeros(0, dtype=torch.int64))
    kwargs = dict(batch_size_per_image=128, positive_fraction=0.25, iou_threshold=0.5)
    boxes, labels = sample_track_targets([proposals], [no_gt], [no_gt], **kwargs)
    assert labels[0].tolist() == [-1, -1] and len(boxes[0]) == 2
    # No proposals: the ground-truth boxes alone (appended), or nothing without append_gt.
    gt = instances(GT[:2], [1, 2])
    boxes, labels = sample_track_targets([Boxes(torch.zeros(0, 4))], [gt], [instances(GT[:1], [2])], **kwargs)
    assert sorted(labels[0].tolist()) == [0, 1] and len(boxes[0]) == 2
    boxes, labels = sample_track_targets(
        [Boxes(torch.zeros(0, 4))], [gt], [instances(GT[:1], [2])], append_gt=False, **kwargs
    )
    assert len(boxes[0]) == len(labels[0]) == 0
    with pytest.raises(ValueError, match=r"targets\[0\] has no gt_track_ids"):
        sample_track_targets([proposals], [Instances((9, 9), gt_boxes=Boxes(GT[:1]))], [gt], **kwargs)
    with pytest.raises(ValueError, match="one of each per image"):
        sample_track_targets([proposals, proposals], [gt], [gt], **kwargs)


def test_head_sample_targets_uses_its_config():
    head = small_head()
    torch.manual_seed(0)
    proposals = random_proposals(400, GT, torch.Generator().manual_seed(5))
    inst = Instances((300, 300), proposal_boxes=Boxes(proposals))
    boxes, labels = head.sample_targets([inst], [instances(GT, GT_IDS)], [instances(GT[:3], REF_IDS)])
    assert len(boxes[0]) == 128 and int((labels[0] >= 0).sum()) == 32
