"""Frames of a video from a file, a folder of frames or a camera, read on demand, and the one
reader of frame image files (training, evaluation, tools/check_dataset.py, the demo)."""

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Iterator, List, Optional, Union

import cv2
import numpy as np
from detectron2.data import detection_utils
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "VideoFileFrames",
    "FolderFrames",
    "camera_frames",
    "natural_sort_key",
    "open_frames",
    "read_frame",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# PIL's modes of one-channel images deeper than 8 bits (16-bit PNGs are "I;16" or "I").
_DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_frame(file_name: str, image_format: str = "BGR") -> np.ndarray:
    """An image file as Detectron2's ``read_image`` returns it (HxWxC uint8 in ``image_format``,
    EXIF orientation applied), whatever its bit depth.

    The format is the file's content, not its extension (PNG data named ``.JPEG`` reads as PNG).
    A 16-bit grayscale image, which ``read_image`` clips to white, keeps its high byte, as PIL
    reads 16-bit colour images and OpenCV any 16-bit image; grayscale becomes 3 equal channels
    and an alpha channel is dropped, as ``read_image`` does. Errors name the file and the reason:
    ``FileNotFoundError``, or ``OSError`` for an unreadable, truncated or unsupported image.
    """
    try:
        with Image.open(file_name) as image:
            image = detection_utils._apply_exif_orientation(image)
            if image.mode in _DEEP_GRAY_MODES:
                pixels = np.asarray(image)
                if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 65535:
                    raise OSError(f"{image.mode} image with values outside 0..65535: not a 16-bit frame")
                image = Image.fromarray((pixels >> 8).astype(np.uint8), "L")
            return detection_utils.convert_PIL_to_numpy(image, image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file_name}: image file does not exist") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken or truncated files
        raise OSError(f"{file_name}: cannot read image ({type(e).__name__}: {e})") from e


def natural_sort_key(name: str):
    """Sort key putting numbers in names in numeric order: frame_2 before frame_10."""
    parts = re.split(r"(\d+)", name)  # text at even positions, digits at odd ones
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], name


def _ranges(numbers: List[int]) -> str:
    """``[3, 4, 5, 9]`` as "3-5, 9"."""
    spans = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


class VideoFileFrames(Sequence):
    """The frames of a video file with random access, decoded on demand: a sequential read costs
    one decode, a jump one seek; the last few frames decoded are kept (a frame is read again
    to be drawn right after the model read it).

    Frames that cannot be decoded (a damaged part of the file, up to the frame count the file
    declares) are left out with a warning: ``frame_ids`` holds each frame's number in the file,
    ``problems`` says which were left out. A damaged file is decoded from its start for a jump
    back (seeking in it does not find the same frames)."""

    recent_frames = 4

    def __init__(self, path, max_frames=None):
        self.path = path
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this file as a video")
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or negative when unknown
        self.frame_ids, self.undecodable = [], []
        number = 0
        while max_frames is None or len(self.frame_ids) < max_frames:
            if capture.grab():  # counts without converting
                self.frame_ids.append(number)
            elif number < declared:
                self.undecodable.append(number)
            else:
                break
            number += 1
        capture.release()
        if not self.frame_ids:
            raise ValueError(f"{path}: OpenCV could not decode any frame (not a video, or an unsupported codec)")
        for problem in self.problems:
            logger.warning(problem)
        self._capture = cv2.VideoCapture(path)
        self._next = 0  # the number of the frame the capture reads next
        self._recent = OrderedDict()

    @property
    def num_source_frames(self) -> int:
        """The frames read from the file, those left out included."""
        return len(self.frame_ids) + len(self.undecodable)

    @property
    def problems(self) -> List[str]:
        """What reading left out, one sentence per kind of fault."""
        if not self.undecodable:
            return []
        return [
            f"{self.path}: {len(self.undecodable)} of {self.num_source_frames} frames could not be decoded "
            f"and are left out (frames {_ranges(self.undecodable)})"
        ]

    def __len__(self):
        return len(self.frame_ids)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: frame {index} of {len(self)}")
        if index in self._recent:
            self._recent.move_to_end(index)
            return self._recent[index]
        number = self.frame_ids[index]
        if number != self._next:
            if not self.undecodable:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, number)
            else:
                if number < self._next:
                    self._capture.release()
                    self._capture, self._next = cv2.VideoCapture(self.path), 0
                for _ in range(number - self._next):
                    self._capture.grab()
        ok, frame = self._capture.read()
        if not ok:
            raise OSError(f"{self.path}: could not decode frame {number}")
        self._next = number + 1
        self._recent[index] = frame
        if len(self._recent) > self.recent_frames:
            self._recent.popitem(last=False)
        return frame


class FolderFrames(Sequence):
    """The image files of a folder, in natural name order (frame_2 before frame_10). The frames
    of a video share one size: a frame of another size than the first is resized to it, with a
    warning (``problems`` counts them)."""

    fps = 25.0

    def __init__(self, path, max_frames=None):
        names = sorted((f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)), key=natural_sort_key)
        if not names:
            raise ValueError(f"{path}: folder holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
        self.files = [os.path.join(path, f) for f in names[:max_frames]]
        self.frame_ids = range(len(self.files))
        self.num_source_frames = len(self.files)
        self._resized = set()
        self.size = read_frame(self.files[0], "BGR").shape[:2]

    @property
    def problems(self) -> List[str]:
        """What reading changed, one sentence per kind of fault."""
        if not self._resized:
            return []
        height, width = self.size
        examples = ", ".join(os.path.basename(self.files[i]) for i in sorted(self._resized)[:3])
        return [
            f"{len(self._resized)} of the {len(self.files)} frames in {os.path.dirname(self.files[0])} "
            f"were resized to {width}x{height}, the size of the first (e.g. {examples})"
        ]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        frame = read_frame(self.files[index], "BGR")
        if frame.shape[:2] != self.size:
            height, width = self.size
            if not self._resized:
                logger.warning(
                    f"{self.files[index]}: {frame.shape[1]}x{frame.shape[0]}, not {width}x{height} like the first "
                    "frame; frames of another size are resized to it"
                )
            self._resized.add(index)
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        return frame


def camera_frames(index: int, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """The frames of camera ``index`` as they come (at most ``max_frames``)."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise OSError(f"camera {index}: OpenCV cannot open it")
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        yield frame
    capture.release()


def open_frames(path: str, max_frames: Optional[int] = None) -> Union[VideoFileFrames, FolderFrames]:
    """The BGR frames of a video file or of a folder of frames (in natural name order), at most
        ``max_frames``, as a sequence with random access; errors name the path. ``frame_ids`` gives
        each frame's number in its source, ``num_source_frames`` the frames in the source (read
    ones, or left out), ``problems`` what reading left out or changed."""
    if os.path.isdir(path):
        return FolderFrames(path, max_frames)
    if os.path.isfile(path):
        return VideoFileFrames(path, max_frames)
    raise FileNotFoundError(f"{path}: no such file or folder")
