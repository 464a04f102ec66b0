#!/usr/bin/env python
"""Generate the toy video instance segmentation dataset (YouTube-VIS JSON format) used by the toy
MaskTrack R-CNN configs and the tests: the toy VID dataset's videos, with masks and track ids.

    python tools/make_toy_vis.py                      # $DETECTRON2_DATASETS/toy_vis, default size
    python tools/make_toy_vis.py --train-videos 40 --difficulty 0.7 --root /tmp/toy_vis

The registered names toy_vis_train / toy_vis_val read $DETECTRON2_DATASETS/toy_vis (and make the
default dataset there on first use when there is none).
"""

import os
import sys

from temporal_roi_align.data.toy import default_toy_vis_root, ensure_toy_vis, make_toy_vis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_toy_vid import toy_generator_main  # noqa: E402


def main(argv=None):
    toy_generator_main(argv, __doc__, "toy_vis", default_toy_vis_root, make_toy_vis, ensure_toy_vis)


if __name__ == "__main__":
    main()
