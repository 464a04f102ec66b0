#!/usr/bin/env python
"""
Detect objects in a video file and write it back annotated:

    python tools/demo_video.py --config-file configs/toy/troi.yaml --input in.mp4 --output out.mp4 \
        [--json detections.json] [--online] [--confidence 0.5] --opts MODEL.WEIGHTS model_final.pth
"""
import argparse
import json
import os
import sys

import cv2
from detectron2.data import MetadataCatalog
from detectron2.utils.visualizer import Visualizer
from tqdm import tqdm

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.predictor import VideoPredictor


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", required=True, help="a video file readable by OpenCV")
    parser.add_argument("--output", required=True, help="annotated video to write (.mp4)")
    parser.add_argument("--json", help="also write the detections of every frame as JSON")
    parser.add_argument("--online", action="store_true", help="use past frames only (streams)")
    parser.add_argument("--confidence", type=float, default=0.5, help="score threshold for drawing")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE ...")
    return parser.parse_args(argv)


def read_frames(path, max_frames=None):
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file")
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        sys.exit(f"{path}: OpenCV could not decode any frame (not a video, or an unsupported codec)")
    return frames, fps


def main(argv=None):
    args = parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    frames, fps = read_frames(args.input, args.max_frames)
    predictor = VideoPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
    predictions = predictor.predict_stream(frames) if args.online else predictor.predict_video(frames)
    height, width = frames[0].shape[:2]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    detections = []
    for index, (frame, instances) in enumerate(tqdm(zip(frames, predictions), total=len(frames), desc="frames")):
        shown = instances[instances.scores >= args.confidence]
        writer.write(Visualizer(frame[:, :, ::-1], metadata).draw_instance_predictions(shown).get_image()[:, :, ::-1])
        detections.append({
            "frame": index,
            "boxes": instances.pred_boxes.tensor.tolist(),
            "scores": instances.scores.tolist(),
            "classes": instances.pred_classes.tolist(),
        })
    writer.release()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(detections, f)
    print(f"Wrote {len(frames)} annotated frames to {os.path.abspath(args.output)}")
    if args.json:
        print(f"Wrote detections to {os.path.abspath(args.json)}")


if __name__ == "__main__":
    main()
