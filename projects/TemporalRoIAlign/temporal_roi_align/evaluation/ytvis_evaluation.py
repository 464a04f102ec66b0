"""YouTube-VIS evaluation of per-frame tracker outputs (MaskTrack R-CNN style) and of results files."""

import copy
import io
import itertools
import json
import logging
import math
import os
import zipfile
from collections import OrderedDict

import detectron2.utils.comm as comm
import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table
from tabulate import tabulate

from ..data.datasets.coco_video import segmentation_to_rle, segmentations_to_rles
from ..data.datasets.ytvis import read_ytvis_json
from ..utils import atomic_write
from .ytvis_metric import YTVIS_METRICS, ytvis_metrics

__all__ = [
    "YTVISEvaluator",
    "encode_masks",
    "evaluate_ytvis",
    "to_ytvis_records",
    "video_ground_truth",
    "video_predictions",
]

logger = logging.getLogger(__name__)


def encode_masks(masks) -> list:
    """Compressed RLEs (``counts`` as str, JSON-ready) of an [N, H, W] bool tensor or array."""
    masks = np.asarray(masks, dtype=np.uint8)
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def video_predictions(frames, lengths):
    """Video-level predictions from per-frame tracker detections, as mmtracking 0.14 forms them
    (``YouTubeVISDataset.format_results``): one prediction per (video, track id), with

    * "score": the mean of the track's per-frame scores;
    * "category_id": the most frequent class among its frames (ties: the smallest class id);
    * "segmentations": its mask in each frame where it was detected, None elsewhere.

    A track detected twice in one frame keeps its highest-scoring detection there (the other
    counts neither in the score nor in the vote; mmtracking would count both and keep the last
    mask).

    Args:
        frames (list[dict]): per frame "video_id", "frame_id" and "detections", a list of
            (track_id, class, score, RLE).
        lengths (dict): video_id -> number of frames.

    Returns:
        (list[dict] with "video_id", "category_id", "score", "segmentations", int): the
        predictions in the order of the tracks' first detections, and the number of duplicate
        detections dropped.
    """
    tracks, duplicates = OrderedDict(), 0
    for frame in frames:
        for track_id, cls, score, rle in frame["detections"]:
            per_frame = tracks.setdefault((frame["video_id"], track_id), {})
            previous = per_frame.get(frame["frame_id"])
            if previous is not None:
                duplicates += 1
                if previous[1] >= score:
                    continue
            per_frame[frame["frame_id"]] = (cls, score, rle)
    predictions = []
    for (video_id, _), per_frame in tracks.items():
        classes, scores, _ = zip(*per_frame.values())
        predictions.append(
            {
                "video_id": video_id,
                "category_id": int(np.bincount(classes).argmax()),
                "score": float(np.mean(scores)),
                "segmentations": [per_frame[f][2] if f in per_frame else None for f in range(lengths[video_id])],
            }
        )
    return predictions, duplicates


def to_ytvis_records(frames_instances, video_id, metadata=None, *, frame_ids=None, num_frames=None) -> list:
    """The YouTube-VIS results of one video from a tracker's per-frame outputs (e.g.
    ``VideoPredictor.predict_video``'s): one record per track, as :class:`YTVISEvaluator` writes
    them to ``results.json``, the format of the evaluation server and of :func:`evaluate_ytvis`.

    Args:
        frames_instances: the video's frames in order, each ``{"instances": Instances}`` or an
            ``Instances`` with ``pred_masks`` (bool, at the frame's resolution), ``scores``,
            ``pred_classes`` and ``pred_track_ids``. Any iterable, read once: each frame's masks
            are kept only as RLE.
        video_id: the video's ``id`` in the dataset's JSON.
        metadata: the dataset's metadata (e.g. ``VideoPredictor(cfg).metadata``); its
            ``thing_dataset_id_to_contiguous_id`` turns the model's classes into the dataset's
            category ids. Without it, ``category_id`` is the model's class.
        frame_ids: each output's frame number in the video (default 0, 1, 2, ...); frames left
            out have no detection.
        num_frames: the number of frames of the video (default: one past the last frame id).

    Returns:
        list of {"video_id", "score", "category_id", "segmentations"}: score and category as
        :func:`video_predictions` forms them, a mask (RLE) or None for each frame of the video.
    """
    frames, ids = [], itertools.count() if frame_ids is None else iter(frame_ids)
    for output in frames_instances:
        f = next(ids, None)
        if f is None:
            raise ValueError(f"frame_ids has {len(frames)} ids, frames_instances more frames")
        instances = _instances(output)
        detections = _track_detections(instances, instances.image_size, f"frame {f}")
        frames.append({"video_id": video_id, "frame_id": f, "detections": detections})
    last = max((f["frame_id"] for f in frames), default=-1)
    if num_frames is None:
        num_frames = last + 1
    elif last >= num_frames:
        raise ValueError(f"frame {last} is not in a video of num_frames={num_frames}")
    predictions, duplicates = video_predictions(frames, {video_id: num_frames})
    if duplicates:
        logger.warning(
            f"video {video_id}: {duplicates} detections repeat a track id already detected in their frame; "
            "only the highest-scoring one per track and frame is kept."
        )
    return _with_dataset_ids(predictions, metadata)


def _instances(output):
    return output["instances"] if isinstance(output, dict) else output


def _track_detections(instances, size, where: str) -> list:
    """(track id, class, score, RLE) of each detection of a tracker's ``Instances`` on a frame of
    ``size`` (height, width); ValueError starting with ``where`` for instances that are not a
    tracker's."""
    instances = instances.to("cpu")
    missing = [f for f in ("pred_masks", "scores", "pred_classes", "pred_track_ids") if not instances.has(f)]
    if missing:
        raise ValueError(f"{where}: the model's instances lack {missing}")
    bad_scores = int((~np.isfinite(instances.scores.numpy())).sum())
    if bad_scores:
        raise ValueError(
            f"{where}: {bad_scores} detections with a non-finite score. The model is broken (NaN weights or losses)."
        )
    masks = instances.pred_masks
    if masks.dtype.is_floating_point:
        raise ValueError(
            f"{where}: pred_masks must be binary (bool), got {masks.dtype}; threshold mask probabilities first"
        )
    if tuple(masks.shape[1:]) != tuple(size):
        raise ValueError(
            f"{where}: pred_masks of shape {tuple(masks.shape)}; masks must be at the original resolution {tuple(size)}"
        )
    return list(
        zip(
            instances.pred_track_ids.tolist(),
            instances.pred_classes.tolist(),
            instances.scores.tolist(),
            encode_masks(masks.numpy()),
        )
    )


def _with_dataset_ids(predictions, metadata) -> list:
    """``predictions`` in the results format, with the dataset's category ids where ``metadata``
    maps them (``thing_dataset_id_to_contiguous_id``)."""
    mapping = metadata.get("thing_dataset_id_to_contiguous_id") if metadata is not None else None
    reverse = {v: k for k, v in mapping.items()} if mapping else None
    return [
        {
            "video_id": p["video_id"],
            "score": p["score"],
            "category_id": reverse[p["category_id"]] if reverse else p["category_id"],
            "segmentations": p["segmentations"],
        }
        for p in predictions
    ]


def video_ground_truth(dataset_dicts, dataset_name="dataset"):
    """Video-level ground truth from per-frame dataset dicts: one instance per (video_id,
    track_id), its mask (compressed RLE) in the frames that annotate it, None elsewhere.

    The instances of a video are its dicts' "video_tracks" when they have them (the YouTube-VIS
    loader's: every annotation of the JSON, in its order, with its "areas"), so that an object
    without a mask in any frame is ground truth that no prediction can find, as the YouTube-VIS
    API scores it. Without "video_tracks", they are the annotated tracks, in the order of their
    first annotated frame, with "areas" from the annotations' "area".

    Returns a list of dicts with "video_id", "category_id", "iscrowd", "segmentations" (and
    "areas", None where absent, when known).
    """
    instances = OrderedDict()
    for d in sorted(dataset_dicts, key=lambda d: d["frame_id"]):
        where = f"{dataset_name}: video {d['video_id']}, frame {d['frame_id']}"
        for track in d.get("video_tracks", ()):
            if (d["video_id"], track["track_id"]) not in instances:
                instances[d["video_id"], track["track_id"]] = _instance(d, track, track["areas"])
        for ann in d.get("annotations", []):
            if "track_id" not in ann:
                raise ValueError(f"{where}: an annotation has no 'track_id'")
            key = d["video_id"], ann["track_id"]
            if key not in instances:
                instances[key] = _instance(d, ann, None)
            inst = instances[key]
            if inst["category_id"] != ann["category_id"]:
                raise ValueError(
                    f"{where}: track {ann['track_id']} has category {ann['category_id']}, "
                    f"{inst['category_id']} in an earlier frame"
                )
            inst["segmentations"][d["frame_id"]] = segmentation_to_rle(
                ann["segmentation"], d["height"], d["width"], f"{where}, track {ann['track_id']}"
            )
            if "area" in ann and "video_tracks" not in d:
                inst.setdefault("areas", [None] * d["video_length"])[d["frame_id"]] = ann["area"]
    return list(instances.values())


def _instance(frame_dict, track, areas):
    """A video instance of ``video_ground_truth`` with no mask yet."""
    instance = {
        "video_id": frame_dict["video_id"],
        "category_id": track["category_id"],
        "iscrowd": int(track.get("iscrowd", 0)),
        "segmentations": [None] * frame_dict["video_length"],
    }
    if areas is not None:
        instance["areas"] = list(areas)
    return instance


class YTVISEvaluator(DatasetEvaluator):
    """Video instance segmentation AP of YouTube-VIS (see :mod:`.ytvis_metric`) for models that
    segment and track frame by frame.

    :meth:`process` takes each frame's instances with a track identity and keeps their masks
    as RLE; :meth:`evaluate` forms one prediction per track (see :func:`video_predictions`)
    and scores them against the dataset's video-level ground truth, rebuilt from the
    per-frame dicts of ``DatasetCatalog`` (see :func:`video_ground_truth`).

    Results, under ``results["segm"]``, in %: :data:`YTVIS_METRICS` ("AP", "AP50", "AP75",
    "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"; nan where the API gives
    -1) and "AP-<class>" for each class.

    Only videos with at least one processed frame are evaluated (a warning names how many were
    left out); frames of those videos that were not processed count as frames without
    predictions.

    Without annotations (YouTube-VIS val/test: the dicts have no "annotations" key), it writes
    ``results.json`` and ``submission.zip`` (``results.json`` at its root), the file the
    evaluation server takes, and returns {}.
    """

    def __init__(self, dataset_name, output_dir=None, *, distributed=True):
        """
        Args:
            dataset_name (str): a dataset registered in DatasetCatalog with per-frame dicts
                carrying "video_id", "frame_id", "video_length", "height", "width" and
                annotations with "track_id", "segmentation", "category_id" (optional
                "iscrowd"), as ``load_ytvis_json`` makes them. Its metadata must have
                ``thing_classes`` once the dataset is loaded (the YouTube-VIS loader sets
                them); ``thing_dataset_id_to_contiguous_id``, if present, maps the category
                ids written to ``results.json`` back to the dataset's.
            output_dir (str): where to write ``results.json`` (the server's format); nothing
                if None.
            distributed (bool): gather the predictions of all ranks and evaluate on rank 0.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._metadata = MetadataCatalog.get(dataset_name)

    def reset(self):
        self._frames = []

    def process(self, inputs, outputs):
        """
        Args:
            inputs (list[dict]): per-frame dataset dicts with "video_id", "frame_id", "height"
                and "width" (video lengths come from the dataset).
            outputs (list[dict]): each with "instances": ``pred_masks`` ([N, H, W] bool at the
                original resolution), ``scores``, ``pred_classes`` and ``pred_track_ids`` (the
                tracker's identity of each detection through the video).
        """
        for inp, out in zip(inputs, outputs):
            where = f"YTVISEvaluator: video {inp['video_id']} frame {inp['frame_id']}"
            detections = _track_detections(out["instances"], (inp["height"], inp["width"]), where)
            self._frames.append(
                {
                    "video_id": inp["video_id"],
                    "frame_id": inp["frame_id"],
                    "detections": detections,
                }
            )

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            frames = list(itertools.chain(*comm.gather(self._frames, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            frames = self._frames
        if not frames:
            logger.warning("[YTVISEvaluator] Did not receive valid predictions.")
            return {}

        dataset_dicts = DatasetCatalog.get(self._dataset_name)
        video_ids = self._evaluated_videos(frames, dataset_dicts)
        if not video_ids:
            return {}
        lengths = {d["video_id"]: d["video_length"] for d in dataset_dicts}
        order = {v: i for i, v in enumerate(video_ids)}
        frames = sorted(
            (f for f in frames if f["video_id"] in order),
            key=lambda f: (order[f["video_id"]], f["frame_id"]),
        )
        predictions, duplicates = video_predictions(frames, lengths)
        if duplicates:
            logger.warning(
                f"[YTVISEvaluator] {duplicates} detections repeat a track id already detected in "
                "their frame; only the highest-scoring one per track and frame is kept."
            )
        has_annotations = any("annotations" in d for d in dataset_dicts)
        if self._output_dir:
            self._write_results(predictions, submission_zip=not has_annotations)

        if not has_annotations:
            where = (
                f"the results are in {os.path.join(self._output_dir, 'results.json')} and "
                f"{os.path.join(self._output_dir, 'submission.zip')}; submit the zip"
                if self._output_dir
                else "set an output_dir to write the results file to submit"
            )
            logger.info(
                f"[YTVISEvaluator] '{self._dataset_name}' has no annotations: scores come from "
                f"the YouTube-VIS evaluation server; {where}."
            )
            return {}

        evaluated = set(video_ids)
        ground_truth = video_ground_truth([d for d in dataset_dicts if d["video_id"] in evaluated], self._dataset_name)
        class_names = list(self._metadata.thing_classes)
        results = ytvis_metrics(video_ids, list(enumerate(class_names)), ground_truth, predictions)
        self._log(results, class_names, len(video_ids))
        self._results = OrderedDict(segm=results)
        return copy.deepcopy(self._results)

    def _evaluated_videos(self, frames, dataset_dicts):
        """Dataset videos with at least one processed frame, in dataset order."""
        dataset_frames = {}
        for d in dataset_dicts:
            dataset_frames.setdefault(d["video_id"], set()).add(d["frame_id"])
        processed = {}
        for f in frames:
            processed.setdefault(f["video_id"], set()).add(f["frame_id"])
        unknown = set(processed) - set(dataset_frames)
        if unknown:
            logger.warning(
                f"[YTVISEvaluator] Dropping predictions on {len(unknown)} videos that are not in "
                f"'{self._dataset_name}', e.g. {sorted(map(str, unknown))[:3]}."
            )
        video_ids = [v for v in dataset_frames if v in processed]
        if len(video_ids) < len(dataset_frames):
            logger.warning(
                f"[YTVISEvaluator] {len(dataset_frames) - len(video_ids)} of "
                f"{len(dataset_frames)} videos of '{self._dataset_name}' received no predictions "
                "and are not evaluated."
            )
        partial = [v for v in video_ids if dataset_frames[v] - processed[v]]
        if partial:
            logger.warning(
                f"[YTVISEvaluator] {len(partial)} videos have frames that were not processed "
                f"(they count as frames without predictions), e.g. {partial[:3]}."
            )
        return video_ids

    def _write_results(self, predictions, submission_zip):
        """``results.json`` in the server's format (the dataset's category ids), and
        ``submission.zip`` holding it if ``submission_zip``."""
        text = json.dumps(_with_dataset_ids(predictions, self._metadata))
        if submission_zip:  # made before anything is written, so that the two files stay a pair
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("results.json", text)
        PathManager.mkdirs(self._output_dir)
        path = os.path.join(self._output_dir, "results.json")
        logger.info(f"Saving {path}")
        with atomic_write(path) as f:
            f.write(text)
        if submission_zip:
            with atomic_write(os.path.join(self._output_dir, "submission.zip"), "wb") as f:
                f.write(buffer.getvalue())

    def _log(self, results, class_names, num_videos):
        logger.info(
            f"Evaluation results for segm on {num_videos} videos:\n"
            + create_small_table({k: results[k] for k in YTVIS_METRICS})
        )
        per_class = [(n, results[f"AP-{n}"]) for n in class_names]
        n_cols = min(6, len(per_class) * 2)
        flat = list(itertools.chain(*per_class))
        rows = itertools.zip_longest(*[flat[i::n_cols] for i in range(n_cols)])
        table = tabulate(
            rows,
            tablefmt="pipe",
            floatfmt=".3f",
            headers=["category", "AP"] * (n_cols // 2),
            numalign="left",
        )
        logger.info("Per-category segm AP:\n" + table)


def evaluate_ytvis(gt_json_path: str, results_json_path: str) -> "OrderedDict[str, float]":
    """Score a YouTube-VIS results file against a ground-truth JSON, as the YouTube-VIS API does.

    The ground truth is what the dataset loader reads (:func:`read_ytvis_json`, then
    :func:`video_ground_truth`), as for :class:`YTVISEvaluator`.

    Args:
        gt_json_path: YouTube-VIS JSON with "videos", "categories" and "annotations".
        results_json_path: the server's format, a list of {"video_id", "score", "category_id",
            "segmentations": [RLE or null, one per frame of the video]} with the JSON's
            category ids.

    Returns:
        The metrics of :func:`ytvis_metrics`, in %. An empty results list is scored (every AP
        is 0) with a warning. Malformed files raise ValueError naming the file and the reason.
    """
    dicts, categories = read_ytvis_json(gt_json_path, "")
    if dicts and "annotations" not in dicts[0]:
        raise ValueError(
            f"{gt_json_path}: has no 'annotations', or an empty list (YouTube-VIS val/test labels are not public: "
            "those splits are scored by the evaluation server)"
        )
    videos = {d["video_id"]: (d["height"], d["width"], d["video_length"]) for d in dicts}
    contiguous = {cat_id: i for i, (cat_id, _) in enumerate(categories)}
    predictions = _read_results(results_json_path, videos, contiguous)
    names = [name for _, name in categories]
    return ytvis_metrics(list(videos), list(enumerate(names)), video_ground_truth(dicts, gt_json_path), predictions)


def _read_results(path: str, videos: dict, contiguous: dict) -> list:
    """The video instances of a results file, with RLE masks and contiguous category ids;
    ``videos`` maps video ids to (height, width, length)."""
    try:
        with open(path) as f:
            results = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: results file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: results file is not valid JSON ({e})") from None
    if not isinstance(results, list):
        raise ValueError(f"{path}: results must be a JSON list of video instances, got {type(results).__name__}")
    if not results:
        logger.warning(f"{path} is an empty list: no predictions, every AP is 0.")
    keys = ("video_id", "category_id", "segmentations", "score")
    predictions = []
    for n, obj in enumerate(results):
        where = f"{path}: result {n}"
        if not isinstance(obj, dict) or any(k not in obj for k in keys):
            raise ValueError(f"{where}: must be an object with keys {list(keys)}")
        if obj["video_id"] not in videos:
            raise ValueError(f"{where}: unknown video_id {obj['video_id']!r}, not a ground-truth video")
        if obj["category_id"] not in contiguous:
            raise ValueError(f"{where}: unknown category_id {obj['category_id']!r}, not one of {sorted(contiguous)}")
        height, width, length = videos[obj["video_id"]]
        segms = obj["segmentations"]
        if not isinstance(segms, list) or len(segms) != length:
            count = len(segms) if isinstance(segms, list) else type(segms).__name__
            raise ValueError(
                f"{where}: 'segmentations' must have one entry per frame of video {obj['video_id']} ({length}), "
                f"has {count}"
            )
        score = obj["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
            raise ValueError(f"{where}: 'score' must be a number, got {score!r}")
        predictions.append(
            {
                "video_id": obj["video_id"],
                "category_id": contiguous[obj["category_id"]],
                "score": float(score),
                "segmentations": segmentations_to_rles(
                    segms, height, width, [f"{where}, frame {f}" for f in range(length)]
                ),
            }
        )
    return predictions
