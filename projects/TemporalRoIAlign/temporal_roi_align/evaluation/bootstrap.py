"""Confidence intervals over videos for COCO-style AP50 (the VID headline metric).

A test set of a few videos gives an AP50 that moves with the choice of videos. The bootstrap
redraws the evaluated videos with replacement and recomputes AP50 each time; the 2.5th and
97.5th percentiles of the redraws bound a 95% interval. Comparing two models on the same
redraws (paired) gives an interval for their difference.

:class:`AP50Table` runs COCOeval's matching once (IoU 0.5, all areas, at most ``max_dets``
detections per frame, as :class:`VIDEvaluator`'s AP50) and keeps, per class, every detection's
score and match; AP50 for any whole-number weighting of the frames is then a weighted version of
COCOeval's accumulation (101 recall points), without matching again. With all weights 1 it is
COCOeval's AP50.
"""

import contextlib
import io
from typing import Hashable, List, Optional, Sequence, Set, Tuple

import numpy as np
from pycocotools.cocoeval import COCOeval

from .vid_evaluation import coco_ground_truth, coco_results

__all__ = ["AP50Table", "bootstrap_ap50", "bootstrap_ytvis", "percentile_interval"]

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


class AP50Table:
    """Per-class matches of a set of detections at IoU 0.5, for AP50 under any frame weights.

    Args:
        dataset_dicts: the dataset's frame dicts (``image_id``, ``video_id``, ``annotations``).
        detections: COCO result-format detections with contiguous ``category_id`` (as
            ``VIDEvaluator`` writes to ``coco_instances_results.json`` for datasets without a
            category id mapping).
        class_names: the dataset's ``thing_classes``.
        image_ids: the frames evaluated (default: all of ``dataset_dicts``).
        max_dets: detections kept per frame, highest scores first.
    """

    def __init__(
        self,
        dataset_dicts: Sequence[dict],
        detections: Sequence[dict],
        class_names: Sequence[str],
        image_ids: Optional[Set[Hashable]] = None,
        max_dets: int = 100,
    ):
        frames = [d for d in dataset_dicts if image_ids is None or d["image_id"] in image_ids]
        self.image_ids = [d["image_id"] for d in frames]
        self.image_videos = [d["video_id"] for d in frames]
        coco_gt = coco_ground_truth(frames, class_names)
        evaluation = COCOeval(
            coco_gt, coco_results(coco_gt, [d for d in detections if d["image_id"] in set(self.image_ids)]), "bbox"
        )
        p = evaluation.params
        p.imgIds, p.iouThrs, p.maxDets = list(self.image_ids), np.array([0.5]), [max_dets]
        p.areaRng, p.areaRngLbl = p.areaRng[:1], p.areaRngLbl[:1]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation.evaluate()
        # evalImgs is ordered class-major, then image (one area range).
        per_class = np.array(evaluation.evalImgs, dtype=object).reshape(len(p.catIds), len(p.imgIds))
        self.classes: List[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for entries in per_class:
            scores, matched, image, kept, gt_counts = [], [], [], [], np.zeros(len(self.image_ids))
            for i, entry in enumerate(entries):
                if entry is None:
                    continue
                scores.append(np.asarray(entry["dtScores"], dtype=np.float64))
                matched.append(entry["dtMatches"][0] > 0)
                kept.append(~entry["dtIgnore"][0].astype(bool))
                image.append(np.full(len(entry["dtScores"]), i))
                gt_counts[i] = np.count_nonzero(entry["gtIgnore"] == 0)
            if scores:
                scores, matched, image, kept = map(np.concatenate, (scores, matched, image, kept))
            else:
                scores, matched, image, kept = np.zeros(0), np.zeros(0, bool), np.zeros(0, int), np.zeros(0, bool)
            order = np.argsort(-scores, kind="mergesort")  # as COCOeval.accumulate
            true_positive = (matched & kept)[order]
            false_positive = (~matched & kept)[order]
            self.classes.append((image[order], true_positive, false_positive, gt_counts))

    def ap50(self, image_weights: Optional[np.ndarray] = None) -> float:
        """Mean over the classes with ground truth of their AP50, in %, with each frame counted
        ``image_weights[i]`` times (default once); nan when no class has ground truth."""
        weights = np.ones(len(self.image_ids)) if image_weights is None else np.asarray(image_weights, np.float64)
        aps = []
        for image, true_positive, false_positive, gt_counts in self.classes:
            num_gt = float(gt_counts @ weights)
            if num_gt == 0:
                continue
            w = weights[image]
            tp = np.cumsum(true_positive * w)
            fp = np.cumsum(false_positive * w)
            if len(tp) == 0:
                aps.append(0.0)
                continue
            recall = tp / num_gt
            precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1])[::-1]
            positions = np.searchsorted(recall, _RECALL_POINTS, side="left")
            aps.append(np.where(positions < len(tp), precision[np.minimum(positions, len(tp) - 1)], 0.0).mean() * 100)
        return float(np.mean(aps)) if aps else float("nan")


def bootstrap_ap50(tables: Sequence[AP50Table], samples: int = 1000, seed: int = 0) -> np.ndarray:
    """AP50 of each table on ``samples`` redraws of the videos (with replacement, as many as
    there are): ``[samples, len(tables)]``. All tables see the same redraws (paired), so
    differences between columns are the paired bootstrap of the difference."""
    videos = sorted({v for t in tables for v in t.image_videos}, key=str)
    index = {v: i for i, v in enumerate(videos)}
    video_of_image = [np.array([index[v] for v in t.image_videos], dtype=np.int64) for t in tables]
    rng = np.random.default_rng(seed)
    out = np.empty((samples, len(tables)))
    for s in range(samples):
        counts = np.bincount(rng.integers(len(videos), size=len(videos)), minlength=len(videos)).astype(np.float64)
        for j, table in enumerate(tables):
            out[s, j] = table.ap50(counts[video_of_image[j]])
    return out


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    """The central ``level`` interval of ``values`` (bootstrap percentile interval), ignoring nan."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ytvis(
    video_ids: Sequence,
    categories: Sequence[Tuple[int, str]],
    ground_truth: Sequence[dict],
    predictions: Sequence[Sequence[dict]],
    metrics: Sequence[str] = ("AP", "AP50"),
    samples: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """YouTube-VIS metrics (:func:`ytvis_metrics`) of several sets of video-level predictions on
    ``samples`` redraws of the videos (with replacement; a video drawn twice counts twice, its
    copies renamed): ``[samples, len(predictions), len(metrics)]``. All sets see the same
    redraws (paired). Each redraw matches the videos again, so this costs ``samples`` full
    evaluations: meant for small test sets."""
    from .ytvis_metric import ytvis_metrics

    videos = list(video_ids)
    gt_by_video, predictions_by_video = {}, [{} for _ in predictions]
    for instance in ground_truth:
        gt_by_video.setdefault(instance["video_id"], []).append(instance)
    for by_video, instances in zip(predictions_by_video, predictions):
        for instance in instances:
            by_video.setdefault(instance["video_id"], []).append(instance)
    rng = np.random.default_rng(seed)
    out = np.empty((samples, len(predictions), len(metrics)))
    for s in range(samples):
        drawn = [(copy, videos[i]) for copy, i in enumerate(rng.integers(len(videos), size=len(videos)))]
        gt = [dict(g, video_id=copy) for copy, v in drawn for g in gt_by_video.get(v, [])]
        for j, by_video in enumerate(predictions_by_video):
            dt = [dict(p, video_id=copy) for copy, v in drawn for p in by_video.get(v, [])]
            results = ytvis_metrics([copy for copy, _ in drawn], categories, gt, dt)
            out[s, j] = [results[m] for m in metrics]
    return out
