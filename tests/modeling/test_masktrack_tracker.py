"""temporal_roi_align.modeling.MaskTrackTracker on scripted detections, against hand-computed
scores and a reference of the toolbox's assignment (mmtracking 0.14 MaskTrackRCNNTracker)."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from temporal_roi_align import add_video_config
from temporal_roi_align.modeling import MaskTrackTracker

DIM = 8


def emb(*keys, scale=10.0):
    """Embeddings scale * one_hot(k): the dot product is scale**2 with itself, 0 with the others."""
    out = torch.zeros(len(keys), DIM)
    for row, k in enumerate(keys):
        if k is not None:  # None: an all-zero embedding (uniform match probabilities)
            out[row, k] = scale
    return out


def dets(boxes, scores, classes):
    return Instances(
        (480, 640),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        scores=torch.tensor(scores, dtype=torch.float32),
        pred_classes=torch.tensor(classes, dtype=torch.int64),
    )


BOX_A, BOX_B = [10.0, 10.0, 60.0, 60.0], [200.0, 100.0, 260.0, 180.0]


def toolbox_assign(scores):
    """MaskTrackRCNNTracker.assign_ids: each detection, in order, takes its best column; a track
    column goes to it when it beats the best score given to that track so far (the earlier
    detection keeps the id too); otherwise the detection is dropped (-1). Returns the columns
    (-1: dropped, 'new': new track)."""
    best = [-1e6] * (scores.shape[1] - 1)
    out = []
    for row in scores:
        j = int(row.argmax())
        if j == 0:
            out.append("new")
        elif row[j] > best[j - 1]:
            best[j - 1] = float(row[j])
            out.append(j - 1)
        else:
            out.append(-1)
    return out


# ---- the score --------------------------------------------------------------------------------------


def test_match_score_formula_on_hand_numbers():
    tracker = MaskTrackTracker()
    # Two tracks: box [0, 0, 10, 10] class 1 embedding (1, 0); box [5, 0, 15, 10] class 2 embedding (0, 1).
    first = dets([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], [1, 2])
    tracker.update(first, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # A detection at the first box, score 0.5, class 1, embedding (2, 1): logits (0, 2, 1).
    scores = tracker.match_scores(dets([[0, 0, 10, 10]], [0.5], [1]), torch.tensor([[2.0, 1.0]]))
    lse = math.log(1 + math.exp(2) + math.exp(1))
    expected = [
        0 - lse + math.log(0.5) + 2.0 * 0 + 10.0 * 1,  # new track: IoU 0, counts as the same class
        2 - lse + math.log(0.5) + 2.0 * 1 + 10.0 * 1,  # track 0: IoU 1, same class
        1 - lse + math.log(0.5) + 2.0 * (50 / 150) + 10.0 * 0,  # track 1: IoU 50 / 150, other class
    ]
    assert scores.shape == (1, 3)
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-5)

    weighted = MaskTrackTracker(det_score_weight=0.5, iou_weight=3.0, class_weight=1.0)
    weighted.update(first, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    scores = weighted.match_scores(dets([[0, 0, 10, 10]], [0.5], [1]), torch.tensor([[2.0, 1.0]]))
    expected = [
        0 - lse + 0.5 * math.log(0.5) + 1.0,
        2 - lse + 0.5 * math.log(0.5) + 3.0 + 1.0,
        1 - lse + 0.5 * math.log(0.5) + 3.0 * (50 / 150),
    ]
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-5)


def test_config_keys_set_the_toolbox_weights():
    cfg = get_cfg()
    add_video_config(cfg)
    tracker = MaskTrackTracker(cfg)
    assert (tracker.det_score_weight, tracker.iou_weight, tracker.class_weight, tracker.num_frames_retain) == (
        1.0,
        2.0,
        10.0,
        20,
    )
    cfg.MODEL.MASKTRACK_TRACKER.NUM_FRAMES_RETAIN = 0
    with pytest.raises(ValueError, match="num_frames_retain must be >= 1"):
        MaskTrackTracker(cfg)


# ---- assignment -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([[0, 5, 1], [0, 6, 4]], [1, 0]),  # detection 1 wins track 0; detection 0 takes its next best, track 1
        ([[0, 5, -1], [0, 6, 4]], [-1, 0]),  # ... whose score is below its "new": a new track
        ([[0, 3, 3]], [0]),  # tie between tracks: the first
        ([[0, 3], [0, 3]], [0, -1]),  # tie between detections: the first
        ([[2, 2]], [-1]),  # a tie with "new": new
        ([[0, -1, -2], [1, 0, 0.5]], [-1, -1]),  # nothing beats "new"
    ],
)
def test_greedy_assignment_by_hand(scores, expected):
    assert MaskTrackTracker.assign(torch.tensor(scores, dtype=torch.float32)).tolist() == expected


def test_assignment_equals_the_toolbox_without_conflicts_and_is_one_to_one_and_stable():
    generator = torch.Generator().manual_seed(0)
    conflict_free = 0
    for _ in range(300):
        n, t = torch.randint(1, 6, (2,), generator=generator).tolist()
        scores = torch.randn(n, t + 1, generator=generator) * 3
        ours = MaskTrackTracker.assign(scores).tolist()
        theirs = toolbox_assign(scores)
        taken = [j for j in theirs if j not in ("new", -1)]
        if -1 not in theirs and len(taken) == len(set(taken)):
            conflict_free += 1
            assert ours == [-1 if j == "new" else j for j in theirs]
        tracks = [j for j in ours if j >= 0]
        assert len(tracks) == len(set(tracks))
        # Stable: no detection prefers a track (over its own column) that is free or held by a
        # detection scoring it lower.
        own = [float(scores[i, j + 1]) for i, j in enumerate(ours)]
        for i in range(n):
            for k in range(t):
                better = float(scores[i, k + 1]) > own[i]
                holder = ours.index(k) if k in ours else None
                assert not better or (holder is not None and float(scores[holder, k + 1]) >= scores[i, k + 1])
    assert 50 < conflict_free < 300  # both kinds of case occurred


# ---- scripted videos --------------------------------------------------------------------------------


def test_new_and_continued_tracks():
    tracker = MaskTrackTracker()
    assert tracker.update(dets([BOX_A, BOX_B], [0.9, 0.8], [1, 2]), emb(0, 1)).tolist() == [0, 1]
    assert tracker.num_tracks == 2
    # The same objects, listed in the other order and slightly moved.
    moved = [[v + 3 for v in BOX_B], [v + 2 for v in BOX_A]]
    assert tracker.update(dets(moved, [0.7, 0.95], [2, 1]), emb(1, 0)).tolist() == [1, 0]
    # A third object appears: a new id after the others.
    third = [300.0, 300.0, 340.0, 350.0]
    assert tracker.update(dets([BOX_A, third], [0.9, 0.6], [1, 3]), emb(0, 2)).tolist() == [0, 2]
    assert tracker.num_tracks == 3
    # The memory holds each track's last box, class and embedding.
    row = tracker.ids.tolist().index(1)
    assert tracker.boxes[row].tolist() == moved[0] and int(tracker.classes[row]) == 2
    torch.testing.assert_close(tracker.embeddings[row], emb(1)[0])


def test_class_change():
    tracker = MaskTrackTracker()
    tracker.update(dets([BOX_A], [0.9], [1]), emb(0))
    # Same appearance, other class: the match (log p ~ 0, +0) still beats "new" (log p ~ -100, +10).
    assert tracker.update(dets([BOX_A], [0.9], [4]), emb(0)).tolist() == [0]
    assert tracker.classes.tolist() == [4]  # the track's class follows its last detection
    scores = tracker.match_scores(dets([BOX_A], [0.9], [4]), emb(0))
    assert float(scores[0, 1] - scores[0, 0]) == pytest.approx(100 + 2.0, abs=1e-3)  # same class now: +10 on both
    # No appearance evidence (uniform match probabilities): the class penalty makes it a new track.
    assert tracker.update(dets([BOX_A], [0.9], [5]), emb(None)).tolist() == [1]


def test_a_lost_track_is_found_again_and_forgotten_after_num_frames_retain():
    tracker = MaskTrackTracker(num_frames_retain=3)
    assert tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1)).tolist() == [0, 1]  # frame 0
    tracker.update(dets([BOX_B], [0.9], [2]), emb(1))  # frame 1: A unseen
    tracker.update(dets([], [], []), emb())  # frame 2: nothing detected, A and B unseen
    assert tracker.num_tracks == 2
    # Frame 3: A, unseen for 2 frames (< 3), is found again; B is unseen for the 2nd frame.
    assert tracker.update(dets([BOX_A], [0.9], [1]), emb(0)).tolist() == [0]
    assert tracker.ids.tolist() == [0, 1]
    tracker.update(dets([], [], []), emb())  # frame 4: B's 3rd unseen frame: forgotten
    assert tracker.ids.tolist() == [0]
    tracker.update(dets([], [], []), emb())  # frame 5
    tracker.update(dets([], [], []), emb())  # frame 6: A's 3rd unseen frame: forgotten
    assert tracker.num_tracks == 0
    # Frame 7: A and B again are new tracks.
    assert tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1)).tolist() == [2, 3]


def test_default_retention_is_20_frames():
    tracker = MaskTrackTracker()
    tracker.update(dets([BOX_A], [0.9], [1]), emb(0))  # frame 0: A is track 0
    for _ in range(19):  # frames 1..19: only B (track 1)
        tracker.update(dets([BOX_B], [0.9], [2]), emb(1))
    assert tracker.update(dets([BOX_A], [0.9], [1]), emb(0)).tolist() == [0]  # frame 20: A again
    for _ in range(20):  # frames 21..40: A unseen for 20 frames
        tracker.update(dets([BOX_B], [0.9], [2]), emb(1))
    assert tracker.update(dets([BOX_A], [0.9], [1]), emb(0)).tolist() == [2]  # frame 41: a new track


def test_a_track_goes_to_one_detection_per_frame():
    """Two detections look like track A. The toolbox, in its detection order, either gives
    both A's id or drops one of them; here the better pair keeps A and the other detection
    takes its next best track (B, same class, overlapping) or, without one, a new id."""
    tracker = MaskTrackTracker()
    near_b = [205.0, 105.0, 262.0, 180.0]
    tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1))
    for second_class, second_id in ((2, 1), (3, 2)):
        frame = dets([BOX_A, near_b], [0.9, 0.6], [1, second_class])
        embeddings = emb(0, 0)
        scores = tracker.match_scores(frame, embeddings)
        assert scores[:, 1].argmax() == 0 and (scores[:, 1:].argmax(dim=1) == 0).all()  # both prefer A
        theirs = toolbox_assign(scores)
        assert theirs == [0, -1]  # the toolbox drops detection 1 ...
        assert toolbox_assign(scores.flip(0)) == [0, 0]  # ... or, in the other order, gives A twice
        ids = tracker.update(frame, embeddings).tolist()
        assert ids == [0, second_id]
        tracker.reset()
        tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1))
        # The detection order does not matter.
        assert tracker.update(frame[[1, 0]], embeddings.flip(0)).tolist() == [second_id, 0]
        tracker.reset()
        tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1))


def test_reset_empty_frames_and_bad_input():
    tracker = MaskTrackTracker()
    assert tracker.update(dets([], [], []), emb()).tolist() == []
    assert tracker.num_tracks == 0 and tracker.frame == 1
    tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0, 1))
    tracker.reset()
    assert (tracker.num_tracks, tracker.frame, tracker.next_id) == (0, 0, 0)
    assert tracker.update(dets([BOX_B], [0.9], [2]), emb(1)).tolist() == [0]
    with pytest.raises(ValueError, match="2 detections but embeddings of shape \\[1, 8\\]"):
        tracker.update(dets([BOX_A, BOX_B], [0.9, 0.9], [1, 2]), emb(0))
