"""EPIC-KITCHENS-55 object detection (Damen et al., ECCV 2018), in the files its authors distribute.

Layout under ``root`` (``$DETECTRON2_DATASETS/epic_kitchens`` for the registered names)::

    annotations/    a clone of github.com/epic-kitchens/epic-kitchens-55-annotations
        EPIC_train_object_labels.csv  noun_class,noun,participant_id,video_id,frame,bounding_boxes
        EPIC_noun_classes.csv         noun_id,class_key,nouns
        EPIC_test_s1_object_video_list.csv, EPIC_test_s2_object_video_list.csv
                                      video_id,participant_id (seen / unseen kitchens)
    object_detection_images/{train,test}/<participant_id>/<video_id>/<frame:010d>.jpg

The format (the repository's README, files and issues): ``frame`` is the frame number in the
video (1-based, as in the image's file name); objects are annotated every 30th frame (2 fps);
``bounding_boxes`` is a Python list of ``(top, left, height, width)`` tuples in pixels, ``[]``
when the row's noun is not visible in the frame; ``noun_class`` is a ``noun_id`` of the classes
file. A frame has one row per noun annotated in it. The test splits have no labels: the README
asks for detections on every image of the listed videos' folders under ``.../test``.

Dataset dicts (one per frame):

- train: one dict per annotated frame, i.e. per distinct (video, frame) of the CSV; its
  ``annotations`` are the boxes of all its rows (each with its row's class), converted to
  XYXY_ABS and clipped to the image. A frame whose rows are all ``[]`` has no annotations: a
  negative frame, still a support for its neighbours.
- test: one dict per ``<frame:010d>.jpg`` in the video's folder, without ``annotations``.
- A video's frame list (``video_frames``, ``video_length``) is its frames above in frame order:
  the annotated frames for train (frames that exist however much of the video the image folder
  holds), all images for test. ``frame_id`` is the index in that list, so supports are other
  frames of the list; consecutive entries are 30 frames (0.5 s) apart where no frame is missing.
- ``height``/``width`` are each image's own (read from its header; EXIF orientation applied as
  Detectron2 reads images). A video whose images do not all have the same size is split into one
  video per size, ``video_id`` ``"<video>@<width>x<height>"``, since supports must have their
  target's size. ``image_id`` is ``"<video>/<frame:010d>"``.
"""

import ast
import bisect
import csv
import itertools
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Sequence as SequenceABC
from functools import partial
from typing import Collection, Dict, Iterator, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .common import (
    CountedWarning,
    DatasetError,
    DroppedBoxes,
    clip_box,
    datasets_root,
    frame_pattern,
    frame_record,
    image_size,
    require_dir,
    set_thing_classes,
)

__all__ = [
    "EPIC_KITCHENS_55_SPLITS",
    "EPIC_TRAIN_PARTICIPANTS",
    "EPIC_VAL_PARTICIPANTS",
    "NumberedFrames",
    "load_epic_kitchens_55",
    "parse_bounding_boxes",
    "read_noun_classes",
    "register_epic_kitchens",
]

logger = logging.getLogger(__name__)

LABELS_CSV = "EPIC_train_object_labels.csv"
CLASSES_CSV = "EPIC_noun_classes.csv"
TEST_VIDEO_LISTS = {
    "test_s1": "EPIC_test_s1_object_video_list.csv",
    "test_s2": "EPIC_test_s2_object_video_list.csv",
}
_LABEL_COLUMNS = ("noun_class", "participant_id", "video_id", "frame", "bounding_boxes")
_FRAME_DIGITS = 10
_FRAME_FILE = re.compile(r"^(\d{%d})\.jpg$" % _FRAME_DIGITS)

# Baradel et al., "Object Level Visual Reasoning in Videos" (ECCV 2018): train on the videos of
# P01-P25, validate on the other training participants (P26-P31). The dataset's maintainers point
# to this split (epic-kitchens-55-annotations issue #17); none is defined for object detection.
EPIC_TRAIN_PARTICIPANTS = tuple(f"P{i:02d}" for i in range(1, 26))
EPIC_VAL_PARTICIPANTS = tuple(f"P{i:02d}" for i in range(26, 32))

# name: (split, participants kept, None: all)
EPIC_KITCHENS_55_SPLITS = {
    "epic_kitchens_55_train": ("train", None),
    "epic_kitchens_55_train_p01_p25": ("train", EPIC_TRAIN_PARTICIPANTS),
    "epic_kitchens_55_val": ("train", EPIC_VAL_PARTICIPANTS),
    "epic_kitchens_55_test_s1": ("test_s1", None),
    "epic_kitchens_55_test_s2": ("test_s2", None),
}

_HINT = (
    "Clone github.com/epic-kitchens/epic-kitchens-55-annotations as <root>/annotations and put the "
    "object detection images under <root>/object_detection_images/{train,test}/<participant>/"
    "<video>/ (one folder per downloaded <video>.tar); see datasets/README.md."
)


class NumberedFrames(SequenceABC):
    """The file names ``pattern.format(n)`` of a video's frames, for its increasing frame numbers
    ``n``: a sequence that :func:`~.common.frame_file_name` indexes like a tuple of names.

    The numbers are kept as runs of evenly spaced numbers (``range``s). EPIC's images are every
    30th frame, so a video is one run where no frame is missing, and a dataset dict stays small
    however long its video (a tuple of names costs O(frames) per dict, O(frames^2) per video once
    Detectron2 serializes the dicts one by one).
    """

    def __init__(self, pattern: str, numbers: Sequence[int]):
        runs: List[range] = []
        for n in numbers:
            n = int(n)
            if runs and n <= runs[-1][-1]:
                raise DatasetError(f"frame numbers must increase, got {n} after {runs[-1][-1]}")
            last = runs[-1] if runs else None
            if last is not None and len(last) == 1:
                runs[-1] = range(last.start, 2 * n - last.start, n - last.start)
            elif last is not None and n == last[-1] + last.step:
                runs[-1] = range(last.start, n + last.step, last.step)
            else:
                runs.append(range(n, n + 1))
        self.pattern = pattern
        self._runs = tuple(runs)
        self._starts = tuple(itertools.accumulate([0] + [len(r) for r in runs[:-1]]))
        self._length = sum(len(r) for r in runs)

    @property
    def numbers(self) -> List[int]:
        return [n for r in self._runs for n in r]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> str:
        if not isinstance(index, int):
            raise TypeError(f"NumberedFrames indices must be integers, got {type(index).__name__}")
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"frame index {index} is outside {self._length} frames")
        k = bisect.bisect_right(self._starts, index) - 1
        return self.pattern.format(self._runs[k][index - self._starts[k]])

    def __repr__(self) -> str:
        return f"NumberedFrames({self.pattern!r}, runs={list(self._runs)})"


def _read_csv(csv_file: str, columns: Sequence[str]) -> Iterator[Tuple[str, Dict[str, str]]]:
    """``("<csv_file>:<line>", {column: text})`` for each row; other columns are ignored. UTF-8,
    with or without a byte order mark."""
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(f"{csv_file}: file does not exist")
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        try:
            yield from _csv_rows(csv_file, csv.reader(f), columns)
        except UnicodeDecodeError as e:
            raise DatasetError(f"{csv_file}: not UTF-8 text ({e})") from None


def _csv_rows(csv_file: str, reader, columns: Sequence[str]) -> Iterator[Tuple[str, Dict[str, str]]]:
    header = next(reader, None)
    if header is None:
        raise DatasetError(f"{csv_file}: empty file, expected the header {','.join(columns)}")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{csv_file}:1: missing columns {missing} (header: {','.join(header)})")
    index = {c: header.index(c) for c in columns}
    for fields in reader:
        where = f"{csv_file}:{reader.line_num}"
        if not fields:
            continue
        if len(fields) != len(header):
            raise DatasetError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(fields)}")
        yield where, {c: fields[i] for c, i in index.items()}


def _int(text: str, column: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{where}: {column} must be an integer, got {text!r}") from None


def _is_box(value) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def parse_bounding_boxes(text: str, where: str = "bounding_boxes") -> List[List[float]]:
    """EPIC's ``"[(top, left, height, width), ...]"`` as XYXY boxes ``[x0, y0, x1, y1]``."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(_is_box(b) for b in value):
        raise DatasetError(f"{where}: bounding_boxes must be a list of (top, left, height, width) tuples, got {text!r}")
    return [[left, top, left + width, top + height] for top, left, height, width in value]


def read_noun_classes(csv_file: str) -> Tuple[List[str], Dict[int, int]]:
    """Class names (``class_key``, in the file's order) and ``noun_id`` -> contiguous id (the
    position in the file; the identity for the released file, whose ids are 0..351 in order)."""
    names, id_map = [], {}
    for where, row in _read_csv(csv_file, ("noun_id", "class_key")):
        noun_id = _int(row["noun_id"], "noun_id", where)
        if noun_id in id_map:
            raise DatasetError(f"{where}: noun_id {noun_id} appears twice")
        id_map[noun_id] = len(names)
        names.append(row["class_key"])
    if not names:
        raise DatasetError(f"{csv_file}: no classes")
    return names, id_map


# frame number -> ("<csv>:<line>" naming it, [(XYXY box, contiguous class, "<csv>:<line>")] or
# None for an unlabeled frame)
_Frames = Dict[int, Tuple[str, Optional[List[Tuple[List[float], int, str]]]]]


def _train_frames(
    labels_csv: str, id_map: Dict[int, int], participants: Optional[Collection[str]], repeated: CountedWarning
) -> "OrderedDict[str, Tuple[str, _Frames]]":
    videos: "OrderedDict[str, Tuple[str, _Frames]]" = OrderedDict()
    rows = {}  # (video, frame, noun_class, boxes) -> "<csv>:<line>"
    for where, row in _read_csv(labels_csv, _LABEL_COLUMNS):
        participant, video = row["participant_id"], row["video_id"]
        if participants is not None and participant not in participants:
            continue
        noun_class = _int(row["noun_class"], "noun_class", where)
        if noun_class not in id_map:
            raise DatasetError(f"{where}: noun_class {noun_class} is not a noun_id of {CLASSES_CSV}")
        frame = _int(row["frame"], "frame", where)
        if frame < 1:
            raise DatasetError(f"{where}: frame {frame} is not a frame number (they start at 1)")
        boxes = parse_bounding_boxes(row["bounding_boxes"], where)
        owner, frames = videos.setdefault(video, (participant, {}))
        if owner != participant:
            raise DatasetError(f"{where}: video {video} belongs to {owner}, not {participant}")
        key = video, frame, noun_class, str(boxes)
        if boxes and key in rows:
            repeated.add(where, f"the boxes of {rows[key]}")
            continue
        rows.setdefault(key, where)
        frames.setdefault(frame, (where, []))[1].extend((box, id_map[noun_class], where) for box in boxes)
    return videos


def _test_frames(root: str, list_csv: str) -> "OrderedDict[str, Tuple[str, _Frames]]":
    videos: "OrderedDict[str, Tuple[str, _Frames]]" = OrderedDict()
    for where, row in _read_csv(list_csv, ("video_id", "participant_id")):
        participant, video = row["participant_id"], row["video_id"]
        if video in videos:
            raise DatasetError(f"{where}: video {video} is listed twice")
        image_dir = os.path.join(root, "object_detection_images", "test", participant, video)
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"{where}: image folder {image_dir} does not exist")
        numbers = sorted(int(m.group(1)) for m in map(_FRAME_FILE.match, os.listdir(image_dir)) if m)
        if not numbers:
            raise DatasetError(f"{where}: no images named <frame:010d>.jpg in {image_dir}")
        videos[video] = (participant, {n: (where, None) for n in numbers})
    return videos


def _video_dicts(video: str, image_dir: str, frames: _Frames, dropped: DroppedBoxes) -> List[dict]:
    pattern = frame_pattern(image_dir, _FRAME_DIGITS, ".jpg")
    by_size: "OrderedDict[Tuple[int, int], List[int]]" = OrderedDict()
    for n in sorted(frames):
        by_size.setdefault(image_size(pattern.format(n), frames[n][0]), []).append(n)
    if len(by_size) > 1:
        logger.warning(
            f"EPIC video {video} has images of {len(by_size)} sizes; each size becomes a video of "
            f"its own ({', '.join(f'{w}x{h}: {len(ns)} frames' for (h, w), ns in by_size.items())})"
        )
    dicts = []
    for (height, width), numbers in by_size.items():
        video_id = video if len(by_size) == 1 else f"{video}@{width}x{height}"
        video_frames = NumberedFrames(pattern, numbers)
        for frame_id, n in enumerate(numbers):
            boxes = frames[n][1]
            annotations = None
            if boxes is not None:
                annotations = []
                for raw, category_id, where in boxes:
                    box = clip_box(raw, width, height)
                    if box is None:
                        dropped.add(where, raw)
                        continue
                    annotations.append(
                        {
                            "bbox": box,
                            "bbox_mode": BoxMode.XYXY_ABS,
                            "category_id": category_id,
                            "iscrowd": 0,
                        }
                    )
            dicts.append(
                frame_record(
                    pattern.format(n),
                    f"{video}/{n:0{_FRAME_DIGITS}d}",
                    height,
                    width,
                    video_id=video_id,
                    frame_id=frame_id,
                    video_length=len(numbers),
                    video_frames=video_frames,
                    annotations=annotations,
                )
            )
    return dicts


def load_epic_kitchens_55(
    root: str,
    split: str = "train",
    *,
    participants: Optional[Collection[str]] = None,
    dataset_name: Optional[str] = None,
) -> List[dict]:
    """Load EPIC-KITCHENS-55 object detection frames (see the module's docstring).

    Args:
        root: the folder holding ``annotations/`` and ``object_detection_images/``.
        split: ``"train"`` (labelled), ``"test_s1"`` (seen kitchens) or ``"test_s2"`` (unseen
            kitchens); the test splits have no ``"annotations"``.
        participants: train only; keep the rows of these participants (e.g. ``"P01"``).
        dataset_name: if given, the classes of ``EPIC_noun_classes.csv`` are recorded as its
            ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``.

    Every image of the split is opened (header only) for its size: a missing image raises
    ``FileNotFoundError`` naming the CSV line. Boxes are clipped to the image; boxes with no
    area left are dropped (one warning with the count). A row repeating the boxes of an earlier
    row of the same frame and class is skipped (one warning with the count): its boxes would
    count twice.
    """
    repeated = CountedWarning("skipped {count} rows that repeat the boxes of an earlier row of their frame and class")
    annotations_dir = os.path.join(root, "annotations")
    classes_csv = os.path.join(annotations_dir, CLASSES_CSV)
    names, id_map = read_noun_classes(classes_csv)
    set_thing_classes(dataset_name, names, id_map, classes_csv)
    if split == "train":
        source = os.path.join(annotations_dir, LABELS_CSV)
        videos = _train_frames(source, id_map, participants, repeated)
        image_root = os.path.join(root, "object_detection_images", "train")
    elif split in TEST_VIDEO_LISTS:
        if participants is not None:
            raise DatasetError("participants selects rows of the train split only")
        source = os.path.join(annotations_dir, TEST_VIDEO_LISTS[split])
        videos = _test_frames(root, source)
        image_root = os.path.join(root, "object_detection_images", "test")
    else:
        raise DatasetError(f"split must be 'train', 'test_s1' or 'test_s2', got {split!r}")

    dropped, dicts = DroppedBoxes(), []
    for video, (participant, frames) in videos.items():
        dicts += _video_dicts(video, os.path.join(image_root, participant, video), frames, dropped)
    dropped.log(dataset_name or source)
    repeated.log(dataset_name or source)
    logger.info(f"Loaded {len(dicts)} frames of {len(videos)} videos from {source}")
    return dicts


def _load_registered(name: str, split: str, participants, root: Optional[str]) -> List[dict]:
    root = root if root is not None else os.path.join(datasets_root(), "epic_kitchens")
    require_dir(root, f"Dataset '{name}': folder", _HINT)
    needed = [CLASSES_CSV, LABELS_CSV if split == "train" else TEST_VIDEO_LISTS[split]]
    for file_name in needed:
        path = os.path.join(root, "annotations", file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Dataset '{name}': annotation file {path} does not exist. {_HINT}")
    images = os.path.join(root, "object_detection_images", "train" if split == "train" else "test")
    require_dir(images, f"Dataset '{name}': image folder", _HINT)
    return load_epic_kitchens_55(root, split, participants=participants, dataset_name=name)


def register_epic_kitchens(root: Optional[str] = None):
    """Register the names of :data:`EPIC_KITCHENS_55_SPLITS`, rooted at ``root`` (default
    ``$DETECTRON2_DATASETS/epic_kitchens``, read when a dataset is loaded). Registering reads
    no file; the classes are recorded in the metadata when a dataset is loaded.

    ``epic_kitchens_55_train``: all training rows (the paper's training set, 272 videos of 28
    kitchens). ``epic_kitchens_55_test_s1``/``_s2``: seen/unseen kitchens, unlabelled (results go
    to the challenge server). ``epic_kitchens_55_train_p01_p25``/``epic_kitchens_55_val``: the
    training participants P01-P25 / P26-P31 (Baradel et al.'s split) for local evaluation.
    """
    for name, (split, participants) in EPIC_KITCHENS_55_SPLITS.items():
        DatasetCatalog.register(name, partial(_load_registered, name, split, participants, root))
        MetadataCatalog.get(name).set(evaluator_type="vid")
