import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from temporal_roi_align.postprocessing import seq_nms, seq_nms_arrays


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_seq_nms(boxes, scores, classes, link_iou=0.5, nms_iou=0.3, rescore="avg"):
    """Seq-NMS one sequence at a time, the whole DP recomputed box by box for each: per frame,
    {index: new score} of the kept boxes."""
    num_frames = len(boxes)
    kept = [{} for _ in range(num_frames)]
    for c in sorted({int(k) for frame in classes for k in frame}):
        active = {(t, i) for t in range(num_frames) for i in range(len(boxes[t])) if classes[t][i] == c}
        while active:
            best, pred = {}, {}
            for t in range(num_frames):
                for i in range(len(boxes[t])):
                    if (t, i) not in active:
                        continue
                    pred[t, i], pred_value = None, 0.0
                    for j in range(len(boxes[t - 1]) if t > 0 else 0):
                        linked = (t - 1, j) in active and iou(boxes[t - 1][j], boxes[t][i]) >= link_iou
                        if linked and best[t - 1, j] > pred_value:
                            pred[t, i], pred_value = j, best[t - 1, j]
                    best[t, i] = scores[t][i] + pred_value
            t, i = max(sorted(best), key=lambda node: best[node])  # first maximum in (frame, index) order
            sequence = [(t, i)]
            while pred[t, i] is not None:
                t, i = t - 1, pred[t, i]
                sequence.append((t, i))
            sequence_scores = [scores[t][i] for t, i in sequence]
            value = np.mean(sequence_scores) if rescore == "avg" else max(sequence_scores)
            for t, i in sequence:
                kept[t][i] = value
                for j in range(len(boxes[t])):
                    if (t, j) in active and (j == i or iou(boxes[t][i], boxes[t][j]) >= nms_iou):
                        active.discard((t, j))
    return kept


def as_dicts(keep, new_scores):
    return [dict(zip(k.tolist(), s.tolist())) for k, s in zip(keep, new_scores)]


def box(x, y, size=10.0):
    return [x, y, x + size, y + size]


def test_single_track_avg_and_max():
    boxes = [np.array([box(10.0 + t, 10.0)]) for t in range(4)]
    scores = [np.array([s]) for s in (0.9, 0.2, 0.5, 0.8)]
    classes = [np.array([3])] * 4
    keep, new_scores = seq_nms_arrays(boxes, scores, classes, rescore="avg")
    assert [k.tolist() for k in keep] == [[0]] * 4
    np.testing.assert_allclose(np.concatenate(new_scores), [0.6] * 4)
    _, new_scores = seq_nms_arrays(boxes, scores, classes, rescore="max")
    np.testing.assert_allclose(np.concatenate(new_scores), [0.9] * 4)


def test_overlapping_tracks_of_different_classes_stay_separate():
    # Same boxes, two classes: no cross-class linking or suppression.
    boxes = [np.array([box(0, 0), box(0, 0)]) for _ in range(3)]
    scores = [np.array([0.9, 0.1]), np.array([0.3, 0.5]), np.array([0.6, 0.3])]
    classes = [np.array([0, 1])] * 3
    keep, new_scores = seq_nms_arrays(boxes, scores, classes)
    assert as_dicts(keep, new_scores) == [pytest.approx({0: 0.6, 1: 0.3})] * 3


def test_broken_link_splits_sequences():
    # Frames 0-1 at x=0, frames 2-3 moved by 6 of 10 px: IoU(frame 1, frame 2) = 4/16 < 0.5.
    boxes = [np.array([box(0.0, 0.0)])] * 2 + [np.array([box(6.0, 0.0)])] * 2
    scores = [np.array([s]) for s in (0.8, 0.6, 0.2, 0.4)]
    classes = [np.array([0])] * 4
    keep, new_scores = seq_nms_arrays(boxes, scores, classes)
    np.testing.assert_allclose(np.concatenate(new_scores), [0.7, 0.7, 0.3, 0.3])
    # Above the link threshold the four boxes are one sequence.
    _, new_scores = seq_nms_arrays(boxes, scores, classes, link_iou=0.2)
    np.testing.assert_allclose(np.concatenate(new_scores), [0.5] * 4)


def test_suppression_of_overlapping_boxes_in_the_sequence_frames():
    # Frame 0: track box, a duplicate (IoU 0.67 >= 0.3) and a neighbour (IoU with the duplicate 0.25 < 0.3).
    # Frame 1: the track only.
    boxes = [np.array([box(0, 0), box(2, 0), box(8, 0)]), np.array([box(0, 0)])]
    scores = [np.array([0.5, 0.7, 0.4]), np.array([0.9])]
    classes = [np.array([0, 0, 0]), np.array([0])]
    keep, new_scores = seq_nms_arrays(boxes, scores, classes)
    # The sequence takes the duplicate (0.7 + 0.9 > 0.5 + 0.9) and suppresses the track box of frame 0.
    assert as_dicts(keep, new_scores) == [pytest.approx({1: 0.8, 2: 0.4}), pytest.approx({0: 0.8})]
    # A suppression threshold above every IoU keeps all boxes.
    keep, _ = seq_nms_arrays(boxes, scores, classes, nms_iou=0.9)
    assert sorted(keep[0].tolist()) == [0, 1, 2]


def test_thresholds_are_inclusive():
    # IoU([0, 0, 4, 1], [0, 0, 2, 1]) = 2 / 4 = 0.5 exactly: linked at link_iou=0.5 (as in the references).
    boxes = [np.array([[0.0, 0.0, 4.0, 1.0]]), np.array([[0.0, 0.0, 2.0, 1.0]])]
    scores = [np.array([0.2]), np.array([0.6])]
    classes = [np.array([0])] * 2
    _, new_scores = seq_nms_arrays(boxes, scores, classes, link_iou=0.5)
    np.testing.assert_allclose(np.concatenate(new_scores), [0.4, 0.4])
    # ... and suppressed at nms_iou=0.5 when in the same frame.
    keep, _ = seq_nms_arrays([np.concatenate(boxes)], [np.array([0.2, 0.6])], [np.array([0, 0])], nms_iou=0.5)
    assert keep[0].tolist() == [1]


def test_empty_frames_and_empty_video():
    boxes = [np.zeros((0, 4)), np.array([box(0, 0)]), np.zeros((0, 4)), np.array([box(0, 0)])]
    scores = [np.zeros(0), np.array([0.4]), np.zeros(0), np.array([0.8])]
    classes = [np.zeros(0, np.int64), np.array([1]), np.zeros(0, np.int64), np.array([1])]
    keep, new_scores = seq_nms_arrays(boxes, scores, classes)
    # An empty frame between two boxes breaks the sequence.
    assert as_dicts(keep, new_scores) == [{}, pytest.approx({0: 0.4}), {}, pytest.approx({0: 0.8})]
    assert seq_nms_arrays([], [], []) == ([], [])
    keep, new_scores = seq_nms_arrays([[]], [[]], [[]])
    assert keep[0].shape == (0,) and new_scores[0].shape == (0,)


def test_one_frame_is_per_class_nms():
    boxes = [np.array([box(0, 0), box(1, 0), box(30, 0), box(0, 1)])]
    scores = [np.array([0.5, 0.9, 0.3, 0.7])]
    classes = [np.array([0, 0, 0, 1])]
    keep, new_scores = seq_nms_arrays(boxes, scores, classes)
    assert keep[0].tolist() == [1, 3, 2]  # sorted by score; box 0 suppressed by box 1
    np.testing.assert_allclose(new_scores[0], [0.9, 0.7, 0.3])


def random_video(rng, num_frames, max_boxes, num_classes):
    """Boxes jittered around a few drifting objects so IoUs span the thresholds."""
    centers = rng.uniform(20, 60, size=(3, 2))
    boxes, scores, classes = [], [], []
    for _ in range(num_frames):
        centers += rng.normal(0, 3, size=centers.shape)
        n = rng.integers(0, max_boxes + 1)
        obj = rng.integers(0, len(centers), size=n)
        xy = centers[obj] + rng.normal(0, 4, size=(n, 2))
        size = rng.uniform(10, 20, size=(n, 2))
        boxes.append(np.concatenate([xy - size / 2, xy + size / 2], axis=1))
        scores.append(rng.uniform(0, 1, size=n))
        classes.append(rng.integers(0, num_classes, size=n))
    return boxes, scores, classes


@pytest.mark.parametrize("rescore", ["avg", "max"])
def test_matches_reference_on_random_videos(rescore):
    rng = np.random.default_rng(0)
    for trial in range(40):
        video = random_video(rng, num_frames=int(rng.integers(1, 9)), max_boxes=7, num_classes=int(rng.integers(1, 4)))
        link_iou, nms_iou = rng.choice([0.3, 0.5, 0.7]), rng.choice([0.1, 0.3, 0.6])
        expected = reference_seq_nms(*video, link_iou=link_iou, nms_iou=nms_iou, rescore=rescore)
        keep, new_scores = seq_nms_arrays(*video, link_iou=link_iou, nms_iou=nms_iou, rescore=rescore)
        got = as_dicts(keep, new_scores)
        for t, (g, e) in enumerate(zip(got, expected)):
            assert sorted(g) == sorted(e), f"trial {trial}, frame {t}"
            np.testing.assert_allclose([g[i] for i in sorted(g)], [e[i] for i in sorted(e)], rtol=1e-12)
        for s in new_scores:
            assert np.all(np.diff(s) <= 0)


def test_dense_clutter_matches_reference():
    # Many isolated and chained boxes per frame: exercises taking isolated boxes together.
    rng = np.random.default_rng(1)
    video = random_video(rng, num_frames=6, max_boxes=25, num_classes=2)
    expected = reference_seq_nms(*video)
    keep, new_scores = seq_nms_arrays(*video)
    got = as_dicts(keep, new_scores)
    assert [sorted(g) for g in got] == [sorted(e) for e in expected]
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, rel=1e-12)


def test_instances_api_keeps_fields_device_and_dtype():
    frames = []
    for t in range(3):
        inst = Instances((50, 60))
        inst.pred_boxes = Boxes(torch.tensor([box(0, 0), box(1, 0), box(30, 30)], dtype=torch.float32))
        inst.scores = torch.tensor([0.5, 0.6 + 0.1 * t, 0.2])
        inst.pred_classes = torch.tensor([0, 0, 1])
        inst.track_hint = torch.tensor([10 * t, 10 * t + 1, 10 * t + 2])
        frames.append(inst)
    out = seq_nms(frames)
    assert len(out) == 3
    for t, inst in enumerate(out):
        assert inst.image_size == (50, 60)
        assert inst.scores.dtype == torch.float32
        # Box 1 (0.6, 0.7, 0.8: mean 0.7) suppresses box 0; box 2 is alone in its class.
        assert inst.track_hint.tolist() == [10 * t + 1, 10 * t + 2]
        torch.testing.assert_close(inst.scores, torch.tensor([0.7, 0.2]))
        torch.testing.assert_close(inst.pred_boxes.tensor, frames[t].pred_boxes.tensor[[1, 2]])


def test_torch_inputs_equal_numpy_inputs():
    rng = np.random.default_rng(2)
    video = random_video(rng, num_frames=5, max_boxes=6, num_classes=2)
    as_torch = [[torch.as_tensor(x) for x in part] for part in video]
    for a, b in zip(seq_nms_arrays(*video), seq_nms_arrays(*as_torch)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rescore="mean"), "rescore must be one of"),
        (dict(link_iou=1.5), "link_iou must be in"),
        (dict(nms_iou=-0.1), "nms_iou must be in"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        seq_nms_arrays([np.array([box(0, 0)])], [np.array([0.5])], [np.array([0])], **kwargs)


def test_bad_inputs_name_the_frame():
    good = ([np.array([box(0, 0)])] * 2, [np.array([0.5])] * 2, [np.array([0])] * 2)
    with pytest.raises(ValueError, match="one entry per frame"):
        seq_nms_arrays(good[0], good[1][:1], good[2])
    with pytest.raises(ValueError, match="frame 1 has 1 boxes but 2 scores"):
        seq_nms_arrays(good[0], [good[1][0], np.array([0.5, 0.4])], good[2])
    with pytest.raises(ValueError, match=r"boxes of frame 0 must be \[N, 4\]"):
        seq_nms_arrays([np.zeros((1, 5))] + good[0][1:], *good[1:])
    with pytest.raises(ValueError, match="scores of frame 1 must be non-negative"):
        seq_nms_arrays(good[0], [good[1][0], np.array([-0.1])], good[2])
    with pytest.raises(ValueError, match="classes of frame 0 must be integers"):
        seq_nms_arrays(*good[:2], [np.array([0.5])] + good[2][1:])
    with pytest.raises(ValueError, match="frame 0 has no 'pred_classes' field"):
        seq_nms([Instances((4, 4), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0))])
