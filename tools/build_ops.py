#!/usr/bin/env python
"""
Builds the compiled operator of Most Similar RoI Align for the current sources (tools/env.sh runs
this), or with --status prints whether it is used. Without a C++ compiler (``$CXX``, default
``c++``) it builds nothing and says so: the PyTorch path runs (docs/temporal_roi_align.md).

    python tools/build_ops.py [--verbose]
    python tools/build_ops.py --status
"""

import argparse
import os
import shutil
import sys

from temporal_roi_align.engine import HelpFormatter
from temporal_roi_align.layers import compiled_ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--status", action="store_true", help="print which path runs, build nothing")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's commands")
    args = parser.parse_args(argv)
    if args.status:
        print(compiled_ops.status())
        return 0
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        print(f"[ops] no C++ compiler ({compiler}): Most Similar RoI Align runs its PyTorch path")
        return 0
    try:
        path = compiled_ops.build(verbose=args.verbose)
    except (OSError, RuntimeError, ImportError) as e:
        print(f"[ops] the compiled operator did not build, the PyTorch path runs: {e}", file=sys.stderr)
        return 1
    print(f"[ops] compiled operator: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
