#!/usr/bin/env python
"""
What Temporal RoI Align found, as in the paper's Fig. 6: for one proposal of a target frame, the
location of each support frame that Most Similar RoI Align takes for a chosen RoI cell, and the
temporal attention (TAFA) weight each frame gets.

    python tools/visualize_troi.py --config-file configs/toy/troi.yaml --input VIDEO_OR_FRAME_FOLDER \\
        --frame 12 [--proposal I] [--cell Y X | --background-cell | --heatmap] [--num-supports 4] \\
        --output troi.png --opts MODEL.WEIGHTS output/quickstart/vid/troi/model_final.pth

The target frame is drawn with the proposal (green; default: the proposal that overlaps the
highest-scoring detection most) and the chosen cell's region (red); each support frame with the
most similar locations of that cell (the first, largest, is the top-1), the title giving the
frame's attention weight averaged over the attention blocks and the top-1 cosine similarity.
The cell is the RoI's centre cell by default (an object cell, the figure's (a)), its top-left
corner cell with --background-cell (the figure's (b)), or --cell Y X; --heatmap shows, on each
support, where the top-1 locations of all the RoI's cells fall.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.structures import Boxes, pairwise_iou  # noqa: E402

from temporal_roi_align.checkpoint import CheckpointError  # noqa: E402
from temporal_roi_align.engine import HelpFormatter, add_import_argument, import_modules, setup_cfg  # noqa: E402
from temporal_roi_align.modeling import TemporalROIPooler  # noqa: E402
from temporal_roi_align.predictor import VideoPredictor  # noqa: E402
from temporal_roi_align.utils.video_io import open_frames  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", required=True, help="a video file or a folder of frames")
    parser.add_argument("--frame", type=int, required=True, help="index of the target frame")
    parser.add_argument("--proposal", type=int, default=None, help="index of the proposal among the target's")
    cell = parser.add_mutually_exclusive_group()
    cell.add_argument("--cell", type=int, nargs=2, metavar=("Y", "X"), help="the RoI cell (default: its centre)")
    cell.add_argument("--background-cell", action="store_true", help="the RoI's top-left corner cell")
    cell.add_argument("--heatmap", action="store_true", help="the top-1 locations of all the RoI's cells")
    parser.add_argument("--num-supports", type=int, default=4, help="support frames (spread over the video)")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="run with weights that leave parameters uninitialised, or none (random weights)",
    )
    add_import_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE ...")
    return parser.parse_args(argv)


def choose_proposal(proposals: Boxes, detections, scale: float, index):
    """``index``, or the proposal that overlaps the highest-scoring detection most."""
    if index is not None:
        if not 0 <= index < len(proposals):
            raise SystemExit(f"--proposal {index}: the target frame has {len(proposals)} proposals")
        return index
    if len(detections) == 0:
        raise SystemExit("the model detects nothing in this frame: pick a proposal with --proposal")
    best = detections.pred_boxes.tensor[detections.scores.argmax()][None] * scale
    return int(pairwise_iou(Boxes(best), proposals)[0].argmax())


def location_centre(location: int, map_width: int, stride: float, scale: float):
    """Centre, in the original frame, of a flat feature-map location."""
    y, x = divmod(int(location), map_width)
    return (x + 0.5) * stride / scale, (y + 0.5) * stride / scale


def main(argv=None):
    args = parse_args(argv)
    if args.num_supports < 1:
        raise SystemExit(f"--num-supports must be positive, got {args.num_supports}")
    import_modules(args.modules)
    cfg = setup_cfg(args.config_file, ["INPUT.SUPPORT.NUM_TEST", args.num_supports, *args.opts])
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise SystemExit(f"{args.output}: folder {os.path.dirname(os.path.abspath(args.output))} does not exist")
    try:
        frames = open_frames(args.input)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if not 0 <= args.frame < len(frames):
        raise SystemExit(f"--frame {args.frame}: {args.input} has {len(frames)} frames")
    try:
        predictor = VideoPredictor(cfg, allow_partial_weights=args.allow_partial_weights)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    model = predictor.model
    pooler = model.roi_heads.box_pooler
    if not isinstance(pooler, TemporalROIPooler):
        raise SystemExit(f"{args.config_file}: the model has no Temporal RoI Align (MODEL.TEMPORAL_ROI_ALIGN.ENABLED)")

    target, supports = predictor.frame_group(frames, args.frame)
    with torch.no_grad():
        detections = model([{**target, "supports": supports}])[0]["instances"].to("cpu")
        target_out, *support_outs = model.frame_outputs([target] + supports)
    scale = target["image"].shape[-1] / target["width"]  # resized / original
    proposals = target_out.proposals.proposal_boxes.to("cpu")
    index = choose_proposal(proposals, detections, scale, args.proposal)
    names = model.roi_heads.box_in_features
    found = pooler.inspect(
        [target_out.features[n][None] for n in names],
        [Boxes(proposals.tensor[index : index + 1].to(model.device))],
        [[torch.stack([s.features[n] for s in support_outs])] for n in names],
    )
    level = int(found.levels[0])
    stride = model.backbone.output_shape()[names[level]].stride
    map_height, map_width = found.map_sizes[level]
    cells_h, cells_w = found.locations.shape[2:4]
    cy, cx = args.cell if args.cell else ((0, 0) if args.background_cell else (cells_h // 2, cells_w // 2))
    if not (0 <= cy < cells_h and 0 <= cx < cells_w):
        raise SystemExit(f"--cell {cy} {cx}: the RoI has {cells_h}x{cells_w} cells")
    attention = found.attention[0]  # [T + 1, h, w]

    x0, y0, x1, y1 = (proposals.tensor[index] / scale).tolist()
    panels = [(args.frame, frames[args.frame])] + [(s["frame_id"], frames[s["frame_id"]]) for s in supports]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for column, (ax, (frame_id, frame)) in enumerate(zip(axes[0], panels)):
        ax.imshow(frame[:, :, ::-1])
        ax.set_xticks([])
        ax.set_yticks([])
        if column == 0:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", linewidth=2))
            if not args.heatmap:
                bw, bh = (x1 - x0) / cells_w, (y1 - y0) / cells_h
                ax.add_patch(plt.Rectangle((x0 + cx * bw, y0 + cy * bh), bw, bh, fill=False, color="red", linewidth=2))
            weight = attention[0].mean() if args.heatmap else attention[0, cy, cx]
            ax.set_title(f"target frame {frame_id}\nattention {weight:.2f}", fontsize=9)
            continue
        t = column - 1
        if args.heatmap:
            counts = np.bincount(found.locations[0, t, :, :, 0].flatten().numpy(), minlength=map_height * map_width)
            extent = (0, map_width * stride / scale, map_height * stride / scale, 0)
            ax.imshow(
                counts.reshape(map_height, map_width), cmap="hot", alpha=0.55, extent=extent, interpolation="nearest"
            )
            ax.set_xlim(0, frame.shape[1])
            ax.set_ylim(frame.shape[0], 0)
            ax.set_title(f"frame {frame_id}\nattention {attention[t + 1].mean():.2f}", fontsize=9)
            continue
        for rank, location in enumerate(found.locations[0, t, cy, cx].tolist()):
            px, py = location_centre(location, map_width, stride, scale)
            ax.plot(px, py, "o", markersize=10 if rank == 0 else 5, markeredgecolor="white", color="red")
        similarity = found.similarities[0, t, cy, cx, 0]
        ax.set_title(
            f"frame {frame_id}\nattention {attention[t + 1, cy, cx]:.2f}, similarity {similarity:.2f}", fontsize=9
        )
    what = "all cells' top-1 locations" if args.heatmap else f"cell ({cy}, {cx})"
    fig.suptitle(f"Temporal RoI Align: proposal {index}, {what}", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"Wrote {os.path.abspath(args.output)}")


if __name__ == "__main__":
    main()
