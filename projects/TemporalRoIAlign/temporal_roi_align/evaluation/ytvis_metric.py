"""Video instance segmentation AP as the YouTube-VIS API defines it (youtubevos/cocoapi, YTVOSeval).

A video instance is one object over a whole video: a category, a score (predictions) and one
mask per frame, or None in frames where it is absent. The protocol is COCO's, with videos in
place of images:

* IoU of two instances: sum over frames of |intersection| / sum over frames of |union|; frames
  where both are absent add nothing; 0 when the union is empty.
* Area of an instance (for the small / medium / large ranges): the mean of its per-frame areas
  over the frames where the area is non-zero (absent and empty frames are left out); 0 if none.
  Ranges: small [0, 128²], medium [128², 256²], large [256², 1e10], bounds inclusive.
* Matching, crowd handling (a crowd instance is ignored and can absorb any number of
  detections, with the plain IoU above) and the 101-point precision / recall accumulation
  are pycocotools' COCOeval's, the same code as YTVOSeval's; at most 1 / 10 / 100 detections
  per video and category.
"""

import contextlib
import io
from collections import OrderedDict, defaultdict
from typing import Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

__all__ = ["YTVIS_METRICS", "VideoCOCOeval", "mean_area", "video_mask_ious", "ytvis_metrics"]

# The 12 numbers of YTVOSeval.summarize(), in its order.
YTVIS_METRICS = tuple("AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl".split())
YTVIS_AREA_RANGES = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]


def _frame_areas(instances: Sequence[Sequence[Optional[dict]]]) -> np.ndarray:
    """[N, F] float64 mask areas, 0 where absent."""
    areas = np.zeros((len(instances), len(instances[0]) if instances else 0))
    for i, segms in enumerate(instances):
        for f, rle in enumerate(segms):
            if rle is not None:
                areas[i, f] = mask_util.area(rle)
    return areas


def mean_area(areas: Sequence[Optional[float]]) -> float:
    """The API's instance area: mean of the per-frame areas that are neither None nor 0."""
    present = [a for a in areas if a]
    return float(np.array(present).mean()) if present else 0.0


def video_mask_ious(
    detections: Sequence[Sequence[Optional[dict]]], ground_truth: Sequence[Sequence[Optional[dict]]]
) -> np.ndarray:
    """IoU of video instances: sum over frames of |d ∩ g| / sum over frames of |d ∪ g|.

    Args:
        detections: D instances, each F per-frame compressed RLEs or None (absent).
        ground_truth: G instances, the same way, over the same F frames.

    Returns:
        float64 [D, G]; 0 where the union is empty over all frames.
    """
    d_areas, g_areas = _frame_areas(detections), _frame_areas(ground_truth)
    inter = np.zeros((len(detections), len(ground_truth)))
    if inter.size == 0:
        return inter
    for f in range(d_areas.shape[1]):
        di = [i for i, segms in enumerate(detections) if segms[f] is not None]
        gi = [j for j, segms in enumerate(ground_truth) if segms[f] is not None]
        if not (di and gi):
            continue
        dts, gts = [detections[i][f] for i in di], [ground_truth[j][f] for j in gi]
        iou = np.asarray(mask_util.iou(dts, gts, [0] * len(gts)), dtype=np.float64)
        iou = iou.reshape(len(di), len(gi))
        # pycocotools gives I / U with U = |d| + |g| - I; rounding recovers the integer I
        # exactly (the float error, about 1e-16 * I, is far below 0.5 for any frame size).
        both = d_areas[di, f][:, None] + g_areas[gi, f][None, :]
        inter[np.ix_(di, gi)] += np.rint(iou * both / (1 + iou))
    union = d_areas.sum(1)[:, None] + g_areas.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class VideoCOCOeval(COCOeval):
    """pycocotools' COCOeval with videos as its "images": instances as :func:`ytvis_metrics` takes
    them, their "area" the video-level mean area, IoUs from :func:`video_mask_ious`, the
    YouTube-VIS area ranges. Matching and accumulation are COCOeval's own."""

    def __init__(self, video_ids, category_ids, ground_truth, predictions):
        super().__init__(iouType="segm")
        p = self.params
        p.imgIds = sorted(video_ids)
        p.catIds = sorted(category_ids)
        p.areaRng = [list(r) for r in YTVIS_AREA_RANGES]
        self._instances = _prepared(ground_truth), _prepared(predictions)

    def _prepare(self):
        self._gts, self._dts = defaultdict(list), defaultdict(list)
        ground_truth, predictions = self._instances
        for g in ground_truth:
            self._gts[g["video_id"], g["category_id"]].append(dict(g, ignore=g["iscrowd"]))
        for d in predictions:
            self._dts[d["video_id"], d["category_id"]].append(dict(d))
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def computeIoU(self, video_id, category_id):
        gts, dts = self._gts[video_id, category_id], self._dts[video_id, category_id]
        if not gts and not dts:
            return []
        # Rows in the order evaluateImg ranks the detections: by score, ties in input order.
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: self.params.maxDets[-1]]
        return video_mask_ious([dts[i]["segmentations"] for i in order], [g["segmentations"] for g in gts])


def ytvis_metrics(
    video_ids: Sequence,
    categories: Sequence[Tuple[int, str]],
    ground_truth: Sequence[dict],
    predictions: Sequence[dict],
) -> "OrderedDict[str, float]":
    """YouTube-VIS mask AP of video-level predictions, in % (nan where the API gives -1).

    Args:
        video_ids: the videos evaluated (a video without ground truth still counts its
            predictions as false positives).
        categories: (category id, name) of every class evaluated.
        ground_truth: dicts with "video_id", "category_id", "iscrowd", "segmentations" (one
            compressed RLE or None per frame of the video) and optionally "areas" (per-frame
            areas, as in the YouTube-VIS JSON; used for the area ranges instead of the masks').
        predictions: dicts with "video_id", "category_id", "score", "segmentations".
            Inputs must be valid (``evaluate_ytvis`` checks files).

    Returns:
        OrderedDict: :data:`YTVIS_METRICS`, then "AP-<name>" per category (AP over the 10 IoU
        thresholds, at most 100 detections per video; nan without ground truth).
    """
    E = VideoCOCOeval(video_ids, [c for c, _ in categories], ground_truth, predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        E.evaluate()
        E.accumulate()
        E.summarize()
    results = OrderedDict((name, float(s * 100) if s >= 0 else float("nan")) for name, s in zip(YTVIS_METRICS, E.stats))
    precision = E.eval["precision"][:, :, :, 0, -1]  # [IoU threshold, recall, class]
    names = dict(categories)
    for k, category_id in enumerate(E.params.catIds):
        p = precision[:, :, k]
        p = p[p > -1]
        results[f"AP-{names[category_id]}"] = float(p.mean() * 100) if p.size else float("nan")
    return results


def _prepared(instances: Sequence[dict]) -> list:
    """Video instances as COCOeval's annotations: ids from 1, "area" the video-level area."""
    return [
        {
            "id": i + 1,  # COCOeval takes id 0 for "unmatched"
            "video_id": inst["video_id"],
            "category_id": inst["category_id"],
            "iscrowd": int(inst.get("iscrowd", 0)),
            "score": float(inst.get("score", 1.0)),
            "segmentations": inst["segmentations"],
            "area": mean_area(
                inst["areas"] if inst.get("areas") is not None else _frame_areas([inst["segmentations"]])[0].tolist()
            ),
        }
        for i, inst in enumerate(instances)
    ]
