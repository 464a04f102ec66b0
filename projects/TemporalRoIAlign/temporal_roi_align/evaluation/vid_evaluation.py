"""VID evaluation: COCO-style AP (the headline), the ImageNet VID devkit's AP and FGFA's motion
buckets, and AP50 on frame subsets."""

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
from collections import Counter, OrderedDict

import detectron2.utils.comm as comm
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from ..utils import atomic_write
from .motion import MOTION_RANGES, motion_buckets, motion_ious
from .vid_devkit import devkit_aps

__all__ = ["VIDEvaluator", "coco_ground_truth", "coco_results", "dataset_frame_subsets"]

_PROTOCOLS = (
    "AP50, AP, AP75, AP50-<class>, AP50-<subset>: COCOeval (101-point AP, at most "
    "max_dets_per_image detections per frame), the VID mAP of mmtracking's bbox_mAP_50.",
    "AP50-devkit: ImageNet VID devkit (pixel-inclusive IoU >= min(0.5, wh/((w+10)(h+10))), "
    "VOC all-point AP), FGFA's vid_eval.",
    "AP50-slow/-medium/-fast: FGFA's vid_eval_motion, motion IoU in [0.9, 1] / [0.7, 0.9] / "
    "[0, 0.7] over +-10 frames, as in FGFA's and MEGA's tables.",
)


def _convert(bbox, mode, to_mode):
    """Convert one box in float64 (BoxMode.convert turns python lists into float32)."""
    return BoxMode.convert(np.asarray([bbox], dtype=np.float64), BoxMode(mode), to_mode)[0]


class _VIDCOCOeval(COCOeval):
    """Bbox COCOeval over the "all" area range at one maxDets.

    ``iou_cache`` shares IoUs between runs on the same ground truth, detections and maxDets.
    """

    def __init__(self, coco_gt, coco_dt, img_ids, iou_thrs, max_dets, iou_cache):
        super().__init__(coco_gt, coco_dt, "bbox")
        p = self.params
        p.imgIds = list(img_ids)
        p.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        p.maxDets = [max_dets]
        p.areaRng = p.areaRng[:1]
        p.areaRngLbl = p.areaRngLbl[:1]
        self._iou_cache = iou_cache

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


def _json_safe(obj):
    """``obj`` with nan and infinities replaced by None (null), which JSON can hold."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dataset_frame_subsets(dataset_name: str) -> dict:
    """The frame subsets a dataset's metadata names for evaluation (``frame_subsets``: name ->
    function(dataset_dict) -> bool, e.g. the toy datasets' "degraded"), {} if none: the
    ``subsets`` of its :class:`VIDEvaluator` in the tools and the toy lazy configs."""
    return dict(MetadataCatalog.get(dataset_name).get("frame_subsets", None) or {})


class VIDEvaluator(DatasetEvaluator):
    """Bbox evaluation for video object detection (ImageNet VID), in three protocols
    (docs/evaluation.md).

    All metrics are in % (0-100), as in detectron2's COCOEvaluator; nan where a metric has no
    ground truth (null in "vid_results.json"). Result keys, under ``results["bbox"]``:

    * "AP50" (the primary metric), "AP" (IoU 0.5:0.95), "AP75": COCOeval (101-point
      interpolation, at most ``max_dets_per_image`` detections per frame, continuous boxes),
      averaged over the classes with ground truth. "AP50" is the VID mAP of mmtracking's
      ``bbox_mAP_50``, on which Temporal RoI Align was released.
    * "AP50-devkit": the ImageNet VID devkit's AP (FGFA's ``vid_eval``): pixel-inclusive boxes,
      per-object IoU threshold ``min(0.5, wh / ((w + 10)(h + 10)))``, VOC all-point AP, every
      detection; mean over the classes with ground truth. See :mod:`.vid_devkit`.
    * "AP50-slow", "AP50-medium", "AP50-fast" (when ``motion_breakdown``): FGFA's published
      breakdown (``vid_eval_motion``) by motion IoU (:func:`.motion.motion_ious`) in [0.9, 1],
      [0.7, 0.9], [0, 0.7], bounds included; the devkit's matching, objects of other buckets
      are not positives, and unmatched detections are charged to a bucket by the object they
      overlap most (see :func:`.vid_devkit.devkit_aps`). Mean over the classes with objects in
      the bucket. Comparable with the motion tables of FGFA, MEGA and their successors.
    * "AP50-<subset>" for each subset: COCO-style AP50 on the evaluated frames it selects.
    * "AP50-<class>" for each class of ``thing_classes``: COCO-style AP50 of the class.

    Frames evaluated: the dataset frames that went through :meth:`process` (with or without
    detections); dataset frames that did not are left out, with a warning. Motion IoUs use the
    boxes of all the dataset's frames.
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
                (needed for the motion breakdown). Its metadata must have ``thing_classes``.
            output_dir (str): where to write "coco_instances_results.json" (the detections in
                COCO's result format) and "vid_results.json" (the metrics); nothing if None.
            distributed (bool): gather the predictions of all ranks and evaluate on rank 0.
            motion_breakdown (bool): report FGFA's slow/medium/fast AP50.
            subsets (dict[str, callable] or None): name -> function(dataset_dict) -> bool
                selecting the frames of an "AP50-<name>" result. None: no subset.
            max_dets_per_image (int): detections per frame in the COCO-style metrics, highest
                scores first (the devkit metrics use all detections, as the devkit).
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._motion_breakdown = motion_breakdown
        self._subsets = dict(subsets or {})
        self._max_dets = max_dets_per_image
        self._metadata = MetadataCatalog.get(dataset_name)
        self._class_names = list(self._metadata.thing_classes)

        suffixes = self._class_names + ["devkit"] + list(MOTION_RANGES) + list(self._subsets)
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
            prediction = {
                "image_id": inp["image_id"],
                "boxes": instances.pred_boxes.tensor.numpy(),  # (N, 4) XYXY_ABS
                "scores": instances.scores.numpy(),
                "classes": instances.pred_classes.numpy(),
            }
            self._check(prediction, inp)
            self._predictions.append(prediction)

    def _check(self, prediction, inp):
        """A model that outputs NaN or a class it does not have is broken: say so, naming the
        frame, rather than count such detections as misses or leave them out."""
        problems = []
        bad_scores = int((~np.isfinite(prediction["scores"])).sum())
        if bad_scores:
            problems.append(f"{bad_scores} detections with a non-finite score")
        bad_boxes = int((~np.isfinite(prediction["boxes"]).all(axis=1)).sum())
        if bad_boxes:
            problems.append(f"{bad_boxes} detections with a non-finite box")
        classes = prediction["classes"]
        outside = (classes < 0) | (classes >= len(self._class_names))
        if outside.any():
            problems.append(
                f"{int(outside.sum())} detections of classes {sorted(set(classes[outside].tolist()))} outside "
                f"0..{len(self._class_names) - 1} ({len(self._class_names)} thing_classes of '{self._dataset_name}')"
            )
        if problems:
            raise ValueError(
                f"VIDEvaluator: image {prediction['image_id']} ({inp.get('file_name', 'no file_name')}): "
                + "; ".join(problems)
                + ". The model is broken (NaN weights or losses, or a class count that is not the dataset's)."
            )

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
        predictions = {p["image_id"]: p for p in predictions if p["image_id"] in img_ids}
        detections = _coco_detections(predictions.values())
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            self._save("coco_instances_results.json", self._to_dataset_ids(detections))

        results, class_ap50 = self._eval_coco(dataset_dicts, detections, img_ids)
        results.update(self._eval_devkit(dataset_dicts, predictions))
        self._logger.info(
            f"Evaluation results for bbox on {len(img_ids)} frames:\n"
            + create_small_table(results)
            + "\nProtocols:\n"
            + "\n".join(_PROTOCOLS)
        )
        self._log_per_class(class_ap50)
        results.update((f"AP50-{n}", ap) for n, ap in zip(self._class_names, class_ap50))
        self._results = OrderedDict(bbox=results)
        if self._output_dir:
            self._save("vid_results.json", _json_safe(self._results))
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
        with atomic_write(path) as f:
            json.dump(obj, f, allow_nan=False)

    def _eval_coco(self, dataset_dicts, detections, img_ids):
        """{AP50, AP, AP75, AP50-<subset>} and the list of the classes' AP50."""
        coco_gt = coco_ground_truth(dataset_dicts, self._class_names)
        coco_dt = coco_results(coco_gt, detections)
        iou_cache = {}

        def precision(image_ids, iou_thrs):
            E = _VIDCOCOeval(coco_gt, coco_dt, image_ids, iou_thrs, self._max_dets, iou_cache)
            with contextlib.redirect_stdout(io.StringIO()):
                E.evaluate()
                E.accumulate()
            return E.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, class]

        overall = precision(img_ids, np.linspace(0.5, 0.95, 10))
        class_ap50 = _class_aps(overall[:1])
        results = OrderedDict(
            [
                ("AP50", _mean(class_ap50)),
                ("AP", _mean(_class_aps(overall))),
                ("AP75", _mean(_class_aps(overall[5:6]))),  # IoU thresholds[5] == 0.75
            ]
        )
        for name, select in self._subsets.items():
            subset_ids = {d["image_id"] for d in dataset_dicts if select(d)} & img_ids
            results[f"AP50-{name}"] = _mean(_class_aps(precision(subset_ids, [0.5]))) if subset_ids else float("nan")
        return results, class_ap50

    def _eval_devkit(self, dataset_dicts, predictions):
        """AP50-devkit and, with the motion breakdown, AP50-slow, -medium and -fast."""
        motion = motion_ious(dataset_dicts) if self._motion_breakdown else {}
        frames = []
        for d in dataset_dicts:
            if d["image_id"] not in predictions:
                continue
            anns = d.get("annotations", [])
            pred = predictions[d["image_id"]]
            frame = {
                "gt_boxes": [_convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
                "gt_classes": [a["category_id"] for a in anns],
                "gt_ignore": [bool(a.get("iscrowd", 0)) for a in anns],
                "boxes": pred["boxes"],
                "scores": pred["scores"],
                "classes": pred["classes"],
            }
            if self._motion_breakdown:
                frame["gt_motion"] = [motion[d["image_id"], i] for i in range(len(anns))]
            frames.append(frame)
        ranges = {"devkit": None}
        if self._motion_breakdown:
            ranges.update(MOTION_RANGES)
            counts = Counter(b for f in frames for m in f["gt_motion"] for b in motion_buckets(m))
            self._logger.info(
                "Ground-truth objects per motion bucket (bounds shared by two buckets): "
                + ", ".join(f"{b} {counts[b]}" for b in MOTION_RANGES)
            )
        aps = devkit_aps(frames, len(self._class_names), ranges)
        return OrderedDict((f"AP50-{name}", _mean((aps[name] * 100).tolist())) for name in ranges)

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
        self._logger.info("Per-category bbox AP50 (COCO-style):\n" + table)


def _coco_detections(predictions):
    """COCO result-format detections (XYWH boxes, contiguous category ids)."""
    detections = []
    for p in predictions:
        boxes = BoxMode.convert(p["boxes"], BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        for b, s, c in zip(boxes.tolist(), p["scores"].tolist(), p["classes"].tolist()):
            detections.append({"image_id": p["image_id"], "category_id": c, "bbox": b, "score": s})
    return detections


def coco_ground_truth(dataset_dicts, class_names):
    """In-memory COCO ground truth (category ids = contiguous ids)."""
    images, annotations = [], []
    for d in dataset_dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"]})
        for ann in d.get("annotations", []):
            x, y, w, h = _convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYWH_ABS).tolist()
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                    "image_id": d["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
    categories = [{"id": i, "name": n} for i, n in enumerate(class_names)]
    return _coco(images, annotations, categories)


def coco_results(coco_gt, detections):
    """COCO detections without COCO.loadRes, which fails on an empty list."""
    annotations = [
        dict(det, id=i + 1, area=det["bbox"][2] * det["bbox"][3], iscrowd=0) for i, det in enumerate(detections)
    ]
    return _coco(coco_gt.dataset["images"], annotations, coco_gt.dataset["categories"])


def _coco(images, annotations, categories):
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
