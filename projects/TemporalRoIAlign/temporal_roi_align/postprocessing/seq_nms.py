"""
Seq-NMS (Han et al., 2016, "Seq-NMS for Video Object Detection"): video-level rescoring and
suppression of per-frame detections.

For each class separately, repeat until no box is left:

1. link every box of frame t to the boxes of frame t+1 with IoU >= ``link_iou``;
2. take the sequence of linked boxes in consecutive frames whose score sum is largest
   (dynamic programming over the frames); a single box is a sequence of length one;
3. give all its boxes the sequence's score (``"avg"``: mean of their scores, ``"max"``: maximum);
4. in each frame of the sequence, drop the boxes whose IoU with the sequence's box is
   >= ``nms_iou``, and take the sequence's boxes out of further linking.

Defaults, thresholds compared with ``>=``, and dropping suppressed boxes follow the reference
implementation of FGFA (msracver/Flow-Guided-Feature-Aggregation, ``lib/nms/seq_nms.py``:
link IoU 0.5, suppression IoU 0.3, average rescoring; MEGA's repository has no Seq-NMS code).
FGFA stops when no link is left and then runs per-frame NMS at the same 0.3;
here boxes without links are sequences of length one, which is that NMS, so a one-frame video
gets plain per-class NMS. IoU uses Detectron2's continuous coordinates (no "+1" pixel).

Boxes never suppress boxes of another class. Scores must be non-negative (detection
probabilities). Ties between equal sums go to the earliest frame, then the lowest index.
Seq-NMS replaces per-frame NMS: FGFA feeds it the per-class detections before NMS, with scores
above 1e-3 and no per-image cap.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Instances

from ..config import CHOICES

__all__ = ["seq_nms", "seq_nms_arrays", "RESCORE_MODES"]

RESCORE_MODES = CHOICES["VIDEO.SEQ_NMS.RESCORE"]
# Elements of one [frames, boxes, boxes] IoU block computed at a time (bounds temporary memory).
_IOU_BLOCK_ELEMENTS = 1 << 16


def seq_nms(
    frames: Sequence[Instances], link_iou: float = 0.5, nms_iou: float = 0.3, rescore: str = "avg"
) -> List[Instances]:
    """
    Seq-NMS on the detections of one video.

    Args:
        frames: one ``Instances`` per frame, in temporal order, with ``pred_boxes`` (XYXY),
            ``scores`` and ``pred_classes``; any other fields are indexed along.
        link_iou, nms_iou, rescore: see :func:`seq_nms_arrays`.

    Returns:
        One ``Instances`` per frame (same image size and device) holding the kept detections
        with their new ``scores``, sorted by descending score.
    """
    boxes, scores, classes = [], [], []
    for t, instances in enumerate(frames):
        for field in ("pred_boxes", "scores", "pred_classes"):
            if not instances.has(field):
                raise ValueError(f"seq_nms: frame {t} has no '{field}' field (fields: {list(instances.get_fields())})")
        boxes.append(instances.pred_boxes.tensor)
        scores.append(instances.scores)
        classes.append(instances.pred_classes)
    keep, new_scores = seq_nms_arrays(boxes, scores, classes, link_iou, nms_iou, rescore)
    results = []
    for instances, frame_keep, frame_scores in zip(frames, keep, new_scores):
        device = instances.scores.device
        kept = instances[torch.as_tensor(frame_keep, device=device)]
        kept.scores = torch.as_tensor(frame_scores, dtype=instances.scores.dtype, device=device)
        results.append(kept)
    return results


def seq_nms_arrays(
    boxes: Sequence,
    scores: Sequence,
    classes: Sequence,
    link_iou: float = 0.5,
    nms_iou: float = 0.3,
    rescore: str = "avg",
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """
    Seq-NMS on arrays (see the module docstring for the algorithm).

    Args:
        boxes: per frame ``t``, ``[N_t, 4]`` XYXY boxes (numpy arrays or torch tensors, any device).
        scores: per frame, ``[N_t]`` non-negative scores.
        classes: per frame, ``[N_t]`` integer class ids.
        link_iou: boxes of adjacent frames with IoU >= this are linked (0.5).
        nms_iou: boxes with IoU >= this with a selected sequence's box in its frame are dropped (0.3).
        rescore: ``"avg"`` or ``"max"`` of the sequence's scores.

    Returns:
        ``(keep, new_scores)``: per frame, the int64 indices of the kept boxes sorted by
        descending new score (ties: lower index first), and their float64 new scores.
    """
    if rescore not in RESCORE_MODES:
        raise ValueError(f"seq_nms: rescore must be one of {RESCORE_MODES}, got {rescore!r}")
    for name, value in (("link_iou", link_iou), ("nms_iou", nms_iou)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"seq_nms: {name} must be in [0, 1], got {value}")
    boxes, scores, classes = _frames_as_numpy(boxes, scores, classes)
    counts = np.array([len(s) for s in scores], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    flat_scores = np.concatenate(scores) if scores else np.zeros(0)
    flat_classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    flat_frames = np.repeat(np.arange(len(counts)), counts)
    kept = np.zeros(len(flat_scores), dtype=bool)
    new_scores = flat_scores.copy()

    # Boxes by (class, frame, index); one padded [frames, slots] problem per class.
    order = np.lexsort((flat_frames, flat_classes))
    sorted_classes = flat_classes[order]
    class_starts = np.flatnonzero(sorted_classes[1:] != sorted_classes[:-1]) + 1
    for members in np.split(order, class_starts) if len(order) else []:
        frames = flat_frames[members]
        first = frames[0]
        frame_starts = np.searchsorted(frames, frames, side="left")
        slots = np.arange(len(members)) - frame_starts
        shape = (frames[-1] - first + 1, slots.max() + 1)
        valid = np.zeros(shape, dtype=bool)
        valid[frames - first, slots] = True
        padded_boxes = np.zeros(shape + (4,))
        padded_boxes[frames - first, slots] = flat_boxes[members]
        padded_scores = np.zeros(shape)
        padded_scores[frames - first, slots] = flat_scores[members]
        selected, rescored = _SequenceSearch(padded_boxes, padded_scores, valid, link_iou, nms_iou, rescore).run()
        kept[members] = selected[frames - first, slots]
        new_scores[members] = rescored[frames - first, slots]

    keep, frame_scores = [], []
    for t in range(len(counts)):
        indices = np.flatnonzero(kept[offsets[t] : offsets[t + 1]])
        values = new_scores[offsets[t] : offsets[t + 1]][indices]
        by_score = np.argsort(-values, kind="stable")
        keep.append(indices[by_score].astype(np.int64))
        frame_scores.append(values[by_score])
    return keep, frame_scores


class _SequenceSearch:
    """
    Seq-NMS for one class on padded arrays ``[T, n]`` (``valid`` marks real boxes).

    ``best[t, i]`` is the largest score sum of a sequence ending at active box ``(t, i)``
    (``-inf`` for inactive boxes); ``pred_best[t, i]`` is the largest ``best`` among the active
    boxes of frame ``t-1`` linked to it (``-inf`` if none); a sequence extends its best linked
    predecessor when that is positive. After each selection only the frames whose values can
    change are recomputed (:meth:`_remove`).
    Isolated boxes scoring above every sequence of two or more boxes are taken together, by
    per-frame greedy NMS, which is what taking them one at a time would do.
    """

    def __init__(self, boxes, scores, valid, link_iou, nms_iou, rescore):
        self.scores = scores
        self.rescore = rescore
        num_frames, num_slots = scores.shape
        # links[t, i, j]: box i of frame t and box j of frame t+1 are linked.
        self.links = _frame_ious(boxes[:-1], boxes[1:]) >= link_iou
        self.links &= valid[:-1, :, None] & valid[1:, None, :]
        # suppresses[t, i, j]: selecting box i of frame t drops box j (itself included).
        self.suppresses = _frame_ious(boxes, boxes) >= nms_iou
        self.suppresses[:, np.arange(num_slots), np.arange(num_slots)] = True
        self.suppresses &= valid[:, :, None] & valid[:, None, :]
        self.active = valid.copy()
        self.best = np.full(scores.shape, -np.inf)
        self.pred_best = np.full(scores.shape, -np.inf)
        self.selected = np.zeros(scores.shape, dtype=bool)
        self.new_scores = scores.copy()
        # Per frame: the largest best of its boxes with / without a positive predecessor.
        self.frame_chained = np.full(num_frames, -np.inf)
        self.frame_unchained = np.full(num_frames, -np.inf)
        for t in range(num_frames):
            self._update_frame(t)

    def run(self):
        remaining = int(self.active.sum())
        while remaining:
            t = int(np.argmax(np.maximum(self.frame_chained, self.frame_unchained)))
            i = int(np.argmax(self.best[t]))
            if self.pred_best[t, i] > 0:
                frames, slots = self._backtrack(t, i)
                sequence_scores = self.scores[frames, slots]
                value = sequence_scores.mean() if self.rescore == "avg" else sequence_scores.max()
                self.selected[frames, slots] = True
                self.new_scores[frames, slots] = value
                removed = self.suppresses[frames, slots] & self.active[frames]
            else:
                frames, removed = self._select_isolated(t, i)
            remaining -= self._remove(frames, removed)
        return self.selected, self.new_scores

    def _remove(self, frames, removed):
        """
        Takes the boxes ``removed[k]`` of frame ``frames[k]`` out, then recomputes the frames
        that lost a linked predecessor, each followed by the next frames while they change (a
        frame's values depend only on the frame before it). Returns how many were removed.
        """
        rows, slots = np.nonzero(removed)
        frames = frames[rows]
        self.active[frames, slots] = False
        self.best[frames, slots] = -np.inf
        self._update_frame_maxima(np.unique(frames))
        inner = frames < self.best.shape[0] - 1
        frames, slots = frames[inner], slots[inner]
        lost_predecessor = (self.links[frames, slots] & self.active[frames + 1]).any(axis=1)
        pending = np.unique(frames[lost_predecessor] + 1).tolist()
        k = 0
        while k < len(pending):
            t = pending[k]
            while True:
                previous = self.best[t].copy()
                self._update_frame(t)
                while k < len(pending) and pending[k] <= t:
                    k += 1
                if t + 1 == self.best.shape[0] or (previous == self.best[t]).all():
                    break
                t += 1
        return len(rows)

    def _update_frame(self, t):
        if t > 0:
            linked = np.where(self.links[t - 1], self.best[t - 1][:, None], -np.inf)
            self.pred_best[t] = linked.max(axis=0)
        self.best[t] = np.where(self.active[t], self.scores[t] + np.maximum(self.pred_best[t], 0.0), -np.inf)
        self._update_frame_maxima(t)

    def _update_frame_maxima(self, frames):
        best, chained = self.best[frames], self.pred_best[frames] > 0
        self.frame_chained[frames] = np.where(chained, best, -np.inf).max(axis=-1)
        self.frame_unchained[frames] = np.where(chained, -np.inf, best).max(axis=-1)

    def _backtrack(self, t, i):
        frames, slots = [t], [i]
        while self.pred_best[t, i] > 0:
            i = int(np.argmax(np.where(self.links[t - 1][:, i], self.best[t - 1], -np.inf)))
            t -= 1
            frames.append(t)
            slots.append(i)
        return np.array(frames[::-1]), np.array(slots[::-1])

    def _select_isolated(self, t, i):
        """
        The best remaining sequence is the single box ``(t, i)``. Every active box without a
        positive linked predecessor that scores above all sequences of two or more boxes has
        no active link either (a linked successor would score more), and selecting it only
        suppresses boxes that score less: taking all of them by per-frame greedy NMS (score
        order, then index) selects what one at a time would. Returns the frames with
        removals and their removal masks.
        """
        # Inactive boxes have best -inf; an active box without a positive predecessor has best = score.
        threshold = self.frame_chained.max()
        frames = np.union1d(np.flatnonzero(self.frame_unchained > threshold), [t])
        alive = (self.pred_best[frames] <= 0) & (self.best[frames] > threshold)
        alive[np.searchsorted(frames, t), i] = True  # even if it ties with a longer sequence
        order = np.argsort(np.where(alive, -self.scores[frames], np.inf), axis=1, kind="stable")
        counts = alive.sum(axis=1)
        removed = np.zeros_like(alive)
        for rank in range(counts.max()):
            rows = np.flatnonzero(counts > rank)
            slots = order[rows, rank]
            take = alive[rows, slots]
            rows, slots = rows[take], slots[take]
            self.selected[frames[rows], slots] = True
            suppressed = self.suppresses[frames[rows], slots]
            alive[rows] &= ~suppressed
            removed[rows] |= suppressed
        return frames, removed & self.active[frames]


def _frame_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a [F, n, 4]`` and ``b [F, m, 4]`` frame by frame: ``[F, n, m]`` (0 for empty unions)."""
    num_frames, n, m = a.shape[0], a.shape[1], b.shape[1]
    out = np.zeros((num_frames, n, m))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    step = max(1, _IOU_BLOCK_ELEMENTS // max(1, n * m))
    for start in range(0, num_frames, step):
        f = slice(start, start + step)
        width = np.minimum(a[f, :, None, 2], b[f, None, :, 2]) - np.maximum(a[f, :, None, 0], b[f, None, :, 0])
        height = np.minimum(a[f, :, None, 3], b[f, None, :, 3]) - np.maximum(a[f, :, None, 1], b[f, None, :, 1])
        inter = np.maximum(width, 0.0, out=width)
        inter *= np.maximum(height, 0.0, out=height)
        union = area_a[f, :, None] + area_b[f, None, :]
        union -= inter
        np.divide(inter, union, out=out[f], where=union > 0)
    return out


def _frames_as_numpy(boxes, scores, classes):
    """Per-frame float64 boxes/scores and int64 classes, checked against each other."""
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(
            f"seq_nms: boxes, scores and classes must have one entry per frame, "
            f"got {len(boxes)}, {len(scores)} and {len(classes)}"
        )
    out_boxes, out_scores, out_classes = [], [], []
    for t, (frame_boxes, frame_scores, frame_classes) in enumerate(zip(boxes, scores, classes)):
        frame_boxes = _to_numpy(frame_boxes).astype(np.float64)
        frame_scores = _to_numpy(frame_scores).astype(np.float64).reshape(-1)
        frame_classes = _to_numpy(frame_classes).reshape(-1)
        if frame_boxes.size == 0:
            frame_boxes = frame_boxes.reshape(0, 4)
        if frame_boxes.ndim != 2 or frame_boxes.shape[1] != 4:
            raise ValueError(f"seq_nms: boxes of frame {t} must be [N, 4], got shape {frame_boxes.shape}")
        num_boxes = frame_boxes.shape[0]
        if len(frame_scores) != num_boxes or len(frame_classes) != num_boxes:
            raise ValueError(
                f"seq_nms: frame {t} has {num_boxes} boxes but {len(frame_scores)} scores "
                f"and {len(frame_classes)} classes"
            )
        if not np.all(frame_scores >= 0):
            raise ValueError(f"seq_nms: scores of frame {t} must be non-negative (and not NaN)")
        if num_boxes and frame_classes.dtype.kind not in "iu":
            raise ValueError(f"seq_nms: classes of frame {t} must be integers, got dtype {frame_classes.dtype}")
        out_boxes.append(frame_boxes)
        out_scores.append(frame_scores)
        out_classes.append(frame_classes.astype(np.int64))
    return out_boxes, out_scores, out_classes


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
