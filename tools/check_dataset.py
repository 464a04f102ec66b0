#!/usr/bin/env python
"""
Check registered video datasets against the files on disk before a long run:

    python tools/check_dataset.py imagenet_vid_train_15frames imagenet_det_train_30classes
    python tools/check_dataset.py toy_vid_val --full          # decode every image too
    python tools/check_dataset.py my_data --import my_project.datasets   # registers my_data

Loads each dataset (a loader's error is reported as it is: loaders stop at the first problem of
their own, e.g. a missing frame or a split length that differs from the disk), then opens every frame of every
video, targets and the frames that serve only as supports, once each: the image header (its
size, no decoding) and, for JPEG and PNG (told by their first bytes, not by the extension), the
file's last bytes (a file cut short has lost its end marker); ``--full`` decodes the pixels
instead, as training and evaluation read them (``read_frame``), and every mask (its size and
RLE counts). Checks each frame's size against its dict and the rest of its video, each video
length against the frames on disk, each box (finite, area left inside the image after clipping)
and each class id. Prints the number of each problem with the first examples (file names) and
exits with 1 when there is any.
"""

import argparse
import math
import os
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from tqdm import tqdm

import temporal_roi_align  # noqa: F401  registers the builtin datasets
from temporal_roi_align.data.datasets import EPIC_KITCHENS_55_SPLITS, frame_file_name, register_epic_kitchens
from temporal_roi_align.data.datasets.coco_video import segmentation_to_rle
from temporal_roi_align.data.datasets.common import clip_box, image_size
from temporal_roi_align.engine import HelpFormatter, add_import_argument, import_modules
from temporal_roi_align.utils.video_io import read_frame

# The first bytes of JPEG and PNG files and the bytes they end with: the format is told by the
# content, not by the extension (PNG data may be named .JPEG).
_END_MARKERS = {b"\xff\xd8": b"\xff\xd9", b"\x89PNG": b"IEND\xaeB`\x82"}


class Report:
    """Problems of one dataset: a count per kind and the first examples of each."""

    def __init__(self, max_examples: int):
        self.counts = Counter()
        self.examples = defaultdict(list)
        self.max_examples = max_examples

    def add(self, kind: str, example: str):
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(example)

    def lines(self):
        for kind, count in self.counts.most_common():
            yield f"  {kind}: {count}"
            for example in self.examples[kind]:
                yield f"      {example}"


def check_image(path: str, full: bool):
    """``((height, width), None)`` or ``(None, (kind, detail))`` for one frame file."""
    try:
        size = image_size(path, "frame")
        if full:
            read_frame(path)  # as training and evaluation read it
        else:
            with open(path, "rb") as f:
                head = f.read(4)
                f.seek(max(0, os.path.getsize(path) - 64))
                tail = f.read().rstrip(b"\x00")
            marker = next((end for start, end in _END_MARKERS.items() if head.startswith(start)), None)
            if marker is not None and not tail.endswith(marker):
                return None, ("truncated image (no end marker)", path)
    except FileNotFoundError:
        return None, ("missing image", path)
    except (OSError, SyntaxError, ValueError) as e:  # image_size's errors name the file
        return None, ("unreadable image", str(e) if path in str(e) else f"{path}: {e}")
    return size, None


def check_annotations(d: dict, num_classes, report: Report, masks: bool = False):
    """Boxes, class ids (unchecked when ``num_classes`` is None) and, with ``masks``, the masks of
    one dataset dict."""
    for i, ann in enumerate(d.get("annotations", [])):
        where = f"{d['file_name']} (annotation {i})"
        if masks and ann.get("segmentation") is not None:
            try:
                segmentation_to_rle(ann["segmentation"], d["height"], d["width"], where)
            except ValueError as e:
                report.add("mask of another size or corrupt", str(e))
        try:
            box = BoxMode.convert(np.asarray([ann["bbox"]], dtype=np.float64), ann["bbox_mode"], BoxMode.XYXY_ABS)[0]
        except Exception as e:  # a box that is not 4 numbers, or a relative box mode
            report.add("box not convertible to XYXY_ABS", f"{where}: {ann.get('bbox')!r} ({e})")
            continue
        if not all(math.isfinite(v) for v in box):
            report.add("box not finite", f"{where}: {ann['bbox']!r}")
        elif clip_box(box, d["width"], d["height"]) is None:
            report.add("box without area inside the image", f"{where}: {ann['bbox']!r} in {d['width']}x{d['height']}")
        category = ann.get("category_id")
        if num_classes is None:
            continue
        if not isinstance(category, (int, np.integer)) or not 0 <= category < num_classes:
            report.add("class id out of range", f"{where}: category_id {category!r}, {num_classes} thing_classes")


def check_dataset(name: str, *, full: bool = False, workers: int = 8, max_examples: int = 5):
    """The :class:`Report` of a registered dataset and a one-line summary."""
    report = Report(max_examples)
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:  # the loader's error names the file and the reason
        report.add("dataset does not load", f"{type(e).__name__}: {e}")
        return report, "not loaded"
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    videos = defaultdict(list)
    for d in dicts:
        videos[d.get("video_id", d["file_name"])].append(d)
        if "annotations" in d:
            check_annotations(d, None if classes is None else len(classes), report, masks=full)
    # Every frame a video has, once: supports come from any of them.
    frames = {}  # file -> (video, frame index, the dicts' size or None)
    for video, video_dicts in videos.items():
        first = video_dicts[0]
        length = first.get("video_length", 1)
        sizes = {(d["height"], d["width"]) for d in video_dicts}
        if len(sizes) > 1:
            report.add("frames of one video with different sizes in their dicts", f"video {video}: {sorted(sizes)}")
        for index in range(length):
            file_name = frame_file_name(first, index) if "video_frames" in first else first["file_name"]
            frames.setdefault(file_name, (video, index, next(iter(sizes))))
        pattern = first.get("video_frames")
        if isinstance(pattern, str) and os.path.exists(pattern.format(length)):
            report.add(
                "more frames on disk than video_length",
                f"video {video}: video_length {length}, but {pattern.format(length)} exists",
            )
    files = list(frames)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda f: check_image(f, full), files, chunksize=64)
        for file_name, (size, problem) in tqdm(zip(files, results), total=len(files), desc=name, unit="frame"):
            video, index, expected = frames[file_name]
            if problem is not None:
                kind, detail = problem
                report.add(kind, f"{detail} (frame {index} of video {video})")
            elif size != expected:
                report.add(
                    "image size differs from its dataset dict",
                    f"{file_name}: {size[1]}x{size[0]}, the dict says {expected[1]}x{expected[0]}",
                )
    boxes = sum(len(d.get("annotations", [])) for d in dicts)
    return report, f"{len(dicts)} dataset dicts, {len(videos)} videos, {len(files)} frame files, {boxes} boxes"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("datasets", nargs="+", metavar="DATASET_NAME", help="names registered in DatasetCatalog")
    parser.add_argument(
        "--full",
        action="store_true",
        help="decode every image and mask (slow) instead of reading the images' header and end",
    )
    parser.add_argument("--workers", type=int, default=8, help="threads opening files (more for network disks)")
    parser.add_argument("--examples", type=int, default=5, help="examples shown per kind of problem")
    add_import_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import_modules(args.modules)
    if set(args.datasets) & set(EPIC_KITCHENS_55_SPLITS) and "epic_kitchens_55_train" not in DatasetCatalog.list():
        register_epic_kitchens()
    unknown = [n for n in args.datasets if n not in DatasetCatalog.list()]
    if unknown:
        print(f"not registered: {unknown} (--import the module that registers them)", file=sys.stderr)
        return 2
    problems = 0
    for name in args.datasets:
        report, summary = check_dataset(name, full=args.full, workers=args.workers, max_examples=args.examples)
        count = sum(report.counts.values())
        problems += count
        print(f"{name}: {summary}: " + (f"{count} problems" if count else "OK"))
        for line in report.lines():
            print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
