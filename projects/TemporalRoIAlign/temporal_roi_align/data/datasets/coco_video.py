"""COCO-style video JSON: the ``videos``/``images``/``annotations``/``categories`` layout of public
video toolboxes (e.g. the ImageNet VID files of mmtracking)::

    videos:      [{"id", "name"}, ...]
    images:      [{"id", "video_id", "frame_id", "file_name", "height", "width"}, ...]
    annotations: [{"id", "image_id", "category_id", "instance_id", "bbox": [x, y, w, h],
                   "iscrowd", "area", "segmentation" (optional)}, ...]
    categories:  [{"id", "name"}, ...]
"""

import logging
import os
from collections import defaultdict
from typing import List, Optional

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

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

__all__ = ["convert_segmentation", "load_coco_video_json", "register_coco_video_instances", "segmentation_to_rle"]

logger = logging.getLogger(__name__)


def segmentation_to_rle(segm, height: int, width: int, source: str) -> Optional[dict]:
    """One frame's mask as a compressed RLE of size [height, width]; None where there is none (null,
    [] or {}).

    Accepts compressed RLE (``counts`` str or bytes), uncompressed RLE (``counts`` a list) and
    polygons (a list of ``[x0, y0, x1, y1, ...]``, merged into one mask), as the COCO and
    YouTube-VIS APIs do. Malformed input or a mask of another size is a ValueError naming ``source``.
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
        raise ValueError(f"{source}: mask size {size} differs from the image's [height, width] [{height}, {width}]")
    return rle


def convert_segmentation(segm, height: int, width: int, source: str):
    """Polygons (invalid ones dropped) or compressed RLE (:func:`segmentation_to_rle`), as
    detectron2 takes them; None if empty."""
    if isinstance(segm, list):
        polygons = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
        return polygons or None
    return segmentation_to_rle(segm, height, width, source)


def load_coco_video_json(
    json_file: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    key_frame_field: Optional[str] = None,
) -> List[dict]:
    """Load a COCO-style video JSON into per-frame dataset dicts.

    Args:
        image_root: directory the images' ``file_name`` are relative to.
        dataset_name: if given, the JSON's classes are recorded as its ``thing_classes``.
        key_frame_field: if given (e.g. ``"is_vid_train_frame"``), only images where this field is
            true become dicts; all images of a video still serve as its frames (supports).

    ``frame_id`` is the image's position in its video after sorting by the JSON's ``frame_id``.
    Images without ``video_id`` are 1-frame videos; annotations without ``instance_id`` get their
    own ``id`` as track id. Boxes are clipped to the image; boxes with no area left are dropped.
    An annotation whose ``image_id`` no image has (also ``"1"`` for the image ``1``), an image
    id given twice, a non-finite box or a malformed entry is a ValueError naming the file.
    """
    data = load_json(json_file)
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_file}: missing list '{key}'")
    names, id_map = contiguous_categories(json_objects(data["categories"], "categories", json_file), json_file)
    set_thing_classes(dataset_name, names, id_map, json_file)

    image_by_id = {}
    videos = defaultdict(list)
    for img in json_objects(data["images"], "images", json_file):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            raise ValueError(f"{json_file}: image {img.get('id')} lacks {missing}")
        source = f"{json_file}: image {img['id']!r}"
        if not isinstance(img["id"], (int, str)):
            raise ValueError(f"{source}: id must be a number or a string")
        if not isinstance(img["file_name"], str):
            raise ValueError(f"{source}: file_name must be a string, got {img['file_name']!r}")
        if not isinstance(img.get("frame_id", 0), int):
            raise ValueError(f"{source}: frame_id must be an integer, got {img['frame_id']!r}")
        height, width = (positive_int(img[k], k, source) for k in ("height", "width"))
        img = dict(img, height=height, width=width)
        if img["id"] in image_by_id:
            # Its annotations would be put on one of the two frames.
            raise ValueError(
                f"{json_file}: image id {img['id']!r} appears twice "
                f"({image_by_id[img['id']]['file_name']}, {img['file_name']})"
            )
        image_by_id[img["id"]] = img
        if "video_id" in img:
            videos[img["video_id"]].append(img)
        else:
            videos[f"image/{img['id']}"].append(img)

    anns_per_image = defaultdict(list)
    for ann in json_objects(data.get("annotations") or [], "annotations", json_file):
        if "image_id" not in ann:
            raise ValueError(f"{json_file}: annotation {ann.get('id')} has no 'image_id'")
        if not isinstance(ann["image_id"], (int, str)) or ann["image_id"] not in image_by_id:
            raise ValueError(
                f"{json_file}: annotation {ann.get('id')} has image_id {ann['image_id']!r}, which no "
                f"image has{_same_digits_hint(ann['image_id'], image_by_id)}"
            )
        anns_per_image[ann["image_id"]].append(ann)

    dropped, dicts = DroppedBoxes(), []
    for video_id, images in videos.items():
        images.sort(key=lambda im: im.get("frame_id", 0))
        frames = compact_frame_list([os.path.join(image_root, im["file_name"]) for im in images])
        for frame_id, img in enumerate(images):
            if key_frame_field is not None and not img.get(key_frame_field, False):
                continue
            source = f"{json_file} (image {img['id']})"
            annos = []
            for ann in anns_per_image.get(img["id"], []):
                if ann.get("category_id") not in id_map:
                    raise ValueError(
                        f"{json_file}: annotation {ann.get('id')} has category_id "
                        f"{ann.get('category_id')!r}, not one of {sorted(id_map)}"
                    )
                if "bbox" not in ann:
                    raise ValueError(f"{json_file}: annotation {ann.get('id')} needs 'bbox': [x, y, w, h]")
                x, y, w, h = finite_numbers(ann["bbox"], 4, "bbox", f"{json_file}: annotation {ann.get('id')}")
                box = clip_box([x, y, x + w, y + h], img["width"], img["height"])
                if box is None:
                    dropped.add(source, [x, y, x + w, y + h])
                    continue
                obj = {
                    "bbox": box,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": id_map[ann["category_id"]],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                    "track_id": ann.get("instance_id", ann.get("id")),
                }
                if ann.get("segmentation") is not None:
                    segm = convert_segmentation(ann["segmentation"], img["height"], img["width"], source)
                    if segm is not None:
                        obj["segmentation"] = segm
                annos.append(obj)
            dicts.append(
                frame_record(
                    os.path.join(image_root, img["file_name"]),
                    img["id"],
                    img["height"],
                    img["width"],
                    video_id=video_id,
                    frame_id=frame_id,
                    video_length=len(images),
                    video_frames=frames,
                    annotations=annos,
                )
            )
    dropped.log(dataset_name or json_file)
    logger.info(f"Loaded {len(dicts)} images of {len(videos)} videos from {json_file}")
    return dicts


def _same_digits_hint(image_id, image_ids) -> str:
    """Points at an image id that differs from ``image_id`` only in type ("1" and 1)."""
    for known in image_ids:
        if str(known) == str(image_id):
            types = f"{type(image_id).__name__} and {type(known).__name__}"
            return f" (image {known!r} exists: the ids differ in type, {types})"
    return ""


def register_coco_video_instances(name: str, metadata: dict, json_file: str, image_root: str, **kwargs):
    """Register a COCO-style video JSON (like detectron2's ``register_coco_instances``).
    ``kwargs`` go to :func:`load_coco_video_json`."""
    DatasetCatalog.register(name, lambda: load_coco_video_json(json_file, image_root, dataset_name=name, **kwargs))
    MetadataCatalog.get(name).set(evaluator_type="vid", **metadata)
