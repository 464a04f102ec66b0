"""Registers the builtin video datasets, rooted at ``$DETECTRON2_DATASETS`` (default ``./datasets``).

Registering touches no file: the root is read and the data loaded only when a dataset is
requested, and a missing dataset raises an error naming the path and how to get it.

=====================================  ==================================================================
name                                   files under $DETECTRON2_DATASETS
=====================================  ==================================================================
imagenet_vid_train_15frames            ILSVRC2015/ImageSets/VID_train_15frames.txt (+ Data/VID, Annotations/VID)
imagenet_det_train_30classes           ILSVRC2015/ImageSets/DET_train_30classes.txt (+ Data/DET, Annotations/DET)
imagenet_vid_val                       ILSVRC2015/ImageSets/VID_val_videos.txt, every frame of each video
imagenet_vid_train_15frames_cocofmt    ILSVRC2015/annotations/imagenet_vid_train.json (key frames: is_vid_train_frame)
imagenet_vid_val_cocofmt               ILSVRC2015/annotations/imagenet_vid_val.json
ytvis_2019_{train,val,test}            ytvis_2019/{train,valid,test}.json, ytvis_2019/{train,valid,test}/JPEGImages
ytvis_2021_{train,val,test}            ytvis_2021/{train,valid,test}.json, ytvis_2021/{train,valid,test}/JPEGImages
epic_kitchens_55_train, ..._val,       epic_kitchens/annotations/*.csv, epic_kitchens/object_detection_images
  ..._train_p01_p25, ..._test_s1/s2    (see data/datasets/epic_kitchens.py)
toy_vid_train, toy_vid_val             toy_vid/ImageSets/{VID_train_15frames,VID_val_videos}.txt (generated)
toy_vis_train, toy_vis_val             toy_vis/{train,valid}.json, toy_vis/{train,valid}/JPEGImages (generated
                                       on first use)
=====================================  ==================================================================

The YouTube-VIS names carry the official 40 categories of their year in their metadata
(``thing_classes``, ``thing_dataset_id_to_contiguous_id``) and ``evaluator_type="ytvis"``; the
val and test JSONs have no annotations (their scores come from the evaluation server).
"""

import os
from functools import partial

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..toy import register_toy_vid, register_toy_vis
from .coco_video import load_coco_video_json
from .common import datasets_root
from .epic_kitchens import register_epic_kitchens
from .imagenet_vid import VID_CATEGORIES, register_imagenet_vid
from .ytvis import YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES, load_ytvis_json, ytvis_metadata

__all__ = ["register_all_video_datasets"]

_README = "see datasets/README.md"
_VID_HINT = (
    "Download ILSVRC2015 VID (and DET) there and run `python datasets/prepare_imagenet_vid.py` "
    f"to write the split files; {_README}."
)
_COCOFMT_HINT = (
    "Write it from ImageNet VID with mmtrack's tools/convert_datasets/ilsvrc/imagenet2coco_vid.py, "
    f"or use the imagenet_vid_* names that read the raw tree; {_README}."
)
_YTVIS_HINT = f"Download YouTube-VIS there; {_README}."

# name: (split file under ILSVRC2015, subset, all frames of each listed video)
_ILSVRC_DATASETS = {
    "imagenet_vid_train_15frames": ("ImageSets/VID_train_15frames.txt", "VID", False),
    "imagenet_det_train_30classes": ("ImageSets/DET_train_30classes.txt", "DET", False),
    "imagenet_vid_val": ("ImageSets/VID_val_videos.txt", "VID", True),
}

# name: (json file, image root, key frame field)
_COCO_VIDEO_DATASETS = {
    "imagenet_vid_train_15frames_cocofmt": (
        "ILSVRC2015/annotations/imagenet_vid_train.json", "ILSVRC2015/Data/VID", "is_vid_train_frame"
    ),
    "imagenet_vid_val_cocofmt": ("ILSVRC2015/annotations/imagenet_vid_val.json", "ILSVRC2015/Data/VID", None),
}  # fmt: skip

# name: (json file, image root, categories)
_YTVIS_DATASETS = {
    f"ytvis_{year}_{split}": (f"ytvis_{year}/{folder}.json", f"ytvis_{year}/{folder}/JPEGImages", categories)
    for year, categories in ((2019, YTVIS_2019_CATEGORIES), (2021, YTVIS_2021_CATEGORIES))
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test"))
}


def _ilsvrc_root() -> str:
    return os.path.join(datasets_root(), "ILSVRC2015")


def _require_file(path: str, what: str, hint: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist. {hint}")


def _load_coco_video(name, json_file, image_root, key_frame_field):
    json_file = os.path.join(datasets_root(), json_file)
    _require_file(json_file, f"Dataset '{name}': annotation file", _COCOFMT_HINT)
    return load_coco_video_json(
        json_file, os.path.join(datasets_root(), image_root), dataset_name=name, key_frame_field=key_frame_field
    )


def _load_ytvis(name, json_file, image_root):
    json_file = os.path.join(datasets_root(), json_file)
    _require_file(json_file, f"Dataset '{name}': annotation file", _YTVIS_HINT)
    return load_ytvis_json(json_file, os.path.join(datasets_root(), image_root), dataset_name=name)


def register_all_video_datasets():
    """Register the names above (done once when ``temporal_roi_align.data`` is imported)."""
    for name, (split_file, subset, all_frames) in _ILSVRC_DATASETS.items():
        register_imagenet_vid(name, _ilsvrc_root, split_file, subset=subset, all_frames=all_frames, hint=_VID_HINT)
    for name, (json_file, image_root, key_field) in _COCO_VIDEO_DATASETS.items():
        DatasetCatalog.register(name, partial(_load_coco_video, name, json_file, image_root, key_field))
        MetadataCatalog.get(name).set(thing_classes=[c for c, _ in VID_CATEGORIES], evaluator_type="vid")
    for name, (json_file, image_root, categories) in _YTVIS_DATASETS.items():
        DatasetCatalog.register(name, partial(_load_ytvis, name, json_file, image_root))
        MetadataCatalog.get(name).set(**ytvis_metadata(categories))
    register_epic_kitchens()
    register_toy_vid()
    register_toy_vis()


register_all_video_datasets()
