"""Small generated video datasets for the quickstart and the tests (see datasets/README.md): the
toy VID dataset (ImageNet VID format, :mod:`.vid`) and the toy VIS dataset (YouTube-VIS format,
:mod:`.vis`), which show the same videos for the same :class:`ToySpec`.

Objects cut from photos move over panning textured backgrounds (:mod:`.scene`). A fraction of each
video's frames get a degradation that leaves where the objects are but hides what they are, while
the other frames stay clear: the class of an object in a degraded frame is known only from the
other frames of its video, which is what a detector that aggregates features over time can use
and a single-frame detector cannot. :mod:`.generation` draws the videos of a spec and writes a
dataset with a stamp of its spec.
"""

from .generation import ToySpec, is_degraded
from .scene import DEGRADATIONS, TOY_CATEGORIES
from .vid import (
    default_toy_root,
    ensure_toy_vid,
    load_toy_vid,
    make_toy_vid,
    register_toy_vid,
    register_toy_vid_split,
)
from .vis import (
    TOY_VIS_CATEGORIES,
    default_toy_vis_root,
    ensure_toy_vis,
    load_toy_vis,
    make_toy_vis,
    register_toy_vis,
    register_toy_vis_split,
)

__all__ = [
    "DEGRADATIONS",
    "TOY_CATEGORIES",
    "TOY_VIS_CATEGORIES",
    "ToySpec",
    "default_toy_root",
    "default_toy_vis_root",
    "ensure_toy_vid",
    "ensure_toy_vis",
    "is_degraded",
    "load_toy_vid",
    "load_toy_vis",
    "make_toy_vid",
    "make_toy_vis",
    "register_toy_vid",
    "register_toy_vid_split",
    "register_toy_vis",
    "register_toy_vis_split",
]
