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
from typing import List, Optional, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

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
    "convert_segmentations",
    "load_coco_video_json",
    "register_coco_video_instances",
    "rle_pixel_counts",
    "segmentation_to_rle",
    "segmentations_to_rles",
]

logger = logging.getLogger(__name__)


def rle_pixel_counts(counts: Sequence[Union[str, bytes]]) -> np.ndarray:
    """The number of pixels each compressed RLE ``counts`` string covers, -1 for a string that is
    no such encoding. pycocotools decodes any string without a check (a corrupt or cut string
    gives another mask, or memory left uninitialised); its encoding: 6-bit groups from "0", 5 bits
    of value each, the 6th bit set while the value goes on, the last group's 5th bit its sign;
    the values after the third are differences with the value two before. Vectorised over all
    the strings."""
    encoded = [c.encode("latin-1", "replace") if isinstance(c, str) else bytes(c) for c in counts]
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    chars = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    last = np.cumsum(sizes) - 1
    # Characters outside "0".."o", or a string whose last value goes on ("P".."o" at its end).
    if not sizes.all() or chars.min(initial=48) < 48 or chars.max(initial=48) > 111 or (chars[last] >= 80).any():
        if len(encoded) == 1:
            return np.array([-1])
        return np.concatenate([rle_pixel_counts([c]) for c in encoded])  # tell the bad ones
    groups = chars - np.uint8(48)
    ends = np.flatnonzero(groups < 32)  # the last group of each value
    lengths = np.diff(ends, prepend=-1)
    too_long = lengths > 7  # pycocotools' counts are 32-bit: 7 groups at most
    lengths = np.minimum(lengths, 7)
    values = (groups[ends] & 31).astype(np.int64)
    for j in range(1, int(lengths.max())):  # the value's earlier groups hold its lower bits
        longer = lengths > j
        values[longer] = (values[longer] << 5) | (groups[ends[longer] - j] & 31)
    negative = (groups[ends] & 16) != 0
    values[negative] -= np.int64(1) << (5 * lengths[negative])
    per_string = np.diff(np.searchsorted(ends, last, side="right"), prepend=0)
    string = np.repeat(np.arange(len(encoded)), per_string)
    position = np.arange(len(values)) - (np.cumsum(per_string) - per_string)[string]
    # Value m >= 1 is part of the runs m, m + 2, m + 4, ... of its string.
    runs_holding = np.where(position == 0, 1, (per_string[string] - 1 - position) // 2 + 1)
    pixels = np.bincount(string, weights=values * runs_holding, minlength=len(encoded)).astype(np.int64)
    pixels[np.bincount(string[too_long], minlength=len(encoded)) > 0] = -1
    return pixels


def segmentations_to_rles(segms: Sequence, height: int, width: int, sources: Sequence[str]) -> List[Optional[dict]]:
    """Masks (one video's frames, say) as compressed RLEs of size [height, width]; None where there
    is none (null, [] or {}).

    Accepts compressed RLE (``counts`` str or bytes), uncompressed RLE (``counts`` a list) and
    polygons (a list of ``[x0, y0, x1, y1, ...]``, merged into one mask), as the COCO and
    YouTube-VIS APIs do. Malformed input, a mask of another size or RLE counts that do not cover
    its height x width pixels (:func:`rle_pixel_counts`) is a ValueError naming its source.
    """
    rles = [_segmentation_to_rle(s, height, width, where) for s, where in zip(segms, sources)]
    present = [i for i, rle in enumerate(rles) if rle is not None]
    pixels = rle_pixel_counts([rles[i]["counts"] for i in present]) if present else []
    for i, count in zip(present, pixels):
        if count != height * width:
            reason = "are not a valid RLE string" if count < 0 else f"cover {count} pixels"
            raise DatasetError(
                f"{sources[i]}: invalid segmentation: its RLE counts {reason}, not the mask's "
                f"{height}x{width} = {height * width} (corrupt, or made for another size)"
            )
    return rles


def segmentation_to_rle(segm, height: int, width: int, source: str) -> Optional[dict]:
    """One mask as :func:`segmentations_to_rles` converts it."""
    return segmentations_to_rles([segm], height, width, [source])[0]


def _segmentation_to_rle(segm, height: int, width: int, source: str) -> Optional[dict]:
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
            raise DatasetError(f"expected RLE or polygons, got {type(segm).__name__} {str(segm)[:80]}")
        size = [int(v) for v in segm.get("size", ())]
    except Exception as e:  # pycocotools raises bare Exceptions on malformed input
        raise DatasetError(f"{source}: invalid segmentation ({e})") from None
    if size != [height, width]:
        raise DatasetError(f"{source}: mask size {size} differs from the image's [height, width] [{height}, {width}]")
    return rle


def convert_segmentations(segms: Sequence, height: int, width: int, sources: Sequence[str]) -> list:
    """Polygons (invalid ones dropped) or compressed RLE (:func:`segmentations_to_rles`), as
    detectron2 takes them; None where empty."""
    rles = segmentations_to_rles([None if isinstance(s, list) else s for s in segms], height, width, sources)
    return [
        ([p for p in segm if len(p) % 2 == 0 and len(p) >= 6] or None) if isinstance(segm, list) else rle
        for segm, rle in zip(segms, rles)
    ]


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
    Images without ``video_id`` are 1-frame videos (counted in a warning when other images have
    one); annotations without ``instance_id`` get their own ``id`` as track id. Boxes are
    clipped to the image; boxes with no area left are dropped. An annotation whose ``image_id``
    no image has (also ``"1"`` for the image ``1``), an image id given twice, an image of a video
    without ``frame_id`` or with the ``frame_id`` of another image of its video, an ``iscrowd``
    other than 0/1, a non-finite box or a
    malformed entry is a ValueError naming the file.
    """
    data = load_json(json_file)
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{json_file}: missing list '{key}'")
    names, id_map = contiguous_categories(json_objects(data["categories"], "categories", json_file), json_file)
    set_thing_classes(dataset_name, names, id_map, json_file)

    image_by_id = {}
    videos = defaultdict(list)
    for img in json_objects(data["images"], "images", json_file):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            raise DatasetError(f"{json_file}: image {img.get('id')} lacks {missing}")
        source = f"{json_file}: image {img['id']!r}"
        if not isinstance(img["id"], (int, str)):
            raise DatasetError(f"{source}: id must be a number or a string")
        if not isinstance(img["file_name"], str):
            raise DatasetError(f"{source}: file_name must be a string, got {img['file_name']!r}")
        if "video_id" in img and not isinstance(img.get("frame_id"), int):
            raise DatasetError(
                f"{source}: frame_id must be an integer (its place in video {img['video_id']!r}), "
                f"got {img.get('frame_id')!r}"
            )
        height, width = (positive_int(img[k], k, source) for k in ("height", "width"))
        img = dict(img, height=height, width=width)
        if img["id"] in image_by_id:
            # Its annotations would be put on one of the two frames.
            raise DatasetError(
                f"{json_file}: image id {img['id']!r} appears twice "
                f"({image_by_id[img['id']]['file_name']}, {img['file_name']})"
            )
        image_by_id[img["id"]] = img
        if "video_id" in img:
            videos[img["video_id"]].append(img)
        else:
            videos[f"image/{img['id']}"].append(img)
    _order_frames(data["images"], videos, json_file, dataset_name or json_file)

    anns_per_image = defaultdict(list)
    for ann in json_objects(data.get("annotations") or [], "annotations", json_file):
        if "image_id" not in ann:
            raise DatasetError(f"{json_file}: annotation {ann.get('id')} has no 'image_id'")
        if not isinstance(ann["image_id"], (int, str)) or ann["image_id"] not in image_by_id:
            raise DatasetError(
                f"{json_file}: annotation {ann.get('id')} has image_id {ann['image_id']!r}, which no "
                f"image has{_same_digits_hint(ann['image_id'], image_by_id)}"
            )
        anns_per_image[ann["image_id"]].append(ann)

    dropped, dicts = DroppedBoxes(), []
    for video_id, images in videos.items():
        frames = compact_frame_list([os.path.join(image_root, im["file_name"]) for im in images])
        for frame_id, img in enumerate(images):
            if key_frame_field is not None and not img.get(key_frame_field, False):
                continue
            source = f"{json_file} (image {img['id']})"
            annos = []
            for ann in anns_per_image.get(img["id"], []):
                if ann.get("category_id") not in id_map:
                    raise DatasetError(
                        f"{json_file}: annotation {ann.get('id')} has category_id "
                        f"{ann.get('category_id')!r}, not one of {sorted(id_map)}"
                    )
                if "bbox" not in ann:
                    raise DatasetError(f"{json_file}: annotation {ann.get('id')} needs 'bbox': [x, y, w, h]")
                x, y, w, h = finite_numbers(ann["bbox"], 4, "bbox", f"{json_file}: annotation {ann.get('id')}")
                box = clip_box([x, y, x + w, y + h], img["width"], img["height"])
                if box is None:
                    dropped.add(source, [x, y, x + w, y + h])
                    continue
                obj = {
                    "bbox": box,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": id_map[ann["category_id"]],
                    "iscrowd": crowd_flag(ann.get("iscrowd", 0), f"{json_file}: annotation {ann.get('id')}"),
                    "track_id": ann.get("instance_id", ann.get("id")),
                }
                if ann.get("segmentation") is not None:
                    (segm,) = convert_segmentations([ann["segmentation"]], img["height"], img["width"], [source])
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


def _order_frames(images: List[dict], videos: dict, json_file: str, dataset: str):
    """Sorts each video's images by ``frame_id``, refusing a ``frame_id`` given twice in a video
    (the frame order would be the listing order). Images without ``video_id`` among images of
    videos (e.g. DET images added to VID) are counted in a warning: one that lost its video
    becomes a video of its own."""
    stills = [img for img in images if "video_id" not in img]
    if len(stills) < len(videos):
        lone = CountedWarning("loaded {count} images without video_id, among images of videos, as 1-frame videos")
        for img in stills:
            lone.add(json_file, f"image {img['id']!r} ({img['file_name']})")
        lone.log(dataset)
    for video_id, frames in videos.items():
        frames.sort(key=lambda im: im.get("frame_id", 0))
        for previous, img in zip(frames, frames[1:]):
            if previous.get("frame_id", 0) == img.get("frame_id", 0):
                raise DatasetError(
                    f"{json_file}: images {previous['id']!r} ({previous['file_name']}) and {img['id']!r} "
                    f"({img['file_name']}) are both frame {img['frame_id']} of video {video_id!r}"
                )


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
