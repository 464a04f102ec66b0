#!/usr/bin/env python
"""
Detect objects in a video and write it back annotated:

    python tools/demo_video.py --config-file configs/toy/troi.yaml --input in.mp4 --output out.mp4 \
        [--json detections.jsonl] [--online] [--confidence 0.5] --opts MODEL.WEIGHTS model_final.pth

--input: a video file, a folder of frames (image files in name order, as ImageNet VID stores
them) or, with --online, a camera index (e.g. 0). --output: a video file (.mp4 or .avi) or a
folder, which receives one JPEG per frame. --json: one JSON line per frame, written as frames
are done; for video instance segmentation models (masks drawn in one colour per track) also
<json>_videos.json, the tracks in the per-video format of the YouTube-VIS evaluation. Frames
stream through a bounded window (the model's feature cache): memory does not grow with the
length of the video. Every output is checked before the first frame is read.
"""

import argparse
import json
import os
import sys

import cv2
from detectron2.data import MetadataCatalog
from tqdm import tqdm

from temporal_roi_align.checkpoint import CheckpointError
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.evaluation.ytvis_evaluation import encode_masks, video_predictions
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        "--allow-partial-weights",
        action="store_true",
        help="run with weights that leave parameters uninitialised, or none (random weights)",
    )
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE ...")
    return parser.parse_args(argv)


def open_input(args):
    if args.input.isdigit() and not os.path.exists(args.input):
        if not args.online:
            raise SystemExit(f"--input {args.input}: a camera is a live stream; add --online")
        return camera_frames(int(args.input), args.max_frames), 25.0
    try:
        frames = open_frames(args.input, args.max_frames)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    return frames, frames.fps


class FrameWriter:
    """Annotated frames to a video file (.mp4, .avi) or to a folder of JPEGs, opened on the
    first frame (the frame size is known then); :func:`check_output` checks the path first."""

    def __init__(self, path, fps):
        self.path, self.fps = path, fps
        self.to_folder = os.path.isdir(path) or not os.path.splitext(path)[1]
        self._writer, self.count = None, 0

    def write(self, frame):
        if self.to_folder:
            name = os.path.join(self.path, f"{self.count:06d}.jpg")
            if not cv2.imwrite(name, frame):
                raise SystemExit(f"{name}: cannot write image")
        else:
            if self._writer is None:
                codec = VIDEO_CODECS[os.path.splitext(self.path)[1].lower()]
                height, width = frame.shape[:2]
                self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
                if not self._writer.isOpened():
                    raise SystemExit(f"{self.path}: OpenCV cannot write this video ({codec})")
            self._writer.write(frame)
        self.count += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()


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


def frame_record(index, instances):
    record = {
        "frame": index,
        "boxes": instances.pred_boxes.tensor.tolist(),
        "scores": instances.scores.tolist(),
        "classes": instances.pred_classes.tolist(),
    }
    if instances.has("pred_track_ids"):
        record["track_ids"] = instances.pred_track_ids.tolist()
    if instances.has("pred_masks"):
        record["masks"] = encode_masks(instances.pred_masks)
    return record


def write_video_results(path, records, num_frames):
    """The per-video results of a video instance segmentation model, as YTVISEvaluator writes
    them (one entry per track: video_id 0, score, category_id, a mask or null per frame)."""
    frames = [
        {
            "video_id": 0,
            "frame_id": r["frame"],
            "detections": list(zip(r["track_ids"], r["classes"], r["scores"], r["masks"])),
        }
        for r in records
    ]
    predictions, _ = video_predictions(frames, {0: num_frames})
    with atomic_write(path) as f:
        json.dump(predictions, f)


def main(argv=None):
    args = parse_args(argv)
    check_output(args)
    cfg = setup_cfg(args.config_file, args.opts)
    frames, fps = open_input(args)
    try:
        predictor = VideoPredictor(cfg, check_weights=True, allow_partial_weights=args.allow_partial_weights)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
    if args.online:
        frames = iter(frames)
        shown_frames, source = [], frames

        def remember(stream):
            for frame in stream:
                shown_frames.append(frame)  # the frame the next result belongs to
                yield frame

        predictions = predictor.predict_stream(remember(source))
        pairs = ((shown_frames.pop(0), instances) for instances in predictions)
        total = args.max_frames
    else:
        predictions = predictor.predict_video(frames)
        pairs = ((frames[i], instances) for i, instances in enumerate(predictions))
        total = len(frames)
    writer = FrameWriter(args.output, fps)
    json_file = open(args.json, "w") if args.json else None
    tracked = []  # per-frame records of a video instance segmentation model, for its per-video results
    try:
        for index, (frame, instances) in enumerate(tqdm(pairs, total=total, desc="frames")):
            writer.write(draw_instances(frame, instances[instances.scores >= args.confidence], metadata))
            if json_file:
                record = frame_record(index, instances)
                if "track_ids" in record:
                    tracked.append(record)
                json_file.write(json.dumps(record) + "\n")
                json_file.flush()
    finally:
        writer.close()
        if json_file:
            json_file.close()
    where = "JPEG frames in" if writer.to_folder else "annotated frames to"
    print(f"Wrote {writer.count} {where} {os.path.abspath(args.output)}")
    if args.json:
        print(f"Wrote detections of {writer.count} frames to {os.path.abspath(args.json)}")
    if tracked:
        path = os.path.splitext(args.json)[0] + "_videos.json"
        write_video_results(path, tracked, writer.count)
        print(f"Wrote the tracks as the YouTube-VIS evaluation's per-video results to {os.path.abspath(path)}")


if __name__ == "__main__":
    sys.exit(main())
