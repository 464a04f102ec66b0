#!/usr/bin/env python
"""
Detect objects in a video and write it back annotated:

    python tools/demo_video.py --config-file configs/toy/troi.yaml --input in.mp4 --output out.mp4 \\
        [--json detections.jsonl] [--online] [--confidence 0.5] --opts MODEL.WEIGHTS model_final.pth

--input: a video file (frames that cannot be decoded are left out and counted), a folder of
frames (image files in natural name order, frame_2 before frame_10; a frame of another size
than the first is resized to it) or, with --online, a camera index (e.g. 0). --output: a video
file (.mp4 or .avi) or a folder, which receives one JPEG per frame. --json: one JSON line per
frame (its number in the input, boxes, scores, classes and the names of the classes in the
config's datasets); for video instance segmentation models (masks drawn in one colour per
track) also <json>_videos.json, the tracks in the YouTube-VIS results format with the dataset's
category ids and --video-id, which evaluate_ytvis scores.

The video and the JSON lines are written as <name>.partial<ext> and renamed when the run ends:
a failed or interrupted run leaves earlier outputs as they were, and its work in the partial
files. Frames stream through a bounded window (the model's feature cache): memory does not grow
with the length of the video. Every output is checked before the first frame is read.
"""

import argparse
import collections
import itertools
import json
import os
import sys
from collections.abc import Sequence

import cv2
from tqdm import tqdm

from temporal_roi_align.checkpoint import CheckpointError
from temporal_roi_align.engine import HelpFormatter, add_import_argument, import_modules, setup_cfg
from temporal_roi_align.evaluation.ytvis_evaluation import encode_masks, to_ytvis_records
from temporal_roi_align.predictor import VideoPredictor
from temporal_roi_align.utils import atomic_write
from temporal_roi_align.utils.drawing import draw_instances
from temporal_roi_align.utils.video_io import camera_frames, open_frames

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of frames, got {value}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", required=True, help="a video file, a folder of frames, or (--online) a camera index")
    parser.add_argument(
        "--output", required=True, help="annotated video to write (.mp4, .avi) or a folder for JPEG frames"
    )
    parser.add_argument("--json", help="also write the detections, one JSON line per frame")
    parser.add_argument("--online", action="store_true", help="use past frames only (streams, cameras)")
    parser.add_argument("--confidence", type=float, default=0.5, help="score threshold for drawing")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames")
    parser.add_argument(
        "--video-id",
        type=int,
        default=0,
        help="video_id of the tracks in <json>_videos.json: the video's id in the dataset's JSON, to score them",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="run with weights that leave parameters uninitialised, or none (random weights)",
    )
    add_import_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE ...")
    return parser.parse_args(argv)


def open_input(args):
    if args.input.isdigit() and not os.path.exists(args.input):
        if not args.online:
            raise SystemExit(f"--input {args.input}: a camera is a live stream; add --online")
        return camera_frames(int(args.input), args.max_frames), 25.0
    try:
        frames = open_frames(args.input, args.max_frames)
    except (OSError, ValueError) as e:
        raise SystemExit(str(e)) from None
    return frames, frames.fps


class StagedFile:
    """An output written as ``<name>.partial<ext>`` next to ``path`` and renamed to ``path`` by
    :meth:`commit`: a run that fails or is killed leaves ``path`` as it was (its work stays in
    the partial file)."""

    def __init__(self, path):
        stem, extension = os.path.splitext(path)
        self.path, self.partial = path, f"{stem}.partial{extension}"

    def commit(self):
        os.replace(self.partial, self.path)


class FrameWriter:
    """Annotated frames to a video file (.mp4, .avi), staged (see :class:`StagedFile`), or to a
    folder of JPEGs, each written whole; a video is opened on the first frame (the frame size is
    known then). :func:`check_output` checks the path first."""

    def __init__(self, path, fps):
        self.path, self.fps = path, fps
        self.to_folder = os.path.isdir(path) or not os.path.splitext(path)[1]
        self.staged = None if self.to_folder else StagedFile(path)
        self._writer, self.count = None, 0

    def write(self, frame):
        if self.to_folder:
            name = os.path.join(self.path, f"{self.count:06d}.jpg")
            ok, data = cv2.imencode(".jpg", frame)
            if not ok:
                raise SystemExit(f"{name}: OpenCV cannot encode the frame as JPEG")
            with atomic_write(name, "wb") as f:
                f.write(data.tobytes())
        else:
            if self._writer is None:
                codec = VIDEO_CODECS[os.path.splitext(self.path)[1].lower()]
                height, width = frame.shape[:2]
                self._writer = cv2.VideoWriter(
                    self.staged.partial, cv2.VideoWriter_fourcc(*codec), self.fps, (width, height)
                )
                if not self._writer.isOpened():
                    raise SystemExit(f"{self.staged.partial}: OpenCV cannot write this video ({codec})")
            self._writer.write(frame)
        self.count += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()


class Outputs:
    """The annotated frames (:class:`FrameWriter`) and the JSON lines, as a context: staged files
    are renamed to their paths when the block ends well; otherwise their partial files are left
    with what was done, and said so (a frame that cannot be read ends the demo with its message)."""

    def __init__(self, args, fps):
        self.writer = FrameWriter(args.output, fps)
        json_lines = StagedFile(args.json) if args.json else None
        self.staged = [f for f in (self.writer.staged, json_lines) if f]
        self.json_file = open(json_lines.partial, "w") if json_lines else None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.writer.close()
        if self.json_file:
            self.json_file.close()
        if kind is None:
            for f in self.staged:
                f.commit()
            return
        count = self.writer.count
        stopped = f"Stopped after {count} frame{'' if count == 1 else 's'}"
        kept = [f for f in self.staged if os.path.exists(f.partial)]
        if kept:
            stopped += (
                f"; they are in {' and '.join(f.partial for f in kept)}, "
                f"{' and '.join(f.path for f in kept)} left as they were"
            )
        if issubclass(kind, OSError):
            raise SystemExit(f"{error}\n{stopped}") from None
        print(stopped, file=sys.stderr)


def check_output(args):
    """Every output checked before any work: a path that cannot be written stops the demo now."""
    inputs = {os.path.realpath(args.input)}
    for path in filter(None, (args.output, args.json)):
        if os.path.realpath(path) in inputs:
            raise SystemExit(f"{path}: an output cannot be the input")
    if args.json and os.path.realpath(args.json) == os.path.realpath(args.output):
        raise SystemExit(f"{args.json}: --json and --output must be different files")
    output = args.output
    if os.path.isdir(output) or not os.path.splitext(output)[1]:
        os.makedirs(output, exist_ok=True)
    else:
        extension = os.path.splitext(output)[1].lower()
        if extension not in VIDEO_CODECS:
            raise SystemExit(
                f"{output}: cannot write '{extension}' videos; use {' or '.join(VIDEO_CODECS)}, "
                "or a folder for JPEG frames"
            )
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise SystemExit(f"{args.json}: folder {folder} does not exist")


def frame_record(frame_id, instances, class_names):
    record = {
        "frame": frame_id,
        "boxes": instances.pred_boxes.tensor.tolist(),
        "scores": instances.scores.tolist(),
        "classes": instances.pred_classes.tolist(),
    }
    if class_names:
        record["class_names"] = [class_names[c] for c in record["classes"]]
    if instances.has("pred_track_ids"):
        record["track_ids"] = instances.pred_track_ids.tolist()
    if instances.has("pred_masks"):
        record["masks"] = encode_masks(instances.pred_masks)
    return record


class DetectionCount:
    """How many frames had a detection drawn (above --confidence), and the highest score."""

    def __init__(self, confidence):
        self.confidence, self.frames, self.drawn, self.highest = confidence, 0, 0, None

    def add(self, instances):
        self.frames += 1
        if len(instances):
            self.drawn += int((instances.scores >= self.confidence).any())
            top = float(instances.scores.max())
            self.highest = top if self.highest is None else max(self.highest, top)

    def summary(self, score_threshold):
        highest = (
            f"highest score {self.highest:.2f}"
            if self.highest is not None
            else f"no detection at all above MODEL.ROI_HEADS.SCORE_THRESH_TEST {score_threshold}"
        )
        return f"{self.drawn} of {self.frames} frames had a detection above --confidence {self.confidence} ({highest})"


def annotate(pairs, frame_ids, outputs, metadata, count):
    """Draws each frame's detections above --confidence and writes its JSON line; yields the
    frame's outputs."""
    names = metadata.get("thing_classes", None)
    for (frame, output), frame_id in zip(pairs, frame_ids):
        instances = output["instances"]
        outputs.writer.write(draw_instances(frame, instances[instances.scores >= count.confidence], metadata))
        count.add(instances)
        if outputs.json_file:
            outputs.json_file.write(json.dumps(frame_record(frame_id, instances, names)) + "\n")
            outputs.json_file.flush()
        yield output


def main(argv=None):
    args = parse_args(argv)
    check_output(args)
    import_modules(args.modules)
    cfg = setup_cfg(args.config_file, args.opts)
    frames, fps = open_input(args)
    try:
        predictor = VideoPredictor(cfg, allow_partial_weights=args.allow_partial_weights)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    metadata = predictor.metadata
    if args.online:
        shown_frames = []

        def remember(stream):
            for frame in stream:
                shown_frames.append(frame)  # the frame the next result belongs to
                yield frame

        pairs = ((shown_frames.pop(0), output) for output in predictor.predict_stream(remember(iter(frames))))
        total = len(frames) if isinstance(frames, Sequence) else args.max_frames
    else:
        pairs = ((frames[i], output) for i, output in enumerate(predictor.iter_video(frames)))
        total = len(frames)
    # A camera has no frame numbers: its frames are 0, 1, 2, ...
    frame_ids = getattr(frames, "frame_ids", None)
    count = DetectionCount(args.confidence)
    with Outputs(args, fps) as outputs:
        annotated = annotate(
            tqdm(pairs, total=total, desc="frames"),
            itertools.count() if frame_ids is None else frame_ids,
            outputs,
            metadata,
            count,
        )
        first = next(annotated, None)
        annotated = itertools.chain([] if first is None else [first], annotated)
        if args.json and first is not None and first["instances"].has("pred_track_ids"):
            num_frames = getattr(frames, "num_source_frames", None)
            records = to_ytvis_records(annotated, args.video_id, metadata, frame_ids=frame_ids, num_frames=num_frames)
        else:
            records = None
            collections.deque(annotated, maxlen=0)
    writer = outputs.writer
    where = "JPEG frames in" if writer.to_folder else "annotated frames to"
    print(f"Wrote {writer.count} {where} {os.path.abspath(args.output)}")
    for problem in getattr(frames, "problems", []):
        print(problem)
    print(count.summary(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST))
    if args.json:
        print(f"Wrote detections of {writer.count} frames to {os.path.abspath(args.json)}")
    if records is not None:
        path = os.path.splitext(args.json)[0] + "_videos.json"
        with atomic_write(path) as f:
            json.dump(records, f)
        print(
            f"Wrote {len(records)} tracks of video_id {args.video_id} in the YouTube-VIS results format to "
            f"{os.path.abspath(path)}"
        )


if __name__ == "__main__":
    sys.exit(main())
