"""
MaskTrack R-CNN's online tracker (Yang, Fan, Xu, ICCV 2019), as the public toolbox runs it at
test time (mmtracking 0.14 ``MaskTrackRCNNTracker``), except that a track is given to at most
one detection per frame.

Each frame, detection ``i`` scores every remembered track ``j`` and "a new track" (column 0)::

    log_softmax(match_logits)[i, j] + DET_SCORE_WEIGHT * log(score_i)
        + IOU_WEIGHT * IoU(box_i, box_j) + CLASS_WEIGHT * [class_i == class_j]

where the new-track column has IoU 0 and counts as the same class (the toolbox's weights 1, 2,
10). Assignment is greedy over (detection, track) pairs in decreasing score: a pair is taken when
neither is taken yet and it scores above the detection's new-track score; detections left over
start new tracks. A matched track's box, class and embedding are replaced by the detection's; a
track unmatched in ``num_frames_retain`` consecutive frames (20) is forgotten.

Differences from the toolbox:

- The toolbox gives each detection its best column, in its detection order (class-major): a
  later detection that scores higher on an already given track takes the same id too (two
  detections, one id), one that scores lower is dropped from the output. Here the better pair
  wins and the other detection takes its next best track that still beats "new", else becomes a
  new track; no detection is dropped. Without such conflicts both give the same tracks (new
  ids are numbered in detection order in both, so they differ when the orders differ).
- ``log_softmax`` instead of ``log(softmax)``: equal where the latter is finite (it gives -inf
  once a probability underflows, which changes no best column).
- Frames count by :meth:`MaskTrackTracker.update` calls, frames without detections included; the
  toolbox skips those frames, so it forgets a track only at the next frame with detections, after
  matching against it.
"""

import torch
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances, pairwise_iou

from .track_head import match_logits

__all__ = ["MaskTrackTracker"]


class MaskTrackTracker:
    """
    Online tracker of one video at a time: call :meth:`reset` before each video, then
    :meth:`update` once per frame in order.
    """

    @configurable
    def __init__(
        self,
        *,
        det_score_weight: float = 1.0,
        iou_weight: float = 2.0,
        class_weight: float = 10.0,
        num_frames_retain: int = 20,
    ):
        if num_frames_retain < 1:
            raise ValueError(f"MaskTrackTracker: num_frames_retain must be >= 1, got {num_frames_retain}")
        self.det_score_weight = det_score_weight
        self.iou_weight = iou_weight
        self.class_weight = class_weight
        self.num_frames_retain = num_frames_retain
        self.reset()

    @classmethod
    def from_config(cls, cfg):
        t = cfg.MODEL.MASKTRACK_TRACKER
        return {
            "det_score_weight": t.DET_SCORE_WEIGHT,
            "iou_weight": t.IOU_WEIGHT,
            "class_weight": t.CLASS_WEIGHT,
            "num_frames_retain": t.NUM_FRAMES_RETAIN,
        }

    def reset(self) -> None:
        """Forget all tracks; the next :meth:`update` is frame 0 and its new tracks get ids from 0."""
        self.frame = 0
        self.next_id = 0
        # The remembered tracks, one row each (tensors from the first update on): id, last box
        # (XYXY), last class, last embedding, last frame seen.
        self.ids = self.boxes = self.classes = self.embeddings = self.last_seen = None

    @property
    def num_tracks(self) -> int:
        """Number of remembered tracks."""
        return 0 if self.ids is None else len(self.ids)

    def match_scores(self, detections: Instances, embeddings: torch.Tensor) -> torch.Tensor:
        """
        Args:
            detections: N detections with ``pred_boxes``, ``scores`` (in (0, 1]) and
                ``pred_classes``, on the device of the tracks' first frame.
            embeddings: ``[N, D]`` their track-head embeddings.
        Returns:
            ``[N, 1 + T]``: column 0 "new track", column ``1 + j`` the ``j``-th remembered track.
        """
        n = len(detections)
        if self.num_tracks == 0:
            logits, iou, same_class = (embeddings.new_zeros(n, k) for k in (1, 0, 0))
        else:
            logits = match_logits(embeddings, self.embeddings)
            iou = pairwise_iou(detections.pred_boxes, Boxes(self.boxes))
            same_class = detections.pred_classes[:, None] == self.classes[None, :]
        bonus = self.iou_weight * iou.to(logits) + self.class_weight * same_class.to(logits)
        bonus = torch.cat([bonus.new_full((n, 1), self.class_weight), bonus], dim=1)
        det_score = self.det_score_weight * detections.scores.to(logits).log()[:, None]
        return logits.log_softmax(dim=1) + det_score + bonus

    @staticmethod
    def assign(scores: torch.Tensor) -> torch.Tensor:
        """
        Greedy one-to-one assignment on ``[N, 1 + T]`` match scores (column 0: new track).
        Returns ``[N]`` int64: the track column ``j`` (0-based, without the new-track column)
        given to each detection, or -1 for a new track. Ties go to the lower detection index,
        then the lower track index.
        """
        n, t = scores.shape[0], scores.shape[1] - 1
        track_scores = scores[:, 1:]
        rows, cols = torch.nonzero(track_scores > scores[:, :1], as_tuple=True)
        order = torch.sort(track_scores[rows, cols], descending=True, stable=True).indices
        assigned = [-1] * n
        track_taken = [False] * t
        for i, j in zip(rows[order].tolist(), cols[order].tolist()):
            if assigned[i] < 0 and not track_taken[j]:
                assigned[i], track_taken[j] = j, True
        return torch.tensor(assigned, dtype=torch.int64)

    def update(self, detections: Instances, embeddings: torch.Tensor) -> torch.Tensor:
        """
        Track one frame.

        Args:
            detections: the frame's N detections, ``pred_boxes`` (in the same coordinates in
                every frame), ``scores`` and ``pred_classes``.
            embeddings: ``[N, D]`` their embeddings (``MaskTrackHead.embed``).
        Returns:
            ``[N]`` int64 track ids, all different; new tracks get the next unused ids in
            detection order.
        """
        n = len(detections)
        if embeddings.dim() != 2 or embeddings.shape[0] != n:
            raise ValueError(
                f"MaskTrackTracker.update: {n} detections but embeddings of shape {list(embeddings.shape)}"
            )
        boxes, classes = detections.pred_boxes.tensor.detach(), detections.pred_classes.detach()
        embeddings = embeddings.detach()
        device = embeddings.device
        if self.ids is None:
            self.ids = torch.zeros(0, dtype=torch.int64, device=device)
            self.boxes, self.classes = boxes.new_zeros(0, 4), classes.new_zeros(0)
            self.embeddings, self.last_seen = embeddings.new_zeros(0, embeddings.shape[1]), self.ids.clone()

        if n and self.num_tracks:
            assigned = self.assign(self.match_scores(detections, embeddings)).to(device)
        else:
            assigned = torch.full((n,), -1, dtype=torch.int64, device=device)
        matched, new = assigned >= 0, assigned < 0
        rows, num_new = assigned[matched], int(new.sum())
        ids = torch.empty(n, dtype=torch.int64, device=device)
        ids[matched] = self.ids[rows]
        ids[new] = torch.arange(self.next_id, self.next_id + num_new, device=device)
        self.next_id += num_new

        self.boxes[rows], self.classes[rows] = boxes[matched], classes[matched]
        self.embeddings[rows] = embeddings[matched]
        self.last_seen[rows] = self.frame
        self.ids = torch.cat([self.ids, ids[new]])
        self.boxes = torch.cat([self.boxes, boxes[new]])
        self.classes = torch.cat([self.classes, classes[new]])
        self.embeddings = torch.cat([self.embeddings, embeddings[new]])
        self.last_seen = torch.cat([self.last_seen, torch.full_like(ids[new], self.frame)])

        keep = self.frame - self.last_seen < self.num_frames_retain
        self.ids, self.boxes, self.classes = self.ids[keep], self.boxes[keep], self.classes[keep]
        self.embeddings, self.last_seen = self.embeddings[keep], self.last_seen[keep]
        self.frame += 1
        return ids
