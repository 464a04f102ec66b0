"""YouTube-VIS 2019/2021 JSON, read into per-frame dataset dicts (one per frame, masks included)::

videos:      [{"id", "file_names": [...], "height", "width", "length"}, ...]
annotations: [{"id", "video_id", "category_id", "iscrowd", "areas": [...],
               "bboxes": [[x, y, w, h] or null per frame],
               "segmentations": [RLE or polygons or null per frame]}, ...]
categories:  [{"id", "name"}, ...]
"""

import logging
import os
from collections import defaultdict
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .coco_video import convert_segmentation
from .common import (
    DroppedBoxes,
    clip_box,
    compact_frame_list,
    contiguous_categories,
    finite_numbers,
    frame_record,
    json_objects,
    load_json,
    positive_int,
    set_thing_classes,
)

__all__ = ["load_ytvis_json", "register_ytvis_instances"]

logger = logging.getLogger(__name__)


def load_ytvis_json(
    json_file: str, image_root: str, *, dataset_name: Optional[str] = None
) -> List[dict]:
    """Load a YouTube-VIS JSON into per-frame dataset dicts.

    ``image_id`` is a running index over all frames; ``track_id`` is the annotation's ``id``.
    A frame where an instance has no box or no mask (null) carries no annotation for it, as in
    Mask2Former's loader. When the JSON has no annotations (the val/test splits) the dicts have
    no ``"annotations"`` key. Boxes are clipped to the image; boxes with no area left are dropped.
    An annotation whose ``video_id`` is missing or names no video, a non-finite box or a
    malformed entry is a ValueError naming the file.
    """
    data = load_json(json_file)
    for key in ("videos", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_file}: missing list '{key}'")
    names, id_map = contiguous_categories(json_objects(data["categories"], "categories", json_file), json_file)
    set_thing_classes(dataset_name, names, id_map, json_file)
    annotations = data.get("annotations")
    videos = json_objects(data["videos"], "videos", json_file)
    video_ids = set()
    for video in videos:
        missing = [k for k in ("id", "file_names", "height", "width") if k not in video]
        if missing:
            raise ValueError(f"{json_file}: video {video.get('id')} lacks {missing}")
        if not isinstance(video["id"], (int, str)) or video["id"] in video_ids:
            raise ValueError(f"{json_file}: video id {video['id']!r} is not a number or a string, or appears twice")
        video_ids.add(video["id"])

    anns_per_video = defaultdict(list)
    for ann in json_objects(annotations or [], "annotations", json_file):
        if ann.get("category_id") not in id_map:
            raise ValueError(
                f"{json_file}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                f"not one of {sorted(id_map)}"
            )
        if not isinstance(ann.get("video_id"), (int, str)) or ann["video_id"] not in video_ids:
            raise ValueError(
                f"{json_file}: annotation {ann.get('id')} has video_id {ann.get('video_id')!r}, which no video has"
            )
        anns_per_video[ann["video_id"]].append(ann)

    dropped, dicts = DroppedBoxes(), []
    for video in videos:
        source = f"{json_file}: video {video['id']!r}"
        if not isinstance(video["file_names"], list) or not all(isinstance(f, str) for f in video["file_names"]):
            raise ValueError(f"{source}: file_names must be a list of strings")
        files = [os.path.join(image_root, f) for f in video["file_names"]]
        if not files:
            raise ValueError(f"{json_file}: video {video['id']} has no frames")
        height = positive_int(video["height"], "height", source)
        width, length = positive_int(video["width"], "width", source), len(files)
        anns = anns_per_video.get(video["id"], [])
        for ann in anns:
            for key in ("bboxes", "segmentations"):
                if len(ann.get(key) or []) != length:
                    raise ValueError(
                        f"{json_file}: annotation {ann.get('id')} must have {length} '{key}' "
                        f"(one per frame of video {video['id']}), has {len(ann.get(key) or [])}"
                    )
        frames = compact_frame_list(files)
        for frame_id, file_name in enumerate(files):
            record = frame_record(
                file_name, len(dicts), height, width, video_id=video["id"], frame_id=frame_id,
                video_length=length, video_frames=frames, annotations=None if annotations is None else [],
            )  # fmt: skip
            if annotations is not None:
                for ann in anns:
                    bbox, segm = ann["bboxes"][frame_id], ann["segmentations"][frame_id]
                    if not (bbox and segm):
                        continue
                    source = f"{json_file} (annotation {ann.get('id')}, frame {frame_id})"
                    x, y, w, h = finite_numbers(bbox, 4, "bbox", source)
                    box = clip_box([x, y, x + w, y + h], width, height)
                    segm = convert_segmentation(segm, height, width, source)
                    if box is None or segm is None:
                        dropped.add(source, [x, y, x + w, y + h])
                        continue
                    record["annotations"].append(
                        {
                            "bbox": box,
                            "bbox_mode": BoxMode.XYXY_ABS,
                            "category_id": id_map[ann["category_id"]],
                            "iscrowd": int(ann.get("iscrowd", 0)),
                            "track_id": ann.get("id"),
                            "segmentation": segm,
                        }
                    )
            dicts.append(record)
    dropped.log(dataset_name or json_file)
    logger.info(f"Loaded {len(dicts)} frames of {len(videos)} videos from {json_file}")
    return dicts


def register_ytvis_instances(name: str, metadata: dict, json_file: str, image_root: str):
    """Register a YouTube-VIS JSON (like Mask2Former's ``register_ytvis_instances``)."""
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, dataset_name=name))
    MetadataCatalog.get(name).set(evaluator_type="ytvis", **metadata)
