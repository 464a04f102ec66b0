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
import json
import logging
import math
from collections import OrderedDict, defaultdict
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

__all__ = [
    "YTVIS_METRICS",
    "evaluate_ytvis",
    "mean_area",
    "segmentation_to_rle",
    "video_mask_ious",
    "ytvis_metrics",
]

logger = logging.getLogger(__name__)

# The 12 numbers of YTVOSeval.summarize(), in its order.
YTVIS_METRICS = tuple("AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl".split())
YTVIS_AREA_RANGES = [[0, 1e5**2], [0, 128**2], [128**2, 256**2], [256**2, 1e5**2]]


def segmentation_to_rle(segm, height: int, width: int, source: str) -> Optional[dict]:
    """One frame's mask as a compressed RLE; None where the instance is absent (null, [] or {}).

    Accepts compressed RLE (``counts`` str or bytes), uncompressed RLE (``counts`` a list) and
    polygons (a list of ``[x0, y0, x1, y1, ...]``, merged into one mask), as the API does.
    ``source`` names the frame in error messages.
    """
    if not segm:
        return None
    try:
        if isinstance(segm, list):
            return mask_util.merge(mask_util.frPyObjects(segm, height, width))
        if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            rle = mask_util.frPyObjects(segm, height, width)
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
            rle = segm
        else:
            raise ValueError(f"expected RLE or polygons, got {type(segm).__name__} {str(segm)[:80]}")
        size = [int(v) for v in segm.get("size", ())]
    except Exception as e:  # pycocotools raises bare Exceptions on malformed input
        raise ValueError(f"{source}: invalid segmentation ({e})") from None
    if size != [height, width]:
        raise ValueError(f"{source}: mask size {size} differs from the video's [height, width] [{height}, {width}]")
    return rle


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


class _VideoCOCOeval(COCOeval):
    """pycocotools' COCOeval with videos as its "images": instances come prepared (see
    :func:`ytvis_metrics`), their "area" is the video-level mean area, IoUs come from
    :func:`video_mask_ious`. Matching and accumulation are COCOeval's own."""

    def __init__(self, video_ids, category_ids, ground_truth, predictions):
        super().__init__(iouType="segm")
        p = self.params
        p.imgIds = sorted(video_ids)
        p.catIds = sorted(category_ids)
        p.areaRng = [list(r) for r in YTVIS_AREA_RANGES]
        self._instances = ground_truth, predictions

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
            Inputs must be valid (see :func:`evaluate_ytvis` for the checks on files).

    Returns:
        OrderedDict: :data:`YTVIS_METRICS`, then "AP-<name>" per category (AP over the 10 IoU
        thresholds, at most 100 detections per video; nan without ground truth).
    """

    def prepared(instances):
        return [
            {
                "id": i + 1,  # COCOeval takes id 0 for "unmatched"
                "video_id": inst["video_id"],
                "category_id": inst["category_id"],
                "iscrowd": int(inst.get("iscrowd", 0)),
                "score": float(inst.get("score", 1.0)),
                "segmentations": inst["segmentations"],
                "area": mean_area(
                    inst["areas"]
                    if inst.get("areas") is not None
                    else _frame_areas([inst["segmentations"]])[0].tolist()
                ),
            }
            for i, inst in enumerate(instances)
        ]

    ids = [c for c, _ in categories]
    E = _VideoCOCOeval(video_ids, ids, prepared(ground_truth), prepared(predictions))
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


def _load_json(path: str, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e})") from None


def _read_ground_truth(path: str):
    data = _load_json(path, "ground-truth file")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise ValueError(f"{path}: not a YouTube-VIS ground-truth JSON (no list 'videos')")
    if not isinstance(data.get("categories"), list):
        raise ValueError(f"{path}: missing list 'categories'")
    if data.get("annotations") is None:
        raise ValueError(
            f"{path}: has no 'annotations' (YouTube-VIS val/test labels are not public: "
            "those splits are scored by the evaluation server)"
        )
    videos = {}
    for v in data["videos"]:
        try:
            length = len(v["file_names"]) if "file_names" in v else int(v["length"])
            videos[v["id"]] = (int(v["height"]), int(v["width"]), length)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: video {v.get('id') if isinstance(v, dict) else v!r} needs 'id', "
                f"'height', 'width' and 'file_names' or 'length' ({e!r})"
            ) from None
    try:
        categories = sorted((c["id"], c["name"]) for c in data["categories"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: each category needs an 'id' and a 'name' ({e!r})") from None
    category_ids = {c for c, _ in categories}
    ground_truth = []
    for n, ann in enumerate(data["annotations"]):
        where = f"{path}: annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        inst = _read_instance(ann, where, videos, category_ids, score=False)
        areas = ann.get("areas")
        if areas is not None and len(areas) != len(inst["segmentations"]):
            raise ValueError(f"{where}: {len(areas)} 'areas' for {len(inst['segmentations'])} frames")
        ground_truth.append(dict(inst, iscrowd=int(ann.get("iscrowd", 0)), areas=areas))
    return videos, categories, ground_truth


def _read_instance(obj, where: str, videos: Dict, category_ids, score: bool) -> dict:
    """A validated video instance of a ground-truth or results file, with RLE masks."""
    keys = ("video_id", "category_id", "segmentations") + (("score",) if score else ())
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise ValueError(f"{where}: must be an object with keys {list(keys)}")
    if obj["video_id"] not in videos:
        raise ValueError(f"{where}: unknown video_id {obj['video_id']!r}, not a ground-truth video")
    if obj["category_id"] not in category_ids:
        raise ValueError(f"{where}: unknown category_id {obj['category_id']!r}, not one of {sorted(category_ids)}")
    height, width, length = videos[obj["video_id"]]
    segms = obj["segmentations"]
    if not isinstance(segms, list) or len(segms) != length:
        n = len(segms) if isinstance(segms, list) else type(segms).__name__
        raise ValueError(
            f"{where}: 'segmentations' must have one entry per frame of video {obj['video_id']} ({length}), has {n}"
        )
    inst = {
        "video_id": obj["video_id"],
        "category_id": obj["category_id"],
        "segmentations": [segmentation_to_rle(s, height, width, f"{where}, frame {f}") for f, s in enumerate(segms)],
    }
    if score:
        s = obj["score"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or math.isnan(s):
            raise ValueError(f"{where}: 'score' must be a number, got {s!r}")
        inst["score"] = float(s)
    return inst


def evaluate_ytvis(gt_json_path: str, results_json_path: str) -> "OrderedDict[str, float]":
    """Score a YouTube-VIS results file against a ground-truth JSON, as the YouTube-VIS API does.

    Args:
        gt_json_path: YouTube-VIS JSON with "videos", "categories" and "annotations".
        results_json_path: the server's format, a list of {"video_id", "score", "category_id",
            "segmentations": [RLE or null, one per frame of the video]} with the JSON's
            category ids.

    Returns:
        The metrics of :func:`ytvis_metrics`, in %. An empty results list is scored (every AP
        is 0) with a warning. Malformed files raise ValueError naming the file and the reason.
    """
    videos, categories, ground_truth = _read_ground_truth(gt_json_path)
    results = _load_json(results_json_path, "results file")
    if not isinstance(results, list):
        raise ValueError(
            f"{results_json_path}: results must be a JSON list of video instances, got {type(results).__name__}"
        )
    if not results:
        logger.warning(f"{results_json_path} is an empty list: no predictions, every AP is 0.")
    category_ids = {c for c, _ in categories}
    predictions = [
        _read_instance(r, f"{results_json_path}: result {n}", videos, category_ids, score=True)
        for n, r in enumerate(results)
    ]
    return ytvis_metrics(list(videos), categories, ground_truth, predictions)
