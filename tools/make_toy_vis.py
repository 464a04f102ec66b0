#!/usr/bin/env python
"""Generate the toy video instance segmentation dataset (YouTube-VIS JSON format) used by the toy
MaskTrack R-CNN configs and the tests: the toy VID dataset's videos, with masks and track ids.

    python tools/make_toy_vis.py                      # $DETECTRON2_DATASETS/toy_vis, default size
    python tools/make_toy_vis.py --train-videos 40 --difficulty 0.7 --root /tmp/toy_vis

The registered names toy_vis_train / toy_vis_val read $DETECTRON2_DATASETS/toy_vis (and make the
default dataset there on first use when there is none).
"""

import argparse
import logging
import time

from temporal_roi_align.data.toy import TOY_CATEGORIES
from temporal_roi_align.data.toy_vis import default_toy_vis_root, ensure_toy_vis, make_toy_vis


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="output folder (default: $DETECTRON2_DATASETS/toy_vis)")
    p.add_argument("--train-videos", type=int, default=12)
    p.add_argument("--val-videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=15, help="frames per training video")
    p.add_argument("--val-frames", type=int, default=20, help="frames per validation video")
    p.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=len(TOY_CATEGORIES), help=f"1..{len(TOY_CATEGORIES)}")
    p.add_argument("--max-objects", type=int, default=2)
    p.add_argument("--degradation-prob", type=float, default=0.35, help="fraction of degraded frames")
    p.add_argument("--difficulty", type=float, default=1.0, help="strength of the degradations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="regenerate even if an identical one exists")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    kwargs = dict(
        num_train_videos=args.train_videos,
        num_val_videos=args.val_videos,
        frames_per_video=args.frames,
        val_frames_per_video=args.val_frames,
        image_size=tuple(args.size),
        num_classes=args.num_classes,
        max_objects=args.max_objects,
        degradation_prob=args.degradation_prob,
        difficulty=args.difficulty,
        seed=args.seed,
    )
    start = time.perf_counter()
    try:
        root = (make_toy_vis if args.force else ensure_toy_vis)(args.root or default_toy_vis_root(), **kwargs)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"toy_vis ready at {root} ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
