#!/usr/bin/env python
"""Generate the toy video dataset (ImageNet VID format) used by the quickstart and the tests.

    python tools/make_toy_vid.py                      # $DETECTRON2_DATASETS/toy_vid, default size
    python tools/make_toy_vid.py --train-videos 40 --difficulty 0.7 --root /tmp/toy_vid

The registered names toy_vid_train / toy_vid_val read $DETECTRON2_DATASETS/toy_vid.
"""

import argparse
import inspect
import logging
import time

from temporal_roi_align.data.toy import TOY_CATEGORIES, default_toy_root, ensure_toy_vid, make_toy_vid


def toy_generator_main(argv, description, name, default_root, make, ensure):
    """The command line of a toy dataset generator: ``make``'s keyword arguments as options,
    with ``make``'s defaults; ``ensure`` unless --force."""
    defaults = {k: p.default for k, p in inspect.signature(make).parameters.items() if p.kind == p.KEYWORD_ONLY}
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help=f"output folder (default: $DETECTRON2_DATASETS/{name})")
    p.add_argument("--train-videos", type=int, default=defaults["num_train_videos"])
    p.add_argument("--val-videos", type=int, default=defaults["num_val_videos"])
    p.add_argument("--frames", type=int, default=defaults["frames_per_video"], help="frames per training video")
    p.add_argument(
        "--val-frames", type=int, default=defaults["val_frames_per_video"], help="frames per validation video"
    )
    p.add_argument("--size", type=int, nargs=2, default=defaults["image_size"], metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=defaults["num_classes"], help=f"1..{len(TOY_CATEGORIES)}")
    p.add_argument("--max-objects", type=int, default=defaults["max_objects"])
    p.add_argument(
        "--degradation-prob", type=float, default=defaults["degradation_prob"], help="fraction of degraded frames"
    )
    p.add_argument("--difficulty", type=float, default=defaults["difficulty"], help="strength of the degradations")
    p.add_argument("--seed", type=int, default=defaults["seed"])
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
        root = (make if args.force else ensure)(args.root or default_root(), **kwargs)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{name} ready at {root} ({time.perf_counter() - start:.1f}s)")


def main(argv=None):
    toy_generator_main(argv, __doc__, "toy_vid", default_toy_root, make_toy_vid, ensure_toy_vid)


if __name__ == "__main__":
    main()
