"""Frames of a video from a file, a folder of frames or a camera, read on demand, and the one
reader of frame image files (training, evaluation, tools/check_dataset.py, the demo)."""

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Iterator, Optional, Union

import cv2
import numpy as np
from detectron2.data import detection_utils
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "VideoFileFrames", "FolderFrames", "camera_frames", "open_frames", "read_frame"]

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


class VideoFileFrames(Sequence):
    """The frames of a video file with random access, decoded on demand: a sequential read costs
    one decode, a jump one seek; the last few frames decoded are kept (a frame is read again
    to be drawn right after the model read it)."""

    recent_frames = 4

    def __init__(self, path, max_frames=None):
        self.path = path
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this file as a video")
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        count = 0
        while (max_frames is None or count < max_frames) and capture.grab():  # counts without decoding
            count += 1
        capture.release()
        if count == 0:
            raise ValueError(f"{path}: OpenCV could not decode any frame (not a video, or an unsupported codec)")
        self._length = count
        self._capture = cv2.VideoCapture(path)
        self._next = 0
        self._recent = OrderedDict()

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if not 0 <= index < self._length:
            raise IndexError(f"{self.path}: frame {index} of {self._length}")
        if index in self._recent:
            self._recent.move_to_end(index)
            return self._recent[index]
        if index != self._next:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self._capture.read()
        if not ok:
            raise OSError(f"{self.path}: could not decode frame {index}")
        self._next = index + 1
        self._recent[index] = frame
        if len(self._recent) > self.recent_frames:
            self._recent.popitem(last=False)
        return frame


class FolderFrames(Sequence):
    """The image files of a folder, in name order."""

    fps = 25.0

    def __init__(self, path, max_frames=None):
        names = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ValueError(f"{path}: folder holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
        self.files = [os.path.join(path, f) for f in names[:max_frames]]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return read_frame(self.files[index], "BGR")


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
    """The BGR frames of a video file or of a folder of frames (in name order), at most
    ``max_frames``, as a sequence with random access; errors name the path."""
    if os.path.isdir(path):
        return FolderFrames(path, max_frames)
    if os.path.isfile(path):
        return VideoFileFrames(path, max_frames)
    raise FileNotFoundError(f"{path}: no such file or folder")
