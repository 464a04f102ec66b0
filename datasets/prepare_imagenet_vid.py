#!/usr/bin/env python
"""Write the FGFA-style split files of ImageNet VID/DET from the raw ILSVRC2015 tree.

    python datasets/prepare_imagenet_vid.py [--root $DETECTRON2_DATASETS/ILSVRC2015]

Writes under <root>/ImageSets:
  VID_train_15frames.txt   at most 15 frames (--max-frames) spread over each training video
  VID_val_videos.txt       every validation video
  DET_train_30classes.txt  the DET training images showing one of the 30 VID classes
                           (skip with --no-det when only VID is downloaded)
See datasets/README.md for the layout.
"""

import argparse
import logging
import os

from temporal_roi_align.data.datasets import datasets_root, prepare_imagenet_vid_splits


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--root",
        default=None,
        help="the ILSVRC2015 folder (default: $DETECTRON2_DATASETS/ILSVRC2015)",
    )
    p.add_argument("--max-frames", type=int, default=15, help="frames sampled per training video")
    p.add_argument("--no-det", action="store_true", help="do not build DET_train_30classes.txt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = args.root or os.path.join(datasets_root(), "ILSVRC2015")
    written = prepare_imagenet_vid_splits(
        root, max_frames=args.max_frames, with_det=not args.no_det
    )
    for name, count in written.items():
        print(f"{os.path.join(root, 'ImageSets', name)}: {count} lines")


if __name__ == "__main__":
    main()
