"""YouTube-VIS 2019/2021 JSON, read into per-frame dataset dicts (one per frame, masks included)::

videos:      [{"id", "file_names": [...], "height", "width", "length"}, ...]
annotations: [{"id", "video_id", "category_id", "iscrowd", "areas": [...],
               "bboxes": [[x, y, w, h] or null per frame],
               "segmentations": [RLE or polygons or null per frame]}, ...]
categories:  [{"id", "name"}, ...]
"""

import logging
import math
import os
from collections import defaultdict
from typing import Callable, List, Optional, Tuple

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .coco_video import convert_segmentations, segmentation_to_rle
from .common import (
    CountedWarning,
    DatasetError,
    DroppedBoxes,
    clip_box,
    compact_frame_list,
    contiguous_categories,
    crowd_flag,
    finite_numbers,
    frame_record,
    json_objects,
    load_json,
    positive_int,
    set_thing_classes,
)

__all__ = [
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "load_ytvis_json",
    "read_ytvis_json",
    "register_ytvis_instances",
    "ytvis_metadata",
]

logger = logging.getLogger(__name__)

# (JSON category id, name) of the official YouTube-VIS 2019 categories; the order of the ids is
# the classifier's order (mmtrack's YouTubeVISDataset.CLASSES_2019_version).
YTVIS_2019_CATEGORIES: Tuple[Tuple[int, str], ...] = (
    (1, "person"), (2, "giant_panda"), (3, "lizard"), (4, "parrot"), (5, "skateboard"), (6, "sedan"),
    (7, "ape"), (8, "dog"), (9, "snake"), (10, "monkey"), (11, "hand"), (12, "rabbit"), (13, "duck"),
    (14, "cat"), (15, "cow"), (16, "fish"), (17, "train"), (18, "horse"), (19, "turtle"), (20, "bear"),
    (21, "motorbike"), (22, "giraffe"), (23, "leopard"), (24, "fox"), (25, "deer"), (26, "owl"),
    (27, "surfboard"), (28, "airplane"), (29, "truck"), (30, "zebra"), (31, "tiger"), (32, "elephant"),
    (33, "snowboard"), (34, "boat"), (35, "shark"), (36, "mouse"), (37, "frog"), (38, "eagle"),
    (39, "earless_seal"), (40, "tennis_racket"),
)  # fmt: skip

# The official YouTube-VIS 2021 categories (mmtrack's CLASSES_2021_version: alphabetical).
YTVIS_2021_CATEGORIES: Tuple[Tuple[int, str], ...] = (
    (1, "airplane"), (2, "bear"), (3, "bird"), (4, "boat"), (5, "car"), (6, "cat"), (7, "cow"), (8, "deer"),
    (9, "dog"), (10, "duck"), (11, "earless_seal"), (12, "elephant"), (13, "fish"), (14, "flying_disc"),
    (15, "fox"), (16, "frog"), (17, "giant_panda"), (18, "giraffe"), (19, "horse"), (20, "leopard"),
    (21, "lizard"), (22, "monkey"), (23, "motorbike"), (24, "mouse"), (25, "parrot"), (26, "person"),
    (27, "rabbit"), (28, "shark"), (29, "skateboard"), (30, "snake"), (31, "snowboard"), (32, "squirrel"),
    (33, "surfboard"), (34, "tennis_racket"), (35, "tiger"), (36, "train"), (37, "truck"), (38, "turtle"),
    (39, "whale"), (40, "zebra"),
)  # fmt: skip


def ytvis_metadata(categories) -> dict:
    """``thing_classes``, ``thing_dataset_id_to_contiguous_id`` (ids in increasing order) and
    ``evaluator_type="ytvis"`` for a YouTube-VIS style dataset with ``(id, name)`` categories."""
    ordered = sorted(categories)
    return {
        "thing_classes": [name for _, name in ordered],
        "thing_dataset_id_to_contiguous_id": {cat_id: i for i, (cat_id, _) in enumerate(ordered)},
        "evaluator_type": "ytvis",
    }


def load_ytvis_json(
    json_file: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    frame_fields: Optional[Callable[[dict, int], dict]] = None,
) -> List[dict]:
    """Load a YouTube-VIS JSON into per-frame dataset dicts.

    ``image_id`` is a running index over all frames; ``track_id`` is the annotation's ``id``.
    A frame where an instance has no mask (null) carries no annotation for it, as in Mask2Former's
    loader; a null box where the mask exists is taken from the mask (counted in one warning).
    Boxes are clipped to the image; boxes with no area left (empty masks) are dropped. Masks are
    compressed RLE or polygons; ``area`` is the frame's entry of the JSON's ``areas`` when it has
    them. Every frame dict of a video also has ``"video_tracks"``: one
    ``{"track_id", "category_id", "iscrowd", "areas"}`` per annotation of the video, in the
    JSON's order, also for an instance without a mask anywhere (the YouTube-VIS metric counts it,
    see :func:`..evaluation.video_ground_truth`).

    When the JSON has no annotations, or an empty list of them (the val/test splits; the latter
    with a warning), the dicts have no ``"annotations"`` and no ``"video_tracks"``.

    A ValueError names the file and the reason for: an annotation whose ``video_id`` is missing
    or names no video, an annotation or video id given twice, a category id given twice, a
    video whose ``length`` is not its number of ``file_names``, per-frame lists of another
    length, a box that is not null or 4 finite numbers (also where the mask is null), an
    ``areas`` entry that is not null or a finite number >= 0, an ``iscrowd`` other than 0/1, a
    mask of another size than its video or whose RLE counts do not cover it, a malformed entry.
    ``frame_fields(video, frame_id)``, if given, returns more fields for the frame's dict from
    its JSON video entry (e.g. the toy dataset's ``"degradation"``). With ``dataset_name``, the
    JSON's classes are recorded as its ``thing_classes`` (see :func:`ytvis_metadata`).
    """
    dicts, categories = read_ytvis_json(json_file, image_root, dataset_name=dataset_name, frame_fields=frame_fields)
    metadata = ytvis_metadata(categories)
    set_thing_classes(dataset_name, metadata["thing_classes"], metadata["thing_dataset_id_to_contiguous_id"], json_file)
    return dicts


def read_ytvis_json(
    json_file: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    frame_fields: Optional[Callable[[dict, int], dict]] = None,
) -> Tuple[List[dict], List[Tuple[int, str]]]:
    """:func:`load_ytvis_json`'s frame dicts (category ids contiguous) and the JSON's categories
    as ``(id, name)`` in increasing id order, without touching the metadata: the one reader of
    YouTube-VIS JSON, for training and for ``evaluate_ytvis``. ``dataset_name`` names the
    dataset in warnings.
    """
    data = load_json(json_file)
    for key in ("videos", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{json_file}: missing list '{key}'")
    names, id_map = contiguous_categories(json_objects(data["categories"], "categories", json_file), json_file)
    annotations = data.get("annotations")
    if annotations == []:
        logger.warning(
            f"{json_file}: 'annotations' is an empty list: read as a split without labels (no "
            "'annotations' in the dicts; its evaluation writes the files for the evaluation server)"
        )
        annotations = None
    videos = json_objects(data["videos"], "videos", json_file)
    video_ids = {}
    for n, video in enumerate(videos):
        missing = [k for k in ("id", "file_names", "height", "width") if k not in video]
        if missing:
            raise DatasetError(f"{json_file}: video {video.get('id')} lacks {missing}")
        if not isinstance(video["id"], (int, str)):
            raise DatasetError(f"{json_file}: videos[{n}]: id must be a number or a string, got {video['id']!r}")
        if video["id"] in video_ids:
            raise DatasetError(
                f"{json_file}: video id {video['id']!r} appears twice (videos[{video_ids[video['id']]}], videos[{n}])"
            )
        video_ids[video["id"]] = n

    anns_per_video, ann_ids = defaultdict(list), set()
    for ann in json_objects(annotations or [], "annotations", json_file):
        if ann.get("category_id") not in id_map:
            raise DatasetError(
                f"{json_file}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                f"not one of {sorted(id_map)}"
            )
        if not isinstance(ann.get("video_id"), (int, str)) or ann["video_id"] not in video_ids:
            raise DatasetError(
                f"{json_file}: annotation {ann.get('id')} has video_id {ann.get('video_id')!r}, which no video has"
            )
        if ann.get("id") in ann_ids:  # the id is the track id, and the API's index of annotations
            raise DatasetError(f"{json_file}: annotation id {ann['id']!r} appears twice")
        ann_ids.add(ann.get("id"))
        anns_per_video[ann["video_id"]].append(ann)

    dropped, boxes_from_masks, dicts = DroppedBoxes(), CountedWarning(BOXES_FROM_MASKS), []
    for video in videos:
        source = f"{json_file}: video {video['id']!r}"
        if not isinstance(video["file_names"], list) or not all(isinstance(f, str) for f in video["file_names"]):
            raise DatasetError(f"{source}: file_names must be a list of strings")
        files = [os.path.join(image_root, f) for f in video["file_names"]]
        if not files:
            raise DatasetError(f"{json_file}: video {video['id']} has no frames")
        height = positive_int(video["height"], "height", source)
        width, length = positive_int(video["width"], "width", source), len(files)
        if video.get("length", length) != length:
            raise DatasetError(f"{source}: length {video['length']!r}, but {length} file_names")
        tracks, per_frame = [], [[] for _ in files]
        for ann in anns_per_video.get(video["id"], []):
            track, objects = _read_track(ann, json_file, height, width, length, id_map, dropped, boxes_from_masks)
            tracks.append(track)
            for frame_id, obj in objects:
                per_frame[frame_id].append(obj)
        frames = compact_frame_list(files)
        for frame_id, file_name in enumerate(files):
            record = frame_record(
                file_name,
                len(dicts),
                height,
                width,
                video_id=video["id"],
                frame_id=frame_id,
                video_length=length,
                video_frames=frames,
                annotations=None if annotations is None else per_frame[frame_id],
            )
            if annotations is not None:
                record["video_tracks"] = tracks
            if frame_fields is not None:
                record.update(frame_fields(video, frame_id))
            dicts.append(record)
    dropped.log(dataset_name or json_file)
    boxes_from_masks.log(dataset_name or json_file)
    logger.info(f"Loaded {len(dicts)} frames of {len(videos)} videos from {json_file}")
    return dicts, [(cat_id, names[i]) for cat_id, i in id_map.items()]


BOXES_FROM_MASKS = "took {count} boxes from the mask, where the 'bboxes' entry is null"


def _read_track(ann, json_file, height, width, length, id_map, dropped, boxes_from_masks):
    """One annotation: its ``video_tracks`` entry and ``(frame_id, annotation)`` for each frame
    where it has a mask."""
    where = f"{json_file}: annotation {ann.get('id')}"
    for key in ("bboxes", "segmentations") + (("areas",) if ann.get("areas") is not None else ()):
        if len(ann.get(key) or []) != length:
            raise DatasetError(
                f"{where} must have {length} '{key}' (one per frame of video {ann['video_id']}), "
                f"has {len(ann.get(key) or [])}"
            )
    areas = ann.get("areas")
    for frame_id, area in enumerate(areas or []):
        if area is not None and not (_is_number(area) and math.isfinite(area) and area >= 0):
            raise DatasetError(f"{where}, frame {frame_id}: area must be null or a finite number >= 0, got {area!r}")
    track = {
        "track_id": ann.get("id"),
        "category_id": id_map[ann["category_id"]],
        "iscrowd": crowd_flag(ann.get("iscrowd", 0), where),
        "areas": areas,
    }
    sources = [f"{json_file} (annotation {ann.get('id')}, frame {f})" for f in range(length)]
    segms = convert_segmentations(ann["segmentations"], height, width, sources)
    objects = []
    for frame_id, (bbox, segm, source) in enumerate(zip(ann["bboxes"], segms, sources)):
        if bbox:
            x, y, w, h = finite_numbers(bbox, 4, "bbox", source)
        elif segm is not None:  # the mask's box, as the YouTube-VIS API takes it
            x, y, w, h = map(
                float, mask_util.toBbox(segmentation_to_rle(ann["segmentations"][frame_id], height, width, source))
            )
            boxes_from_masks.add(source, f"box [{x}, {y}, {w}, {h}]")
        if segm is None:
            continue
        box = clip_box([x, y, x + w, y + h], width, height)
        if box is None:
            dropped.add(source, [x, y, x + w, y + h])
            continue
        obj = {
            "bbox": box,
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": track["category_id"],
            "iscrowd": track["iscrowd"],
            "track_id": track["track_id"],
            "segmentation": segm,
        }
        if areas is not None:
            obj["area"] = areas[frame_id]
        objects.append((frame_id, obj))
    return track, objects


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def register_ytvis_instances(name: str, metadata: dict, json_file: str, image_root: str):
    """Register a YouTube-VIS JSON (like Mask2Former's ``register_ytvis_instances``)."""
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, dataset_name=name))
    MetadataCatalog.get(name).set(**{"evaluator_type": "ytvis", **metadata})
