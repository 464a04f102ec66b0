#!/usr/bin/env python
"""Write the FGFA-style split files of ImageNet VID/DET from the raw ILSVRC2015 tree.

    python datasets/prepare_imagenet_vid.py [--root $DETECTRON2_DATASETS/ILSVRC2015]

Writes under <root>/ImageSets:
  VID_train_15frames.txt   at most 15 frames (--max-frames) spread over each training video
  VID_val_videos.txt       every validation video
  DET_train_30classes.txt  the DET training images showing one of the 30 VID classes
                           (skip with --no-det when only VID is downloaded)
Every file is computed before any is written, and each is replaced atomically: a wrong --root
fails with the path it looked at and leaves existing split files as they were.
See datasets/README.md for the layout.
"""

import argparse
import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List

from temporal_roi_align.data.datasets import VID_CATEGORIES, datasets_root, sample_key_frames
from temporal_roi_align.utils import atomic_write

logger = logging.getLogger("prepare_imagenet_vid")

FRAME_DIGITS = 6
OTHER_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def count_frames(video_dir: str) -> int:
    names = sorted(f for f in os.listdir(video_dir) if f.endswith(".JPEG"))
    expected = ["%0*d.JPEG" % (FRAME_DIGITS, i) for i in range(len(names))]
    if names != expected:
        raise ValueError(f"{video_dir}: frames must be named 000000.JPEG, 000001.JPEG, ... without gaps")
    return len(names)


def video_dirs(data_root: str, split: str) -> List[str]:
    """Videos under Data/VID/<split>, relative to Data/VID: ``train/<part>/<video>``, ``val/<video>``."""
    base = os.path.join(data_root, split)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{base} does not exist")
    videos = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        if any(f.endswith(".JPEG") for f in filenames):
            videos.append(os.path.relpath(dirpath, data_root).replace(os.sep, "/"))
        elif any(os.path.splitext(f)[1].lower() in OTHER_IMAGE_EXTENSIONS for f in filenames):
            raise ValueError(
                f"{dirpath}: holds images but no .JPEG frames; ImageNet VID frames are named 000000.JPEG, "
                "000001.JPEG, ... (a video left out would be missing from the split files)"
            )
    if not videos:
        raise FileNotFoundError(f"{base} holds no video (no folder with .JPEG frames)")
    return videos


def det_images(root: str) -> List[str]:
    """The DET training images (relative to Data/DET, no extension) that show a VID class."""
    wnids = {w for _, w in VID_CATEGORIES}
    ann_det = os.path.join(root, "Annotations", "DET")
    if not os.path.isdir(os.path.join(ann_det, "train")):
        raise FileNotFoundError(
            f"{os.path.join(ann_det, 'train')} does not exist (pass with_det=False / --no-det "
            "to build the VID split files only)"
        )
    images, missing = [], []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ann_det, "train")):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.endswith(".xml"):
                continue
            xml_file = os.path.join(dirpath, f)
            try:
                names = {n.text.strip() for n in ET.parse(xml_file).getroot().iter("name") if n.text}
            except ET.ParseError as e:
                raise ValueError(f"{xml_file}: not valid XML ({e})") from e
            if not names & wnids:
                continue
            image = os.path.relpath(xml_file, ann_det)[: -len(".xml")].replace(os.sep, "/")
            if os.path.isfile(os.path.join(root, "Data", "DET", image + ".JPEG")):
                images.append(image)
            else:
                missing.append(image)
    if missing:
        logger.warning(f"skipped {len(missing)} DET images without a JPEG (first: {missing[0]})")
    return images


def prepare_imagenet_vid_splits(root: str, *, max_frames: int = 15, with_det: bool = True) -> Dict[str, int]:
    """Write the split files under ``root/ImageSets`` from the raw ILSVRC2015 tree and return the
    number of lines written per file (see the module's docstring)."""
    data_vid = os.path.join(root, "Data", "VID")
    contents = {}
    lines = []
    for video in video_dirs(data_vid, "train"):
        length = count_frames(os.path.join(data_vid, video))
        lines += [f"{video} {len(lines) + 1} {f} {length}" for f in sample_key_frames(length, max_frames)]
    contents["VID_train_15frames.txt"] = lines

    lines, start = [], 1
    for video in video_dirs(data_vid, "val"):
        length = count_frames(os.path.join(data_vid, video))
        lines.append(f"{video} {start} 0 {length}")
        start += length
    contents["VID_val_videos.txt"] = lines

    if with_det:
        contents["DET_train_30classes.txt"] = [f"{image} {n}" for n, image in enumerate(det_images(root), 1)]

    out_dir = os.path.join(root, "ImageSets")
    os.makedirs(out_dir, exist_ok=True)
    for name, lines in contents.items():
        with atomic_write(os.path.join(out_dir, name)) as f:
            f.write("".join(line + "\n" for line in lines))
    return {name: len(lines) for name, lines in contents.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="the ILSVRC2015 folder (default: $DETECTRON2_DATASETS/ILSVRC2015)")
    p.add_argument("--max-frames", type=int, default=15, help="frames sampled per training video")
    p.add_argument("--no-det", action="store_true", help="do not build DET_train_30classes.txt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = args.root or os.path.join(datasets_root(), "ILSVRC2015")
    try:
        written = prepare_imagenet_vid_splits(root, max_frames=args.max_frames, with_det=not args.no_det)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for name, count in written.items():
        print(f"{os.path.join(root, 'ImageSets', name)}: {count} lines")


if __name__ == "__main__":
    main()
