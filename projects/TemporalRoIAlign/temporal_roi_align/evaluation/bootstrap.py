"""Confidence intervals over videos for COCO-style AP50 (the VID headline metric) and the
YouTube-VIS metrics.

A test set of a few videos gives an AP50 that moves with the choice of videos. The bootstrap
redraws the evaluated videos with replacement and recomputes AP50 each time; the 2.5th and
97.5th percentiles of the redraws bound a 95% interval. Comparing two models on the same
redraws (paired) gives an interval for their difference.

COCOeval's matching is per image (frame or video) and class, independent of the other images;
only its accumulation ranks detections across images. So the tables here match once and then
recompute the accumulation (101 recall points) for any whole-number weighting of the images:

* :class:`AP50Table`: frames, IoU 0.5, all areas, at most ``max_dets`` detections per frame, as
  :class:`VIDEvaluator`'s AP50.
* :class:`YTVISTable`: videos, the YouTube-VIS AP, AP50 and AP75 (:func:`ytvis_metrics`); on
  the one-frame "videos" of :func:`frame_instances`, the per-frame mask AP of the same video-level
  predictions (each frame's masks scored by their track's score and class), still redrawn by video.

With all weights 1 they give COCOeval's numbers.
"""

import contextlib
import io
from typing import Dict, Hashable, List, Optional, Sequence, Set, Tuple

import numpy as np
from pycocotools.cocoeval import COCOeval

from .vid_evaluation import coco_ground_truth, coco_results
from .ytvis_metric import VideoCOCOeval

__all__ = [
    "AP50Table",
    "YTVISTable",
    "bootstrap_ap50",
    "bootstrap_ytvis",
    "frame_instances",
    "percentile_interval",
]

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _interpolated_precision(tp_sum: np.ndarray, fp_sum: np.ndarray, num_gt: float) -> np.ndarray:
    """COCOeval.accumulate's precision at the 101 recall points, [T, 101], from the cumulative
    true and false positives [T, D] of the detections ranked by score."""
    recall = tp_sum / num_gt
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((len(tp_sum), len(_RECALL_POINTS)))
    for t in range(len(tp_sum)):
        positions = np.searchsorted(recall[t], _RECALL_POINTS, side="left")
        inside = positions < recall.shape[1]
        out[t, inside] = precision[t, positions[inside]]
    return out


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
            tp, fp = np.cumsum(true_positive * w), np.cumsum(false_positive * w)
            aps.append(_interpolated_precision(tp[None], fp[None], num_gt).mean() * 100)
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


class YTVISTable:
    """Per-class matches of video-level predictions at the 10 IoU thresholds (area range "all",
    at most 100 per video and class, as the API's AP), for AP, AP50 and AP75 under any video
    weights.

    A video of weight ``w`` counts as ``w`` copies of itself: the numbers equal
    :func:`ytvis_metrics` on the copies, numbered so that the copies of a video follow each
    other in the videos' sorted order (the order that ranks detections of equal score).

    Args:
        video_ids, categories, ground_truth, predictions: as :func:`ytvis_metrics` takes them.
    """

    METRICS = ("AP", "AP50", "AP75")

    def __init__(
        self, video_ids: Sequence, categories: Sequence[Tuple[int, str]], ground_truth: Sequence[dict], predictions
    ):
        evaluation = VideoCOCOeval(video_ids, [c for c, _ in categories], ground_truth, predictions)
        p = evaluation.params
        p.areaRng, p.areaRngLbl, p.maxDets = p.areaRng[:1], p.areaRngLbl[:1], [100]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation.evaluate()
        self.video_ids = np.asarray(p.imgIds).tolist()  # sorted by evaluate(), the accumulation's order
        self._thresholds = {"AP": slice(None), "AP50": p.iouThrs == 0.5, "AP75": p.iouThrs == 0.75}
        num_thresholds = len(p.iouThrs)
        # evalImgs is ordered class-major, then video (one area range).
        per_class = np.array(evaluation.evalImgs, dtype=object).reshape(len(p.catIds), len(p.imgIds))
        self.classes: List[Tuple[np.ndarray, ...]] = []
        for entries in per_class:
            video, rank, scores = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
            matched, kept = [np.zeros((num_thresholds, 0), bool)], [np.zeros((num_thresholds, 0), bool)]
            gt_counts = np.zeros(len(self.video_ids), np.int64)
            for i, entry in enumerate(entries):
                if entry is None:
                    continue
                num_dets = len(entry["dtScores"])
                video.append(np.full(num_dets, i))
                rank.append(np.arange(num_dets))  # evaluateImg's order: by score, ties in input order
                scores.append(np.asarray(entry["dtScores"], dtype=np.float64))
                matched.append(entry["dtMatches"] > 0)
                kept.append(~entry["dtIgnore"].astype(bool))
                gt_counts[i] = np.count_nonzero(entry["gtIgnore"] == 0)
            video, rank, scores = map(np.concatenate, (video, rank, scores))
            matched, kept = (np.concatenate(x, axis=1) for x in (matched, kept))
            true_positive, false_positive = matched & kept, ~matched & kept
            self.classes.append((video, rank, scores, true_positive, false_positive, gt_counts))

    def metrics(self, video_weights: Optional[np.ndarray] = None) -> Dict[str, float]:
        """:data:`METRICS` in % (nan without ground truth), each video ``video_weights[i]``
        times (whole numbers, in the order of :attr:`video_ids`; default once)."""
        weights = np.ones(len(self.video_ids), np.int64) if video_weights is None else np.asarray(video_weights)
        if not np.array_equal(weights, np.round(weights)) or (weights < 0).any():
            raise ValueError(f"video weights must be whole numbers >= 0, got {weights}")
        weights = weights.astype(np.int64)
        classes = []
        for video, rank, scores, true_positive, false_positive, gt_counts in self.classes:
            num_gt = int(gt_counts @ weights)
            if num_gt == 0:
                continue  # COCOeval leaves the class out
            # Every detection once per copy of its video, in the order COCOeval.accumulate ranks
            # the copies' detections: by score, then copy (video, copy number), then rank.
            copies = weights[video]
            detections = np.repeat(np.arange(len(video)), copies)
            copy = np.arange(len(detections)) - np.repeat(np.cumsum(copies) - copies, copies)
            order = detections[np.lexsort((rank[detections], copy, video[detections], -scores[detections]))]
            tp_sum = np.cumsum(true_positive[:, order], axis=1).astype(float)
            fp_sum = np.cumsum(false_positive[:, order], axis=1).astype(float)
            classes.append(_interpolated_precision(tp_sum, fp_sum, num_gt))
        if not classes:
            return {name: float("nan") for name in self.METRICS}
        precision = np.stack(classes, axis=-1)  # [IoU threshold, recall, class], as COCOeval's
        return {name: float(precision[self._thresholds[name]].mean() * 100) for name in self.METRICS}


def frame_instances(instances: Sequence[dict], frames: Sequence[Tuple[Hashable, int]]) -> List[dict]:
    """Video-level instances (ground truth or predictions, as :func:`ytvis_metrics` takes them)
    cut into one-frame instances: the mask of an instance of video ``v`` on its frame ``t``
    becomes an instance of the "video" ``i`` where ``frames[i] == (v, t)``, with the instance's
    class, score and crowd flag. Frames not in ``frames`` and frames without a mask are left out,
    so that :func:`ytvis_metrics` on the result is the per-frame mask AP on ``frames``."""
    index = {frame: i for i, frame in enumerate(frames)}
    cut = []
    for inst in instances:
        for t, segmentation in enumerate(inst["segmentations"]):
            i = index.get((inst["video_id"], t))
            if segmentation is None or i is None:
                continue
            one = {k: v for k, v in inst.items() if k != "areas"}
            one.update(video_id=i, segmentations=[segmentation])
            if inst.get("areas") is not None:
                one["areas"] = [inst["areas"][t]]
            cut.append(one)
    return cut


def bootstrap_ytvis(
    video_ids: Sequence,
    categories: Sequence[Tuple[int, str]],
    ground_truth: Sequence[dict],
    predictions: Sequence[Sequence[dict]],
    metrics: Sequence[str] = ("AP", "AP50"),
    samples: int = 200,
    seed: int = 0,
    frames: Optional[Sequence[Tuple[Hashable, int]]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """YouTube-VIS metrics (any of :attr:`YTVISTable.METRICS`) of several sets of video-level
    predictions, and the same on ``samples`` redraws of the videos (with replacement; a video
    drawn twice counts twice). All sets see the same redraws (paired). Each set is matched once
    (:class:`YTVISTable`). With ``frames`` ((video id, frame index) pairs of videos in
    ``video_ids``): the per-frame mask AP on those frames (:func:`frame_instances`), a frame
    counting as often as its video is drawn.

    Returns:
        values ``[len(predictions), len(metrics)]`` and redraws ``[samples, len(predictions),
        len(metrics)]``.
    """
    unknown = [m for m in metrics if m not in YTVISTable.METRICS]
    if unknown:
        raise ValueError(f"bootstrap_ytvis: metrics {unknown} are not among {list(YTVISTable.METRICS)}")
    videos = list(video_ids)
    position = {v: i for i, v in enumerate(videos)}
    if frames is None:
        units, video_of = videos, [position[v] for v in videos]
    else:
        frames = list(frames)
        units, video_of = list(range(len(frames))), [position[v] for v, _ in frames]
        ground_truth = frame_instances(ground_truth, frames)
        predictions = [frame_instances(p, frames) for p in predictions]
    tables = [YTVISTable(units, categories, ground_truth, p) for p in predictions]
    unit_position = {u: i for i, u in enumerate(units)}
    table_videos = np.array([video_of[unit_position[u]] for u in tables[0].video_ids], np.int64) if tables else []
    values = np.array([[t.metrics()[m] for m in metrics] for t in tables]).reshape(len(tables), len(metrics))
    rng = np.random.default_rng(seed)
    out = np.empty((samples, len(tables), len(metrics)))
    for s in range(samples):
        counts = np.bincount(rng.integers(len(videos), size=len(videos)), minlength=len(videos))[table_videos]
        for j, table in enumerate(tables):
            results = table.metrics(counts)
            out[s, j] = [results[m] for m in metrics]
    return values, out
