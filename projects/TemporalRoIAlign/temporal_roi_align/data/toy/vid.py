"""The toy dataset in the ImageNet VID on-disk format (see datasets/README.md). Each frame's XML
carries the extra element ``<degradation>`` (empty when clean), which the real VID does not have:
the toy's own loader (:func:`load_toy_vid`, :func:`register_toy_vid`) reads it into the frame
dicts' ``"degradation"``, and the registered datasets' metadata ``frame_subsets`` selects the
degraded frames for evaluation.
"""

import os
from functools import partial
from typing import List, Optional

from ..datasets.common import datasets_root
from ..datasets.imagenet_vid import load_imagenet_vid, register_imagenet_vid, sample_key_frames
from .generation import SPLITS, ToyFormat, ToyFrame, ToySpec, ToyVideos, is_degraded
from .scene import TOY_CATEGORIES

__all__ = [
    "default_toy_root",
    "ensure_toy_vid",
    "load_toy_vid",
    "make_toy_vid",
    "register_toy_vid",
    "register_toy_vid_split",
]

# split: (split file, every frame of each listed video)
TOY_SPLITS = {
    "train": ("ImageSets/VID_train_15frames.txt", False),
    "val": ("ImageSets/VID_val_videos.txt", True),
}


def default_toy_root() -> str:
    """Where the registered ``toy_vid_train``/``toy_vid_val`` look: ``$DETECTRON2_DATASETS/toy_vid``."""
    return os.path.join(datasets_root(), "toy_vid")


def _xml(folder: str, index: int, size, frame: ToyFrame) -> str:
    H, W = size
    parts = [
        f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{index:06d}</filename>\n"
        "\t<source>\n\t\t<database>toy_vid</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{W}</width>\n\t\t<height>{H}</height>\n\t</size>\n"
    ]
    for track, cls, (x0, y0, x1, y1) in frame.objects:
        parts.append(
            f"\t<object>\n\t\t<trackid>{track}</trackid>\n\t\t<name>{TOY_CATEGORIES[cls][1]}</name>\n"
            f"\t\t<bndbox>\n\t\t\t<xmax>{x1}</xmax>\n\t\t\t<xmin>{x0}</xmin>\n"
            f"\t\t\t<ymax>{y1}</ymax>\n\t\t\t<ymin>{y0}</ymin>\n\t\t</bndbox>\n"
            f"\t\t<occluded>{int(track in frame.occluded)}</occluded>\n\t\t<generated>0</generated>\n\t</object>\n"
        )
    parts.append(f"\t<degradation>{frame.degradation}</degradation>\n</annotation>\n")
    return "".join(parts)


def _write(out: str, spec: ToySpec):
    """The frames, their XMLs and the split files (key frames of the training videos, every frame
    of the validation videos) of the toy dataset ``spec`` under ``out``."""
    videos = ToyVideos(spec)
    os.makedirs(os.path.join(out, "ImageSets"))
    for split in SPLITS:
        split_file, all_frames = TOY_SPLITS[split]
        num_frames, lines = spec.num_frames(split), []
        for v in range(spec.num_videos(split)):
            folder = f"{split}/toy_{split}_{v:04d}"
            data_dir = os.path.join(out, "Data", "VID", folder)
            ann_dir = os.path.join(out, "Annotations", "VID", folder)
            os.makedirs(data_dir)
            os.makedirs(ann_dir)
            for t, frame in enumerate(videos.frames(split, v)):
                frame.write_jpeg(os.path.join(data_dir, f"{t:06d}.JPEG"))
                with open(os.path.join(ann_dir, f"{t:06d}.xml"), "w") as f:
                    f.write(_xml(folder, t, spec.image_size, frame))
            if all_frames:
                lines.append(f"{folder} {v * num_frames + 1} 0 {num_frames}")
            else:
                lines += [f"{folder} 1 {t} {num_frames}" for t in sample_key_frames(num_frames, 15)]
        with open(os.path.join(out, split_file), "w") as f:
            f.write("".join(line + "\n" for line in lines))


TOY_VID = ToyFormat("toy dataset", "toy_vid.json", 3, _write, default_toy_root)


def make_toy_vid(root: Optional[str] = None, **spec) -> str:
    """Write the toy dataset of ``ToySpec(**spec)`` under ``root`` (default
    :func:`default_toy_root`) and return ``root``.

    Layout as ImageNet VID: ``Data/VID/{train,val}/toy_<split>_<i>/<%06d>.JPEG``, one XML per
    frame under ``Annotations/VID``, and ``ImageSets/VID_train_15frames.txt`` /
    ``ImageSets/VID_val_videos.txt``; ``toy_vid.json`` records the spec. An existing ``root`` is
    replaced only if it holds a toy dataset; safe when several processes make the same dataset at
    once (the first complete copy stays).
    """
    return TOY_VID.make(root, ToySpec(**spec))


def ensure_toy_vid(root: Optional[str] = None, **spec) -> str:
    """:func:`make_toy_vid` unless ``root`` already holds the toy dataset of ``ToySpec(**spec)``
    (recorded in ``toy_vid.json``); returns ``root``."""
    return TOY_VID.ensure(root, ToySpec(**spec))


def _degradation(xml_root) -> dict:
    """The frame's ``<degradation>`` ("" when clean)."""
    node = xml_root.find("degradation")
    return {"degradation": (node.text or "").strip() if node is not None else ""}


_TOY_HINT = (
    "Create it with `python tools/make_toy_vid.py` (the names toy_vid_train and toy_vid_val create it on "
    "first use), or call temporal_roi_align.data.ensure_toy_vid()."
)


def load_toy_vid(root: Optional[str] = None, split: str = "val") -> List[dict]:
    """The frame dicts of a toy split: :func:`load_imagenet_vid`'s, plus ``"degradation"``."""
    if split not in TOY_SPLITS:
        raise ValueError(f"toy split must be one of {sorted(TOY_SPLITS)}, got {split!r}")
    split_file, all_frames = TOY_SPLITS[split]
    return load_imagenet_vid(
        root or default_toy_root(),
        split_file,
        all_frames=all_frames,
        categories=TOY_CATEGORIES,
        frame_fields=_degradation,
    )


def register_toy_vid_split(name: str, root: Optional[str], split: str) -> str:
    """Register the toy ``split`` ("train" or "val") of the dataset under ``root`` as ``name``,
    with the toy's degradation field and "degraded" evaluation subset; returns ``name``. Without
    ``root``: :func:`default_toy_root`, read when loaded, where the first use makes the default
    dataset when there is none (any toy dataset there is used as it is: see tools/make_toy_vid.py)."""
    split_file, all_frames = TOY_SPLITS[split]
    register_imagenet_vid(
        name,
        root or partial(TOY_VID.made_on_first_use, name),
        split_file,
        all_frames=all_frames,
        categories=TOY_CATEGORIES,
        frame_fields=_degradation,
        hint=_TOY_HINT,
        frame_subsets={"degraded": is_degraded},
    )
    return name


def register_toy_vid():
    """Register ``toy_vid_train`` and ``toy_vid_val`` under ``$DETECTRON2_DATASETS/toy_vid``."""
    for split in TOY_SPLITS:
        register_toy_vid_split(f"toy_vid_{split}", None, split)
