"""COCO-style evaluation for ImageNet VID, with the FGFA motion breakdown and frame subsets."""

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
from collections import Counter, OrderedDict, defaultdict

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

__all__ = ["VIDEvaluator", "motion_ious", "motion_bucket", "MOTION_BUCKETS"]

MOTION_BUCKETS = ("slow", "medium", "fast")


def motion_bucket(iou):
    """FGFA motion bucket of a motion IoU: "slow" (> 0.9), "medium" ([0.7, 0.9]), "fast" (< 0.7).

    Returns None for nan (an object with no neighbour, see :func:`motion_ious`).
    """
    if iou > 0.9:
        return "slow"
    if iou >= 0.7:
        return "medium"
    if iou < 0.7:
        return "fast"
    return None


def _convert(bbox, mode, to_mode):
    """Convert one box in float64 (BoxMode.convert turns python lists into float32)."""
    return BoxMode.convert(np.asarray([bbox], dtype=np.float64), BoxMode(mode), to_mode)[0]


def _iou(box, boxes):
    """IoU of one XYXY box with an (N, 4) array of XYXY boxes (continuous coordinates, as COCO)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def motion_ious(dataset_dicts, frame_range=10):
    """Motion IoU of every ground-truth object, as defined by FGFA (Zhu et al., 2017).

    The motion IoU of an object in frame t is the mean IoU of its box with the boxes of the same
    track (same ``video_id`` and ``track_id``) in the frames t' with 0 < |t' - t| <= frame_range
    that have an annotation of that track in ``dataset_dicts``. High means slow motion.

    Args:
        dataset_dicts (list[dict]): Detectron2 dicts with "image_id", "video_id", "frame_id"
            and "annotations" carrying "bbox", "bbox_mode" and "track_id".
        frame_range (int): the window half-width, in frames.

    Returns:
        dict: (image_id, index of the annotation in the dict's "annotations") -> motion IoU;
        nan when the track has no annotation within the window, or the object has no "track_id".
    """
    tracks = defaultdict(dict)  # (video_id, track_id) -> {frame_id: XYXY box}
    for d in dataset_dicts:
        for ann in d.get("annotations", []):
            if "track_id" in ann:
                box = _convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
                tracks[d["video_id"], ann["track_id"]][d["frame_id"]] = box
    result = {}
    for d in dataset_dicts:
        t = d["frame_id"]
        for i, ann in enumerate(d.get("annotations", [])):
            track = tracks.get((d["video_id"], ann["track_id"]), {}) if "track_id" in ann else {}
            neighbours = [
                track[f]
                for f in range(t - frame_range, t + frame_range + 1)
                if f != t and f in track
            ]
            if neighbours:
                box = _convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
                result[d["image_id"], i] = float(_iou(box, np.stack(neighbours)).mean())
            else:
                result[d["image_id"], i] = float("nan")
    return result


class _VIDCOCOeval(COCOeval):
    """Bbox COCOeval over the "all" area range at one maxDets, with extra ignored ground truth.

    pycocotools' ``_prepare`` overwrites ``gt["ignore"]`` with ``gt["iscrowd"]``, so an "ignore"
    key in the annotations has no effect: the ids in ``ignore_ids`` are flagged after it instead.
    ``iou_cache`` shares IoUs between runs on the same ground truth, detections and maxDets.
    """

    def __init__(self, coco_gt, coco_dt, img_ids, iou_thrs, max_dets, ignore_ids, iou_cache):
        super().__init__(coco_gt, coco_dt, "bbox")
        p = self.params
        p.imgIds = list(img_ids)
        p.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        p.maxDets = [max_dets]
        p.areaRng = p.areaRng[:1]
        p.areaRngLbl = p.areaRngLbl[:1]
        self._ignore_ids = ignore_ids
        self._iou_cache = iou_cache

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for gt in gts:
                if gt["id"] in self._ignore_ids:
                    gt["ignore"] = 1

    def computeIoU(self, imgId, catId):
        key = (imgId, catId)
        if key not in self._iou_cache:
            self._iou_cache[key] = super().computeIoU(imgId, catId)
        return self._iou_cache[key]


def _class_aps(precision):
    """Per-class AP in % from COCOeval precision [T, R, K]; nan for classes without ground truth."""
    aps = []
    for k in range(precision.shape[-1]):
        p = precision[..., k]
        p = p[p > -1]
        aps.append(float(p.mean() * 100) if p.size else float("nan"))
    return aps


def _mean(values):
    """Mean of the non-nan values; nan if there are none."""
    valid = [v for v in values if not math.isnan(v)]
    return sum(valid) / len(valid) if valid else float("nan")


class VIDEvaluator(DatasetEvaluator):
    """COCO-style bbox evaluation for video object detection (ImageNet VID).

    The primary metric is "AP50": COCOeval's AP at IoU 0.5 (101-point interpolation, at most
    ``max_dets_per_image`` detections per frame), computed like the VID mAP of mmtracking, on
    which Temporal RoI Align was released. It is not the ImageNet devkit's VOC-style AP with a
    size-dependent IoU threshold, so numbers can differ slightly from the devkit's. All metrics
    are in % (0-100), as in detectron2's COCOEvaluator; nan where a metric has no ground truth.

    Result keys, under ``results["bbox"]``:

    * "AP50", "AP" (IoU 0.5:0.95), "AP75": over all evaluated frames.
    * "AP50-slow", "AP50-medium", "AP50-fast" (when ``motion_breakdown``): the FGFA breakdown by
      motion IoU (see :func:`motion_ious` and :func:`motion_bucket`). For a bucket, ground-truth
      objects of the other buckets are set to ignore, as FGFA's evaluation does: they count
      neither as positives nor as misses, and a detection matched to one is dropped instead of
      being a false positive. Matching follows COCOeval: a detection takes the best-IoU
      unmatched non-ignored object, and an ignored one only if none is left above the threshold.
      The flag is ``ignore``, not ``iscrowd``: a crowd object would change the IoU (intersection
      over the detection's area) and absorb any number of detections.
      Objects with no neighbour within the window (motion IoU nan) have no measurable motion:
      they are ignored in all three buckets and count only in the overall metrics.
    * "AP50-<subset>" for each subset: AP50 on the evaluated frames the subset selects. By
      default, a "degraded" subset (frames with a non-empty "degradation") is added when any
      frame of the dataset is degraded.
    * "AP50-<class>" for each class of ``thing_classes``; "AP50" is their mean over the classes
      that have ground truth.

    Frames evaluated: the dataset frames that went through :meth:`process` (with or without
    detections); dataset frames that did not are left out, with a warning.
    """

    def __init__(
        self,
        dataset_name,
        output_dir=None,
        *,
        distributed=True,
        motion_breakdown=True,
        subsets=None,
        max_dets_per_image=100,
    ):
        """
        Args:
            dataset_name (str): a dataset registered in DatasetCatalog, in Detectron2's format
                with the VID fields "video_id", "frame_id" and per-annotation "track_id"
                (needed for the motion breakdown), and optionally "degradation" per frame.
                Its metadata must have ``thing_classes``.
            output_dir (str): where to write "coco_instances_results.json" (the detections in
                COCO's result format) and "vid_results.json" (the metrics); nothing if None.
            distributed (bool): gather the predictions of all ranks and evaluate on rank 0.
            motion_breakdown (bool): report the FGFA slow/medium/fast AP50.
            subsets (dict[str, callable] or None): name -> function(dataset_dict) -> bool
                selecting frames. None means {"degraded": frames with a non-empty
                "degradation"} when the dataset has any, else none.
            max_dets_per_image (int): detections kept per frame, highest scores first.
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._motion_breakdown = motion_breakdown
        self._subsets = subsets
        self._max_dets = max_dets_per_image
        self._metadata = MetadataCatalog.get(dataset_name)
        self._class_names = list(self._metadata.thing_classes)

        suffixes = (
            self._class_names
            + list(MOTION_BUCKETS)
            + list(["degraded"] if subsets is None else subsets)
        )
        duplicates = sorted(n for n, c in Counter(suffixes).items() if c > 1)
        if duplicates:
            raise ValueError(f"Result keys AP50-<name> would clash for names {duplicates}")

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        """
        Args:
            inputs (list[dict]): model inputs, each with "image_id".
            outputs (list[dict]): model outputs, each with "instances" (pred_boxes in XYXY_ABS in
                the original image's coordinates, scores, pred_classes).
        """
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            boxes = BoxMode.convert(
                instances.pred_boxes.tensor.numpy(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
            )
            detections = [
                {"image_id": inp["image_id"], "category_id": c, "bbox": b, "score": s}
                for b, s, c in zip(
                    boxes.tolist(), instances.scores.tolist(), instances.pred_classes.tolist()
                )
            ]
            self._predictions.append({"image_id": inp["image_id"], "instances": detections})

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if not predictions:
            self._logger.warning("[VIDEvaluator] Did not receive valid predictions.")
            return {}

        dataset_dicts = DatasetCatalog.get(self._dataset_name)
        img_ids = self._evaluated_image_ids(predictions, dataset_dicts)
        if not img_ids:
            return {}
        detections = [
            det for p in predictions if p["image_id"] in img_ids for det in p["instances"]
        ]
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            self._save("coco_instances_results.json", self._to_dataset_ids(detections))

        results = self._eval(dataset_dicts, detections, img_ids)
        self._results = OrderedDict(bbox=results)
        if self._output_dir:
            self._save("vid_results.json", self._results)
        return copy.deepcopy(self._results)

    def _evaluated_image_ids(self, predictions, dataset_dicts):
        dataset_ids = {d["image_id"] for d in dataset_dicts}
        processed = {p["image_id"] for p in predictions}
        unknown = processed - dataset_ids
        if unknown:
            self._logger.warning(
                f"[VIDEvaluator] Dropping predictions on {len(unknown)} images that are not in "
                f"'{self._dataset_name}', e.g. {sorted(map(str, unknown))[:3]}."
            )
        missing = dataset_ids - processed
        if missing:
            self._logger.warning(
                f"[VIDEvaluator] {len(missing)} of {len(dataset_ids)} images of "
                f"'{self._dataset_name}' received no predictions and are not evaluated."
            )
        return processed & dataset_ids

    def _to_dataset_ids(self, detections):
        """Detections with the dataset's category ids, as COCOEvaluator writes them."""
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if mapping is None:
            return detections
        reverse = {v: k for k, v in mapping.items()}
        return [dict(d, category_id=reverse[d["category_id"]]) for d in detections]

    def _save(self, name, obj):
        path = os.path.join(self._output_dir, name)
        self._logger.info(f"Saving {path}")
        with PathManager.open(path, "w") as f:
            json.dump(obj, f)

    def _eval(self, dataset_dicts, detections, img_ids):
        coco_gt, ann_ids = _coco_gt(dataset_dicts, self._class_names)
        coco_dt = _coco_dt(coco_gt, detections)
        iou_cache = {}

        def precision(image_ids, iou_thrs, ignore_ids=frozenset()):
            E = _VIDCOCOeval(
                coco_gt, coco_dt, image_ids, iou_thrs, self._max_dets, ignore_ids, iou_cache
            )
            with contextlib.redirect_stdout(io.StringIO()):
                E.evaluate()
                E.accumulate()
            return E.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, class]

        iou_thrs = np.linspace(0.5, 0.95, 10)
        overall = precision(img_ids, iou_thrs)
        class_ap50 = _class_aps(overall[:1])
        results = OrderedDict(
            [
                ("AP50", _mean(class_ap50)),
                ("AP", _mean(_class_aps(overall))),
                ("AP75", _mean(_class_aps(overall[5:6]))),  # iou_thrs[5] == 0.75
            ]
        )

        if self._motion_breakdown:
            buckets = {
                ann_ids[key]: motion_bucket(iou) for key, iou in motion_ious(dataset_dicts).items()
            }
            counts = Counter(
                buckets[ann_id] for (image_id, _), ann_id in ann_ids.items() if image_id in img_ids
            )
            self._logger.info(
                "Ground-truth objects per motion bucket: "
                + ", ".join(f"{b} {counts[b]}" for b in MOTION_BUCKETS)
                + f", no neighbour {counts[None]}"
            )
            for b in MOTION_BUCKETS:
                ignore = frozenset(a for a, bucket in buckets.items() if bucket != b)
                results[f"AP50-{b}"] = _mean(_class_aps(precision(img_ids, [0.5], ignore)))

        for name, select in self._resolve_subsets(dataset_dicts).items():
            subset_ids = {d["image_id"] for d in dataset_dicts if select(d)} & img_ids
            results[f"AP50-{name}"] = (
                _mean(_class_aps(precision(subset_ids, [0.5]))) if subset_ids else float("nan")
            )

        self._logger.info(
            f"Evaluation results for bbox on {len(img_ids)} frames:\n" + create_small_table(results)
        )
        self._log_per_class(class_ap50)
        results.update((f"AP50-{n}", ap) for n, ap in zip(self._class_names, class_ap50))
        return results

    def _resolve_subsets(self, dataset_dicts):
        if self._subsets is not None:
            return self._subsets
        if any(d.get("degradation") for d in dataset_dicts):
            return {"degraded": lambda d: bool(d.get("degradation"))}
        return {}

    def _log_per_class(self, class_ap50):
        n_cols = min(6, len(class_ap50) * 2)
        flat = list(itertools.chain(*zip(self._class_names, class_ap50)))
        rows = itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)])
        table = tabulate(
            rows,
            tablefmt="pipe",
            floatfmt=".3f",
            headers=["category", "AP50"] * (n_cols // 2),
            numalign="left",
        )
        self._logger.info("Per-category bbox AP50:\n" + table)


def _coco_gt(dataset_dicts, class_names):
    """In-memory COCO ground truth (category ids = contiguous ids).

    Returns the COCO object and (image_id, annotation index) -> COCO annotation id.
    """
    images, annotations, ann_ids = [], [], {}
    for d in dataset_dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"]})
        for i, ann in enumerate(d.get("annotations", [])):
            x, y, w, h = _convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYWH_ABS).tolist()
            ann_id = len(annotations) + 1  # COCOeval treats id 0 as "unmatched"
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": d["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
            ann_ids[d["image_id"], i] = ann_id
    categories = [{"id": i, "name": n} for i, n in enumerate(class_names)]
    return _coco(images, annotations, categories), ann_ids


def _coco_dt(coco_gt, detections):
    """COCO detections without COCO.loadRes, which fails on an empty list."""
    annotations = [
        dict(det, id=i + 1, area=det["bbox"][2] * det["bbox"][3], iscrowd=0)
        for i, det in enumerate(detections)
    ]
    return _coco(coco_gt.dataset["images"], annotations, coco_gt.dataset["categories"])


def _coco(images, annotations, categories):
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
