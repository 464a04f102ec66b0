#!/usr/bin/env python
"""
Export a video detector for deployment, as Detectron2's tools/deploy/export_model.py exports its
detectors: traced with Detectron2's TracingAdapter, to TorchScript or ONNX (docs/export.md).

    python tools/export_model.py --config-file configs/toy/troi.yaml --format onnx \\
        --output output/export/troi MODEL.WEIGHTS output/quickstart/vid/troi/model_final.pth
    python tools/export_model.py --config-file ... --sample-video in.mp4 --output ... MODEL.WEIGHTS ...

Exports VideoRCNN detectors without SELSA heads: the single-frame detector, Temporal RoI Align,
TAM; other models are refused with the reason. The model is traced on the CPU, on one frame group
of the sample: the middle frame of --sample-video (a video file or a folder of frames; without
it, generated frames of noise at the config's test size) and its INPUT.SUPPORT.NUM_TEST supports
chosen by the test rule, resized as VideoPredictor resizes them. The exported model takes that
many supports; any image size. It is then run on that frame group and on the first frame's and
compared with the eager model: the tool exits with 1 if their detections differ.

Writes <output>/model.ts (and Detectron2's dump of its code and graphs) or <output>/model.onnx.
"""

import argparse
import os
import warnings

import numpy as np
import torch

from temporal_roi_align.checkpoint import CheckpointError
from temporal_roi_align.engine import HelpFormatter, add_import_argument, errors_as_messages, import_modules, setup_cfg
from temporal_roi_align.export import (
    FORMATS,
    OUTPUT_NAMES,
    ExportedModel,
    ExportError,
    check_exportable,
    detectron2_export,
    eager_outputs,
    export_model,
    frame_group_inputs,
    input_names,
    max_differences,
)
from temporal_roi_align.predictor import VideoPredictor
from temporal_roi_align.utils.video_io import open_frames

# How far the exported model's detections may be from the eager model's: float rounding of
# another runtime (onnxruntime, TorchScript's fusions) moves boxes by about 1e-5 pixels.
BOX_TOLERANCE = 0.01  # pixels
SCORE_TOLERANCE = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=sorted(FORMATS), default="torchscript")
    parser.add_argument("--output", required=True, help="folder for the exported model")
    parser.add_argument(
        "--sample-video", help="video file or folder of frames to trace on (default: generated frames of noise)"
    )
    add_import_argument(parser)
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="export with weights that leave parameters uninitialised, or none (random weights)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    return parser.parse_args(argv)


def sample_frames(args, cfg):
    """The frames of --sample-video, or generated ones: noise at the config's test size, enough
    frames for two frame groups."""
    if args.sample_video is None:
        height = cfg.INPUT.MIN_SIZE_TEST or 480
        rng = np.random.default_rng(0)
        count = max(2, cfg.INPUT.SUPPORT.NUM_TEST + 1)
        return [rng.integers(0, 256, (height, height * 4 // 3, 3), dtype=np.uint8) for _ in range(count)]
    try:
        frames = open_frames(args.sample_video)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--sample-video {e}") from None
    if len(frames) == 0:
        raise SystemExit(f"--sample-video {args.sample_video}: no frame could be read")
    return frames


def main(argv=None):
    args = parse_args(argv)
    import_modules(args.modules)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"--output {args.output}: cannot create the folder ({e.strerror})") from None
    # Traced on the CPU: a trace records the device its inputs are moved to.
    cfg = setup_cfg(args.config_file, [*args.opts, "MODEL.DEVICE", "cpu"])
    try:
        predictor = VideoPredictor(cfg, allow_partial_weights=args.allow_partial_weights)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    model = predictor.model
    try:
        check_exportable(model)
    except ExportError as e:
        raise SystemExit(f"{args.config_file}: {e}") from None

    frames = sample_frames(args, cfg)
    indices = list(dict.fromkeys([len(frames) // 2, 0]))  # the middle frame's group is traced; both are checked
    groups = [frame_group_inputs(model, *predictor.frame_group(frames, i)) for i in indices]
    path = os.path.join(args.output, FORMATS[args.format])
    with warnings.catch_warnings():
        # Where a trace keeps a Python value; the comparison below checks the result instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        traced = export_model(model, groups[0], args.format, path)
    if traced is not None:
        detectron2_export().dump_torchscript_IR(traced, args.output)
    names = input_names(len(groups[0][0].get("supports", [])))
    inputs = ", ".join(names) if len(names) <= 3 else f"{names[0]}, {names[1]} ... {names[-1]}"
    print(
        f"Wrote {os.path.abspath(path)}: inputs {inputs} (float32 [3, H, W], {cfg.INPUT.FORMAT}, "
        f"resized as VideoPredictor does); outputs {', '.join(OUTPUT_NAMES)} at the input's resolution"
    )

    try:
        exported = ExportedModel(path)
    except ImportError as e:
        print(f"Not compared with the eager model: {e}")
        return
    problems = []
    for index, inputs in zip(indices, groups):
        d = max_differences(exported(inputs), eager_outputs(model, inputs))
        if d["detections"] != d["other_detections"]:
            problems.append(f"frame {index}: {d['detections']} detections, the eager model {d['other_detections']}")
            continue
        print(
            f"frame {index}: {d['detections']} detections, as the eager model; largest difference of a box "
            f"coordinate {d['boxes']:.2g} pixels, of a score {d['scores']:.2g}; {d['classes']} other classes"
        )
        if d["boxes"] > BOX_TOLERANCE or d["scores"] > SCORE_TOLERANCE or d["classes"]:
            problems.append(f"frame {index}: the detections differ from the eager model's")
    if problems:
        raise SystemExit(f"{path} does not give the eager model's detections on the sample: " + "; ".join(problems))


if __name__ == "__main__":
    with errors_as_messages():
        main()
