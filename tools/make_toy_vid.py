#!/usr/bin/env python
"""Generate the toy video dataset (ImageNet VID format) used by the quickstart and the tests.

    python tools/make_toy_vid.py                      # $DETECTRON2_DATASETS/toy_vid, default size
    python tools/make_toy_vid.py --train-videos 40 --difficulty 0.7 --root /tmp/toy_vid

The registered names toy_vid_train / toy_vid_val read $DETECTRON2_DATASETS/toy_vid.
"""

import argparse
import dataclasses
import time

from temporal_roi_align.data.toy import ToySpec, default_toy_root, ensure_toy_vid, make_toy_vid
from temporal_roi_align.engine import HelpFormatter


def toy_generator_main(argv, description, name, default_root, make, ensure):
    """The command line of a toy dataset generator: an option per ToySpec field (its flag, meaning
    and default from ToySpec); ``ensure`` unless --force. Says once that the dataset is ready
    (the generator's own log line is not shown)."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--root", default=None, help=f"output folder (default: $DETECTRON2_DATASETS/{name})")
    defaults, dests = ToySpec(), {}  # field -> its option's attribute in the parsed arguments
    for f in dataclasses.fields(ToySpec):
        option = dict(f.metadata)
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            option.update(type=type(default[0]), nargs=len(default))
        else:
            option.update(type=type(default))
        dests[f.name] = p.add_argument(option.pop("flag"), default=default, **option).dest
    p.add_argument("--force", action="store_true", help="regenerate even if an identical one exists")
    args = p.parse_args(argv)

    spec = {field: getattr(args, dest) for field, dest in dests.items()}
    start = time.perf_counter()
    try:
        root = (make if args.force else ensure)(args.root or default_root(), **spec)
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{name} ready at {root} ({time.perf_counter() - start:.1f}s)")


def main(argv=None):
    toy_generator_main(argv, __doc__, "toy_vid", default_toy_root, make_toy_vid, ensure_toy_vid)


if __name__ == "__main__":
    main()
