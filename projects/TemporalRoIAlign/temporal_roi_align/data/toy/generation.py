"""What a toy dataset holds and how it is written: :class:`ToySpec` (the arguments of make_toy_vid
and make_toy_vis), the frames of its videos (:class:`ToyVideos`, the same for both formats), and
:class:`ToyFormat`, which writes a dataset atomically with a stamp of its spec and regenerates it
only when the spec changes.
"""

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, NamedTuple, Optional, Set, Tuple

import cv2
import numpy as np

from .scene import DEGRADATIONS, TOY_CATEGORIES, Scene, load_sprites, load_textures

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")  # in the order of their random streams


def _option(flag: str, help: str, **argparse_kwargs) -> dict:
    """A ToySpec field's meaning and its option in tools/make_toy_vid.py and make_toy_vis.py."""
    return {"flag": flag, "help": help, **argparse_kwargs}


@dataclass(frozen=True)
class ToySpec:
    """What a toy dataset holds: the keyword arguments of make_toy_vid and make_toy_vis, which
    make the same videos for the same spec. The output depends only on the spec. Each field's
    metadata holds its meaning ("help") and its command-line option ("flag")."""

    num_train_videos: int = field(default=24, metadata=_option("--train-videos", "training videos"))
    num_val_videos: int = field(default=16, metadata=_option("--val-videos", "validation videos"))
    frames_per_video: int = field(default=15, metadata=_option("--frames", "frames per training video"))
    val_frames_per_video: int = field(default=20, metadata=_option("--val-frames", "frames per validation video"))
    image_size: Tuple[int, int] = field(
        default=(128, 160), metadata=_option("--size", "height and width of the frames", metavar=("H", "W"))
    )
    num_classes: int = field(
        default=len(TOY_CATEGORIES),
        metadata=_option("--num-classes", f"how many classes appear, the first ones (1..{len(TOY_CATEGORIES)})"),
    )
    max_objects: int = field(default=2, metadata=_option("--max-objects", "each video shows 1 to this many objects"))
    degradation_prob: float = field(
        default=0.35, metadata=_option("--degradation-prob", "fraction of each video's frames that get a degradation")
    )
    difficulty: float = field(
        default=1.0,
        metadata=_option("--difficulty", "strength of the degradations (1: heavy; 0.5: half the blur, noise, cover)"),
    )
    seed: int = field(default=0, metadata=_option("--seed", "seed of all random draws"))

    def __post_init__(self):
        object.__setattr__(self, "image_size", tuple(self.image_size))
        checks = (
            ("num_train_videos", self.num_train_videos >= 0, ">= 0"),
            ("num_val_videos", self.num_val_videos >= 0, ">= 0"),
            ("frames_per_video", self.frames_per_video >= 1, ">= 1"),
            ("val_frames_per_video", self.val_frames_per_video >= 1, ">= 1"),
            ("image_size", len(self.image_size) == 2 and min(self.image_size) >= 32, "(height, width), each >= 32"),
            ("num_classes", 1 <= self.num_classes <= len(TOY_CATEGORIES), f"in 1..{len(TOY_CATEGORIES)}"),
            ("max_objects", self.max_objects >= 1, ">= 1"),
            ("degradation_prob", 0 <= self.degradation_prob <= 1, "in [0, 1]"),
            ("difficulty", self.difficulty >= 0, ">= 0"),
            ("seed", self.seed >= 0, ">= 0"),
        )
        for name, ok, need in checks:
            if not ok:
                raise ValueError(f"toy dataset argument {name} must be {need}, got {getattr(self, name)!r}")

    def num_videos(self, split: str) -> int:
        return {"train": self.num_train_videos, "val": self.num_val_videos}[split]

    def num_frames(self, split: str) -> int:
        """Frames per video of ``split``."""
        return {"train": self.frames_per_video, "val": self.val_frames_per_video}[split]


class ToyFrame(NamedTuple):
    image: np.ndarray  # BGR uint8
    objects: List[Tuple[int, int, List[int]]]  # (track, class, box x0 y0 x1 y1) of each visible object
    occluded: Set[int]  # the tracks the frame's degradation covers
    degradation: str  # one of DEGRADATIONS, "" when clean
    masks: Optional[List[np.ndarray]]  # with frames(masks=True): each visible object's mask (Scene.render)

    def write_jpeg(self, path: str):
        if not cv2.imwrite(path, self.image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"{path}: cannot write image")


class ToyVideos:
    """The videos of the toy dataset ``spec``, in every format the same frames."""

    def __init__(self, spec: ToySpec):
        self.spec = spec
        self.sprites, self.textures = load_sprites(), load_textures()

    def frames(self, split: str, index: int, masks: bool = False) -> Iterator[ToyFrame]:
        """The frames of video ``index`` of ``split``, from the random stream (seed, split, index).
        A fraction ``degradation_prob`` of them get a degradation; the others stay clear."""
        spec, num_frames = self.spec, self.spec.num_frames(split)
        rng = np.random.default_rng([spec.seed, SPLITS.index(split), index])
        scene = Scene(
            rng, self.sprites, self.textures, spec.image_size, num_frames, spec.num_classes, spec.max_objects, index
        )
        degraded = sorted(rng.choice(num_frames, round(spec.degradation_prob * num_frames), replace=False))
        kinds = {int(t): DEGRADATIONS[rng.integers(len(DEGRADATIONS))] for t in degraded}
        for t in range(num_frames):
            frame_masks = [] if masks else None
            frame, objects = scene.render(t, frame_masks)
            occluded = set()
            if t in kinds:
                frame, occluded = scene.degrade(frame, objects, kinds[t], spec.difficulty)
            image = cv2.cvtColor((frame * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
            yield ToyFrame(image, objects, occluded, kinds.get(t, ""), frame_masks)


def is_degraded(dataset_dict: dict) -> bool:
    """Whether a toy frame was degraded (the toy datasets' "degraded" evaluation subset)."""
    return bool(dataset_dict.get("degradation"))


@dataclass(frozen=True)
class ToyFormat:
    """One on-disk format of the toy datasets. ``write(folder, spec)`` writes its files; then
    ``stamp_file`` records the spec and ``version`` (raised when the output of a spec changes, so
    that datasets made before are regenerated) and marks a complete dataset."""

    what: str  # the dataset, in messages
    stamp_file: str
    version: int
    write: Callable[[str, ToySpec], None]
    default_root: Callable[[], str]

    def stamp(self, spec: ToySpec) -> dict:
        return json.loads(json.dumps(dict(dataclasses.asdict(spec), version=self.version)))  # tuples -> lists

    def read_stamp(self, root: str) -> Optional[dict]:
        """What the dataset at ``root`` was made with, or None (none there, or damaged)."""
        try:
            with open(os.path.join(root, self.stamp_file)) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            return None

    def make(self, root: Optional[str], spec: ToySpec) -> str:
        """Write the dataset into a temporary folder beside ``root`` (default: ``default_root()``),
        move it into place and return ``root``. An existing ``root`` is replaced only if it holds
        such a dataset (its stamp). Safe when several processes make the same dataset at once: each
        writes its own copy and the first complete one stays."""
        root = os.path.abspath(root or self.default_root())
        if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, self.stamp_file)):
            raise FileExistsError(f"{root} exists and is not a {self.what} (no {self.stamp_file}); not overwriting it")
        start = time.perf_counter()
        stamp = self.stamp(spec)
        tmp = f"{root}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            os.makedirs(tmp)
            self.write(tmp, spec)
            with open(os.path.join(tmp, self.stamp_file), "w") as f:
                json.dump(stamp, f, indent=1, sort_keys=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.makedirs(os.path.dirname(root), exist_ok=True)
        if os.path.isdir(root):
            old = f"{root}.old-{os.getpid()}"
            os.rename(root, old)
            shutil.rmtree(old)
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process put a dataset there meanwhile: keep it if it is this one.
            shutil.rmtree(tmp, ignore_errors=True)
            if self.read_stamp(root) != stamp:
                raise
        logger.info(f"Wrote the {self.what} to {root} in {time.perf_counter() - start:.1f}s")
        return root

    def ensure(self, root: Optional[str], spec: ToySpec) -> str:
        """:meth:`make` unless ``root`` already holds the dataset of ``spec``; returns ``root``."""
        root = os.path.abspath(root or self.default_root())
        if self.read_stamp(root) == self.stamp(spec):
            return root
        return self.make(root, spec)

    def made_on_first_use(self, name: str) -> str:
        """``default_root()``, where the registered dataset ``name`` is read, after making the
        default dataset (``ToySpec()``) there when it holds none; one made with other arguments
        (``tools/make_toy_*.py``) is used as it is."""
        root = self.default_root()
        if self.read_stamp(root) is None:
            logger.info(f"Dataset '{name}': no {self.what} at {root} yet; generating it (seconds)")
            self.make(root, ToySpec())
        return root
