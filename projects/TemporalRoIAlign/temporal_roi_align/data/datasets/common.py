"""Helpers shared by the video dataset loaders and the mapper."""

import json
import logging
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from PIL import Image

__all__ = ["DatasetError", "datasets_root", "frame_file_name", "frame_record", "compact_frame_list", "frame_pattern"]

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset's files cannot be read as what they claim to be: the message names the file and the
    reason. The tools end with the message instead of a traceback."""


# A video's frames: a `str.format` pattern taking the 0-based frame index, or the file names.
VideoFrames = Union[str, Sequence[str]]

_NUMBERED_FILE = re.compile(r"^(.*?)(\d+)(\.[^./\\]+)$")


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS``, default ``./datasets`` (read at call time, not at import)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def frame_file_name(dataset_dict: dict, index: int) -> str:
    """File name of frame ``index`` (0-based) of the video that ``dataset_dict`` belongs to."""
    frames = dataset_dict["video_frames"]
    if not 0 <= index < dataset_dict["video_length"]:
        raise IndexError(
            f"frame {index} is outside video {dataset_dict['video_id']!r} of {dataset_dict['video_length']} frames"
        )
    if isinstance(frames, str):
        return frames.format(index)
    return frames[index]


def frame_record(
    file_name: str,
    image_id,
    height: int,
    width: int,
    *,
    video_id,
    frame_id: int,
    video_length: int,
    video_frames: VideoFrames,
    annotations: Optional[List[dict]] = None,
) -> dict:
    """The dataset dict of one video frame, as every loader of this package makes it: Detectron2's
    fields plus ``video_id``, ``frame_id`` (0-based), ``video_length`` and ``video_frames`` (see
    :func:`frame_file_name`). ``annotations`` is left out when None (splits without labels)."""
    record = {
        "file_name": file_name,
        "image_id": image_id,
        "height": height,
        "width": width,
        "video_id": video_id,
        "frame_id": frame_id,
        "video_length": video_length,
        "video_frames": video_frames,
    }
    if annotations is not None:
        record["annotations"] = annotations
    return record


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def frame_pattern(directory: str, digits: int, extension: str) -> str:
    """Pattern of frames named like ``<directory>/000000.JPEG`` (``digits`` zero-padded)."""
    return os.path.join(_escape(directory), "{:0%dd}" % digits) + _escape(extension)


def compact_frame_list(file_names: Sequence[str]) -> VideoFrames:
    """A pattern when the files are numbered 0, 1, 2, ... (same prefix, padding and extension),
    else a tuple of the names. Patterns keep each dataset dict small however long its video."""
    matches = [_NUMBERED_FILE.match(f) for f in file_names]
    if file_names and all(matches):
        prefix, first, ext = matches[0].groups()
        if all(m.group(1) == prefix and m.group(3) == ext for m in matches):
            numbers = [m.group(2) for m in matches]
            # Width 1 covers unpadded numbers too: "%01d" % 10 == "10".
            if numbers == ["%0*d" % (len(first), i) for i in range(len(numbers))]:
                return _escape(prefix) + "{:0%dd}" % len(first) + _escape(ext)
    return tuple(file_names)


def clip_box(box: Sequence[float], width: int, height: int) -> Optional[List[float]]:
    """Clip an XYXY box to the image; None when nothing of it is left inside."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1, y1]


class CountedWarning:
    """Counts entries a loader leaves out (or mends) for one reason and logs one warning per dataset
    with the count and the first of them. ``what`` says what happened, with ``{count}``."""

    def __init__(self, what: str):
        self.what = what
        self.count = 0
        self.example: Optional[Tuple[str, str]] = None

    def add(self, source: str, detail: str):
        self.count += 1
        if self.example is None:
            self.example = (source, detail)

    def log(self, dataset: str):
        if self.count:
            source, detail = self.example
            logger.warning(f"{dataset}: {self.what.format(count=self.count)} (first: {detail} in {source})")


class DroppedBoxes(CountedWarning):
    """Boxes dropped while loading a dataset because nothing of them is left inside the image."""

    def __init__(self):
        super().__init__("dropped {count} instances whose box has no area inside the image or whose mask is empty")

    def add(self, source: str, box: Sequence[float]):
        super().add(source, f"box {list(box)}")


_EXIF_ORIENTATION = 0x0112


def image_size(path: str, where: str) -> Tuple[int, int]:
    """(height, width) of an image as Detectron2's ``read_image`` returns it, from its header
    only (the pixels are not decoded). ``where`` names what needs the image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(_EXIF_ORIENTATION)
            except Exception:  # Detectron2 ignores unreadable EXIF data alike
                orientation = None
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: image {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for broken files
        raise OSError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    if orientation in (5, 6, 7, 8):  # transposed or rotated by 90 degrees
        height, width = width, height
    return height, width


def require_dir(path: str, what: str, hint: str = ""):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} {path} does not exist." + (f" {hint}" if hint else ""))


def load_json(json_file: str) -> Dict:
    """The JSON object (a dict) in ``json_file``; UTF-8, with or without a byte order mark."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file}: annotation file does not exist")
    try:
        with open(json_file, encoding="utf-8-sig") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{json_file}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file}: expected a JSON object with the dataset's lists, got a {_json_type(data)}")
    return data


def _json_type(value) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), "number")


def json_objects(values, name: str, source: str) -> List[dict]:
    """``values`` (the JSON list ``name``), checked to hold objects only."""
    for i, value in enumerate(values):
        if not isinstance(value, dict):
            raise DatasetError(f"{source}: {name}[{i}] must be an object, got {_json_type(value)}")
    return values


def positive_int(value, what: str, source: str) -> int:
    """``value`` as an int when it is a whole positive number (not a string, not a boolean)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DatasetError(f"{source}: {what} must be a positive integer, got {value!r}")
    return value


def finite_numbers(values, count: int, what: str, source: str) -> List[float]:
    """``values`` as ``count`` floats, refusing anything else, NaN and infinities: a non-finite
    ground-truth coordinate would change the metrics without a word."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not all(map(math.isfinite, numbers)):
        raise DatasetError(f"{source}: {what} must be {count} finite numbers, got {values!r}")
    return numbers


def read_text_lines(path: str) -> List[Tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 text file (a leading byte order mark, as
    some editors write, is dropped); a line that is not UTF-8 is a ValueError naming it."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            lines.append((number, line.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise DatasetError(
                f"{path}:{number}: not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1})"
            ) from None
    return lines


def count_numbered_frames(directory: str, digits: int, extension: str) -> Tuple[int, Optional[str]]:
    """How many frames ``<directory>/000000<extension>``, ``000001...`` (``digits`` wide) the
    folder holds (one listing, no file opened), and the first missing file name when the
    numbers have a gap (then the count is of the frames before it)."""
    pattern = re.compile(r"\d{%d}%s" % (digits, re.escape(extension)))
    names = {n for n in os.listdir(directory) if pattern.fullmatch(n)}
    for index in range(len(names)):
        name = "%0*d%s" % (digits, index, extension)
        if name not in names:
            return index, name
    return len(names), None


def contiguous_categories(categories: Sequence[dict], source: str) -> Tuple[List[str], Dict[int, int]]:
    """Class names and JSON category id -> contiguous 0-based id, sorted by JSON id. An id given
    twice is a ValueError (it would shift the labels of the classes after it)."""
    try:
        cats = sorted(categories, key=lambda c: c["id"])
        names = [c["name"] for c in cats]
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{source}: each category needs an 'id' and a 'name' ({e!r})") from e
    for first, second in zip(cats, cats[1:]):
        if first["id"] == second["id"]:
            raise DatasetError(
                f"{source}: category id {first['id']!r} appears twice ({first['name']!r}, {second['name']!r})"
            )
    return names, {c["id"]: i for i, c in enumerate(cats)}


def crowd_flag(value, source: str) -> int:
    """A JSON ``iscrowd`` as 0 or 1 (also ``false``/``true``); anything else is a ValueError: the
    protocols read any true value as a crowd, training keeps only 0."""
    if value in (0, 1) and isinstance(value, (int, bool)):
        return int(value)
    raise DatasetError(f"{source}: iscrowd must be 0 or 1, got {value!r}")


def set_thing_classes(dataset_name: Optional[str], names: List[str], id_map: Dict[int, int], source: str):
    """Record the classes of a JSON dataset in its metadata, refusing a conflicting list."""
    if dataset_name is None:
        return
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    registered = getattr(meta, "thing_classes", None)
    if registered is not None and list(registered) != names:
        raise DatasetError(
            f"{source}: categories {names} differ from the classes registered for '{dataset_name}' ({list(registered)})"
        )
    if registered is None:
        meta.thing_classes = names
    if getattr(meta, "thing_dataset_id_to_contiguous_id", None) is None:
        meta.thing_dataset_id_to_contiguous_id = id_map
