"""A small generated video instance segmentation dataset in the YouTube-VIS JSON format.

The videos are those of the toy VID dataset (:mod:`.toy`, same scene renderer, same random
draws: with the same arguments the frames are the same pixels), annotated for VIS: every frame
of every video, each object's mask (the sprite's alpha > 0.5, less the parts of objects drawn
over it) as compressed RLE, its bounding box and area, one annotation per object track. A
frame where an object is not visible has null box and mask for it, as in YouTube-VIS. Degraded
frames keep the object's whole mask, as the toy VID keeps its whole box. Each JSON video also
has ``"degradations"`` (one per frame, "" when clean), which YouTube-VIS does not have: the toy's
loader reads it into the frame dicts' ``"degradation"``, and the registered datasets' metadata
``frame_subsets`` selects the degraded frames.

Layout under ``$DETECTRON2_DATASETS/toy_vis`` (YouTube-VIS's)::

    train.json, valid.json, {train,valid}/JPEGImages/toy_<split>_<i>/<%05d>.jpg, toy_vis.json (parameters)
"""

import json
import logging
import os
from functools import partial
from typing import List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog

from .datasets.common import datasets_root
from .datasets.ytvis import load_ytvis_json, ytvis_metadata
from .toy import (
    DEGRADATIONS,
    TOY_CATEGORIES,
    _ensure,
    _generate,
    _generation_params,
    _read_stamp,
    _sprites,
    _textures,
    _Video,
    is_degraded,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TOY_VIS_CATEGORIES",
    "default_toy_vis_root",
    "ensure_toy_vis",
    "load_toy_vis",
    "make_toy_vis",
    "register_toy_vis",
]

# (JSON category id, name): the toy VID classes, ids from 1.
TOY_VIS_CATEGORIES: Tuple[Tuple[int, str], ...] = tuple((i + 1, name) for i, (name, _) in enumerate(TOY_CATEGORIES))
STAMP_FILE = "toy_vis.json"
# split: JSON file and image folder name (YouTube-VIS calls its val split "valid").
TOY_VIS_SPLITS = {"train": "train", "val": "valid"}
_GENERATOR_VERSION = 1


def default_toy_vis_root() -> str:
    """Where ``toy_vis_train``/``toy_vis_val`` look: ``$DETECTRON2_DATASETS/toy_vis``."""
    return os.path.join(datasets_root(), "toy_vis")


def _visible(masks: List[np.ndarray]) -> List[np.ndarray]:
    """Each mask less the masks after it (objects are drawn in order, later ones on top)."""
    covered = np.zeros_like(masks[0]) if masks else None
    visible = []
    for mask in reversed(masks):
        visible.append(mask & ~covered)
        covered |= mask
    return visible[::-1]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_split(out: str, p: dict, split_index: int, split: str, num_videos: int, num_frames: int, sprites, textures):
    folder = TOY_VIS_SPLITS[split]
    size = tuple(p["image_size"])
    videos, annotations = [], []
    for v in range(num_videos):
        # The toy VID's random draws, in its order: the same scene and degradations.
        rng = np.random.default_rng([p["seed"], split_index, v])
        video = _Video(rng, sprites, textures, size, num_frames, p["num_classes"], p["max_objects"], v)
        num_degraded = round(p["degradation_prob"] * num_frames)
        degraded = sorted(rng.choice(num_frames, num_degraded, replace=False))
        kinds = {int(t): DEGRADATIONS[rng.integers(len(DEGRADATIONS))] for t in degraded}
        name = f"toy_{split}_{v:04d}"
        os.makedirs(os.path.join(out, folder, "JPEGImages", name))
        tracks = {}  # track -> annotation
        for t in range(num_frames):
            masks = []
            frame, objects = video.render(t, masks)
            if t in kinds:
                frame, _ = video.degrade(frame, objects, kinds[t], p["difficulty"])
            bgr = cv2.cvtColor((frame * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
            jpeg = os.path.join(out, folder, "JPEGImages", name, f"{t:05d}.jpg")
            if not cv2.imwrite(jpeg, bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f"{jpeg}: cannot write image")
            for (track, cls, _), mask in zip(objects, _visible(masks)):
                ys, xs = np.nonzero(mask)
                if len(xs) == 0:
                    continue  # hidden behind a later object
                ann = tracks.setdefault(
                    track,
                    {
                        "video_id": v + 1,
                        "category_id": cls + 1,
                        "iscrowd": 0,
                        "areas": [None] * num_frames,
                        "bboxes": [None] * num_frames,
                        "segmentations": [None] * num_frames,
                    },
                )
                x0, y0 = int(xs.min()), int(ys.min())
                ann["bboxes"][t] = [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]
                ann["areas"][t] = int(len(xs))
                ann["segmentations"][t] = _rle(mask)
        videos.append(
            {
                "id": v + 1,
                "name": name,
                "height": size[0],
                "width": size[1],
                "length": num_frames,
                "file_names": [f"{name}/{t:05d}.jpg" for t in range(num_frames)],
                "degradations": [kinds.get(t, "") for t in range(num_frames)],
            }
        )
        for track in sorted(tracks):
            annotations.append({"id": len(annotations) + 1, **tracks[track]})
    data = {
        "info": {"description": f"toy_vis {split}: generated by temporal_roi_align.data.make_toy_vis"},
        "categories": [{"id": i, "name": n, "supercategory": "object"} for i, n in TOY_VIS_CATEGORIES],
        "videos": videos,
        "annotations": annotations,
    }
    with open(os.path.join(out, f"{folder}.json"), "w") as f:
        json.dump(data, f)


def _write_dataset(out: str, p: dict):
    sprites, textures = _sprites(), _textures()
    splits = (
        ("train", p["num_train_videos"], p["frames_per_video"]),
        ("val", p["num_val_videos"], p["val_frames_per_video"]),
    )
    for split_index, (split, num_videos, num_frames) in enumerate(splits):
        _write_split(out, p, split_index, split, num_videos, num_frames, sprites, textures)
    # Written last: its presence marks a complete dataset.
    with open(os.path.join(out, STAMP_FILE), "w") as f:
        json.dump(p, f, indent=1, sort_keys=True)


def make_toy_vis(
    root: Optional[str] = None,
    *,
    num_train_videos: int = 24,
    num_val_videos: int = 16,
    frames_per_video: int = 15,
    val_frames_per_video: int = 20,
    image_size: Tuple[int, int] = (128, 160),
    num_classes: int = len(TOY_CATEGORIES),
    max_objects: int = 2,
    degradation_prob: float = 0.35,
    difficulty: float = 1.0,
    seed: int = 0,
) -> str:
    """Write the toy VIS dataset under ``root`` (default :func:`default_toy_vis_root`) and return
    ``root``. The arguments are :func:`~.toy.make_toy_vid`'s, with the same meaning and defaults
    (the same videos); deterministic given them.

    An existing ``root`` is replaced only if it holds a toy VIS dataset (its ``toy_vis.json``).
    Safe when several processes make the same dataset at once: each writes its own copy and the
    first complete one stays.
    """
    params = _generation_params(
        _GENERATOR_VERSION,
        num_train_videos=num_train_videos,
        num_val_videos=num_val_videos,
        frames_per_video=frames_per_video,
        val_frames_per_video=val_frames_per_video,
        image_size=image_size,
        num_classes=num_classes,
        max_objects=max_objects,
        degradation_prob=degradation_prob,
        difficulty=difficulty,
        seed=seed,
    )
    root = os.path.abspath(root or default_toy_vis_root())
    return _generate(root, params, _write_dataset, STAMP_FILE, "toy VIS dataset")


def ensure_toy_vis(root: Optional[str] = None, **kwargs) -> str:
    """Create the toy VIS dataset with :func:`make_toy_vis` unless ``root`` already holds one made
    with the same arguments (recorded in ``toy_vis.json``); returns ``root``."""
    root = os.path.abspath(root or default_toy_vis_root())
    return _ensure(root, make_toy_vis, STAMP_FILE, _GENERATOR_VERSION, kwargs)


def _degradation(video: dict, frame_id: int) -> dict:
    """The frame's ``"degradation"`` from its JSON video entry ("" when clean)."""
    degradations = video.get("degradations")
    return {"degradation": degradations[frame_id] if degradations else ""}


def load_toy_vis(root: Optional[str] = None, split: str = "val", dataset_name: Optional[str] = None) -> List[dict]:
    """The frame dicts of a toy VIS split: :func:`load_ytvis_json`'s, plus ``"degradation"``."""
    if split not in TOY_VIS_SPLITS:
        raise ValueError(f"toy VIS split must be one of {sorted(TOY_VIS_SPLITS)}, got {split!r}")
    root = root or default_toy_vis_root()
    folder = TOY_VIS_SPLITS[split]
    return load_ytvis_json(
        os.path.join(root, f"{folder}.json"),
        os.path.join(root, folder, "JPEGImages"),
        dataset_name=dataset_name,
        frame_fields=_degradation,
    )


def _load_registered(name: str, split: str) -> List[dict]:
    root = default_toy_vis_root()
    if _read_stamp(root, STAMP_FILE) is None:
        logger.info(f"Dataset '{name}': no toy VIS dataset at {root} yet; generating it (seconds)")
        make_toy_vis(root)
    return load_toy_vis(root, split, dataset_name=name)


def register_toy_vis():
    """Register ``toy_vis_train`` and ``toy_vis_val`` under ``$DETECTRON2_DATASETS/toy_vis``; the
    first use generates the dataset with the default arguments when it is not there (any
    toy VIS dataset already there is used as it is: see ``tools/make_toy_vis.py``)."""
    for split in TOY_VIS_SPLITS:
        name = f"toy_vis_{split}"
        DatasetCatalog.register(name, partial(_load_registered, name, split))
        MetadataCatalog.get(name).set(**ytvis_metadata(TOY_VIS_CATEGORIES), frame_subsets={"degraded": is_degraded})
