"""A small generated video dataset in the ImageNet VID on-disk format (see datasets/README.md).

Objects cut from photos shipped in scikit-image's wheel (the cat of ``chelsea``, the
``horse`` silhouette, the motorcycle of ``stereo_motorcycle``) move over panning textured
backgrounds. A fraction of each video's frames get a degradation that leaves where the objects
are but hides what they are (blur on the scale of the objects or noise, colours washed out; or
occluders over most of each object), while the other frames stay clear: the class of an object
in a degraded frame is known only from the other frames of its video, which is what a detector
that aggregates features over time can use and a single-frame detector cannot. Each frame's XML
carries the extra element ``<degradation>`` (empty when clean), which the real VID does not have:
the toy's own loader (:func:`register_toy_vid`) reads it into the frame dicts'
``"degradation"``, and the toy datasets' metadata ``frame_subsets`` selects the degraded frames for evaluation.
"""

import inspect
import json
import logging
import os
import shutil
import time
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from .datasets.common import datasets_root
from .datasets.imagenet_vid import load_imagenet_vid, register_imagenet_vid, sample_key_frames

logger = logging.getLogger(__name__)

__all__ = [
    "TOY_CATEGORIES",
    "DEGRADATIONS",
    "make_toy_vid",
    "ensure_toy_vid",
    "default_toy_root",
    "is_degraded",
    "load_toy_vid",
    "register_toy_vid",
    "register_toy_vid_split",
]

# (VID class name, WordNet id) of the toy classes, in the order of their contiguous ids.
TOY_CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ("domestic_cat", "n02121808"),
    ("horse", "n02374451"),
    ("motorcycle", "n03790512"),
)
DEGRADATIONS = ("motion_blur", "defocus", "occlusion", "noise")
STAMP_FILE = "toy_vid.json"
_GENERATOR_VERSION = 3


def default_toy_root() -> str:
    """Where the registered ``toy_vid_train``/``toy_vid_val`` look: ``$DETECTRON2_DATASETS/toy_vid``."""
    return os.path.join(datasets_root(), "toy_vid")


def _fit(image: np.ndarray, longest: int) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _sprites() -> List[Tuple[np.ndarray, np.ndarray]]:
    """(RGB float image, alpha) per toy class, in TOY_CATEGORIES order."""
    from skimage import data

    cat = data.chelsea()[0:300, 60:350].astype(np.float32) / 255
    h, w = cat.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    cat_alpha = (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 1).astype(np.float32)

    silhouette = (~data.horse()).astype(np.float32)  # True = background in skimage's image
    shade = cv2.resize(data.gravel(), silhouette.shape[::-1]).astype(np.float32) / 255
    coat = np.array([0.47, 0.29, 0.16], np.float32) * (0.7 + 0.5 * shade[..., None])

    moto = data.stereo_motorcycle()[0][40:470, 60:720].astype(np.float32) / 255
    # The motorcycle's outline, by hand: two wheels and the frame from the seat to the fork.
    moto_alpha = np.zeros(moto.shape[:2], np.uint8)
    cv2.ellipse(moto_alpha, (140, 285), (82, 88), 0, 0, 360, 1, -1)
    cv2.ellipse(moto_alpha, (545, 330), (80, 88), 0, 0, 360, 1, -1)
    outline = [(35, 170), (60, 140), (100, 115), (230, 110), (300, 125), (400, 80), (440, 40), (520, 60),
               (555, 110), (530, 150), (520, 230), (590, 250), (560, 300), (460, 300), (420, 330), (240, 330),
               (120, 220), (40, 215)]  # fmt: skip
    cv2.fillPoly(moto_alpha, [np.array(outline, np.int32)], 1)
    sprites = [(cat, cat_alpha), (coat, silhouette), (moto, moto_alpha.astype(np.float32))]
    out = []
    for rgb, alpha in sprites:
        alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)  # soft edges
        out.append((_fit(np.clip(rgb, 0, 1), 128), _fit(alpha, 128)))
    return out


def _textures() -> List[np.ndarray]:
    from skimage import data

    return [
        cv2.resize(t(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        for t in (data.grass, data.gravel, data.brick)
    ]


def _kernel_line(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c, dx, dy = (length - 1) / 2, np.cos(angle) * (length - 1) / 2, np.sin(angle) * (length - 1) / 2
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return k / k.sum()


def _kernel_disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    k = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    return k / k.sum()


def _paste(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> Optional[List[int]]:
    """Alpha-blend a sprite with top-left corner (x0, y0); returns the visible box or None."""
    H, W = frame.shape[:2]
    h, w = alpha.shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    a = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
    region = frame[fy0:fy1, fx0:fx1]
    region[:] = region * (1 - a) + rgb[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] * a
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    if len(xs) == 0:
        return None
    return [
        fx0 + int(xs.min()),
        fy0 + int(ys.min()),
        fx0 + int(xs.max()) + 1,
        fy0 + int(ys.max()) + 1,
    ]


def _placed_mask(alpha: np.ndarray, x0: int, y0: int, size) -> np.ndarray:
    """The [H, W] bool mask ``alpha > 0.5`` of a sprite pasted with top-left corner (x0, y0)."""
    H, W = size
    h, w = alpha.shape
    mask = np.zeros((H, W), bool)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 > fx0 and fy1 > fy0:
        mask[fy0:fy1, fx0:fx1] = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] > 0.5
    return mask


class _Video:
    """One video's scene: a panning background and objects moving and bouncing off the borders."""

    def __init__(self, rng, sprites, textures, size, num_frames, num_classes, max_objects, first_class):
        H, W = size
        self.rng, self.size = rng, size
        self.pan = rng.uniform(-1.5, 1.5, 2)
        pad = np.ceil(np.abs(self.pan) * num_frames).astype(int) + 1
        texture = textures[rng.integers(len(textures))]
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        canvas = cv2.resize(texture, (W + pad[0], H + pad[1]), interpolation=cv2.INTER_LINEAR)
        self.canvas = tint * (0.25 + 0.55 * canvas[..., None])
        self.origin = np.where(self.pan < 0, pad - 1, 0).astype(float)
        self.objects = []
        for track in range(rng.integers(1, max_objects + 1)):
            # The first object's class cycles over the videos, so that every split shows every class.
            cls = first_class % num_classes if track == 0 else int(rng.integers(num_classes))
            rgb, alpha = sprites[cls]
            longest = rng.uniform(0.32, 0.5) * min(H, W)
            # Slow, medium or fast (px per frame), as VID's motion-IoU buckets.
            speed = rng.uniform(*((0.1, 0.3), (0.5, 1.2), (1.5, 3.5))[rng.integers(3)])
            heading = rng.uniform(0, 2 * np.pi)
            self.objects.append(
                {
                    "track": track,
                    "cls": cls,
                    "sprite": (rgb, alpha),
                    "scale": longest / max(alpha.shape),
                    "pos": rng.uniform([0.2 * W, 0.2 * H], [0.8 * W, 0.8 * H]),
                    "vel": speed * np.array([np.cos(heading), np.sin(heading)]),
                    "phase": rng.uniform(0, 2 * np.pi),
                }
            )

    def render(self, t: int, masks: Optional[list] = None):
        """Frame ``t`` as float RGB, and [(track, class, box)] of the visible objects. Given a
        list ``masks``, also appends to it each visible object's [H, W] bool mask (alpha > 0.5,
        whose bounding box is the object's box; objects drawn later over it not removed)."""
        H, W = self.size
        ox, oy = (self.origin + self.pan * t).astype(int)
        frame = self.canvas[oy : oy + H, ox : ox + W].copy()
        objects = []
        for obj in self.objects:
            rgb, alpha = obj["sprite"]
            scale = obj["scale"] * (1 + 0.05 * np.sin(0.2 * t + obj["phase"]))
            size = (max(2, round(alpha.shape[1] * scale)), max(2, round(alpha.shape[0] * scale)))
            rgb, alpha = (
                cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                cv2.resize(alpha, size, interpolation=cv2.INTER_AREA),
            )
            if obj["vel"][0] < 0:  # face the direction of motion
                rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
            x, y = obj["pos"]
            x0, y0 = round(x - size[0] / 2), round(y - size[1] / 2)
            box = _paste(frame, rgb, alpha, x0, y0)
            if box is not None:
                objects.append((obj["track"], obj["cls"], box))
                if masks is not None:
                    masks.append(_placed_mask(alpha, x0, y0, (H, W)))
            # Move, bouncing so that the object's centre stays inside the frame.
            obj["pos"] = obj["pos"] + obj["vel"]
            for axis, limit in ((0, W), (1, H)):
                if not 0.1 * limit <= obj["pos"][axis] <= 0.9 * limit:
                    obj["vel"][axis] *= -1
                    obj["pos"][axis] = np.clip(obj["pos"][axis], 0.1 * limit, 0.9 * limit)
        return frame, objects

    def degrade(self, frame, objects, kind: str, difficulty: float):
        """Apply one heavy degradation that leaves where the objects are but hides what they are:
        blur on the scale of the objects (or noise) with the colours washed out, or occluders
        hiding most of each object. Returns the frame and the tracks it occludes."""
        rng, W = self.rng, self.size[1]
        occluded = set()
        sizes = [max(x1 - x0, y1 - y0) for _, _, (x0, y0, x1, y1) in objects]
        size = float(np.mean(sizes)) if sizes else 0.4 * W
        washed = min(1.0, 0.8 * difficulty)
        if kind == "motion_blur":
            length = max(3, round(difficulty * rng.uniform(0.5, 0.7) * size))
            kernel = _kernel_line(length, rng.uniform(0, np.pi))
            frame = _desaturate(cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT), washed)
        elif kind == "defocus":
            radius = max(1, round(difficulty * rng.uniform(0.2, 0.28) * size))
            frame = _desaturate(cv2.filter2D(frame, -1, _kernel_disk(radius), borderType=cv2.BORDER_REFLECT), washed)
        elif kind == "occlusion":
            for track, _, (x0, y0, x1, y1) in objects:
                cover = min(0.95, difficulty * rng.uniform(0.8, 0.95))
                side = rng.integers(4)
                if side < 2:  # a vertical band from the left or the right
                    band = round((x1 - x0) * cover)
                    x0, x1 = (x0, x0 + band) if side == 0 else (x1 - band, x1)
                else:
                    band = round((y1 - y0) * cover)
                    y0, y1 = (y0, y0 + band) if side == 2 else (y1 - band, y1)
                color = rng.uniform(0.1, 0.9, 3).astype(np.float32)
                frame[y0:y1, x0:x1] = color * rng.uniform(0.85, 1.0, (y1 - y0, x1 - x0, 1)).astype(np.float32)
                occluded.add(track)
        elif kind == "noise":
            sigma = difficulty * rng.uniform(0.12, 0.18)
            frame = _desaturate(frame, washed) * rng.uniform(0.5, 0.7)
            frame = frame + rng.normal(0, sigma, frame.shape).astype(np.float32)
        else:
            raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")
        return np.clip(frame, 0, 1), occluded


def _desaturate(frame: np.ndarray, amount: float) -> np.ndarray:
    """Move every pixel ``amount`` of the way to its grey level."""
    return frame + amount * (frame.mean(axis=2, keepdims=True) - frame)


def _xml(folder: str, frame: int, size, objects, occluded, degradation: str) -> str:
    H, W = size
    parts = [
        f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{frame:06d}</filename>\n"
        "\t<source>\n\t\t<database>toy_vid</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{W}</width>\n\t\t<height>{H}</height>\n\t</size>\n"
    ]
    for track, cls, (x0, y0, x1, y1) in objects:
        parts.append(
            f"\t<object>\n\t\t<trackid>{track}</trackid>\n\t\t<name>{TOY_CATEGORIES[cls][1]}</name>\n"
            f"\t\t<bndbox>\n\t\t\t<xmax>{x1}</xmax>\n\t\t\t<xmin>{x0}</xmin>\n"
            f"\t\t\t<ymax>{y1}</ymax>\n\t\t\t<ymin>{y0}</ymin>\n\t\t</bndbox>\n"
            f"\t\t<occluded>{int(track in occluded)}</occluded>\n\t\t<generated>0</generated>\n\t</object>\n"
        )
    parts.append(f"\t<degradation>{degradation}</degradation>\n</annotation>\n")
    return "".join(parts)


def _generation_params(version: int, **kwargs) -> dict:
    """The arguments of :func:`make_toy_vid` (or ``make_toy_vis``), checked, as the dataset's
    stamp records them with the generator's ``version``."""
    if not 1 <= kwargs["num_classes"] <= len(TOY_CATEGORIES):
        raise ValueError(f"num_classes must be in 1..{len(TOY_CATEGORIES)}, got {kwargs['num_classes']}")
    if (
        min(kwargs["num_train_videos"], kwargs["num_val_videos"]) < 0
        or min(kwargs["frames_per_video"], kwargs["val_frames_per_video"]) < 1
    ):
        raise ValueError("need video counts >= 0 and at least 1 frame per video")
    if not 0 <= kwargs["degradation_prob"] <= 1 or kwargs["max_objects"] < 1 or min(kwargs["image_size"]) < 32:
        raise ValueError("need 0 <= degradation_prob <= 1, max_objects >= 1 and frames of at least 32x32 px")
    return json.loads(json.dumps(dict(kwargs, version=version)))  # tuples -> lists


def _read_stamp(root: str, stamp_file: str) -> Optional[dict]:
    """The parameters a toy dataset at ``root`` was made with, or None (none there, or damaged)."""
    try:
        with open(os.path.join(root, stamp_file)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _generate(root: str, params: dict, write: Callable[[str, dict], None], stamp_file: str, what: str) -> str:
    """Write a toy dataset with ``write(folder, params)`` (which writes ``stamp_file`` last) into a
    temporary folder beside ``root`` and move it into place. An existing ``root`` is replaced only
    if it holds a toy dataset (its ``stamp_file``). Safe when several processes make the same
    dataset at once: each writes its own copy and the first complete one stays."""
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, stamp_file)):
        raise FileExistsError(f"{root} exists and is not a {what} (no {stamp_file}); not overwriting it")
    start = time.perf_counter()
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp, params)
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
        if _read_stamp(root, stamp_file) != params:
            raise
    logger.info(f"Wrote the {what} to {root} in {time.perf_counter() - start:.1f}s")
    return root


def _ensure(root: str, make: Callable[..., str], stamp_file: str, version: int, kwargs: dict) -> str:
    """``make(root, **kwargs)`` unless ``root`` holds a toy dataset made with the same arguments
    (``make``'s defaults for the others); returns ``root``."""
    defaults = {k: p.default for k, p in inspect.signature(make).parameters.items() if p.kind == p.KEYWORD_ONLY}
    if _read_stamp(root, stamp_file) == _generation_params(version, **dict(defaults, **kwargs)):
        return root
    return make(root, **kwargs)


def _write_dataset(out: str, p: dict):
    """Write all files of the toy dataset with parameters ``p`` (see make_toy_vid) under ``out``."""
    sprites, textures = _sprites(), _textures()
    size = tuple(p["image_size"])
    split_lines = {"train": [], "val": []}
    splits = (
        ("train", p["num_train_videos"], p["frames_per_video"]),
        ("val", p["num_val_videos"], p["val_frames_per_video"]),
    )
    for split_index, (split, num_videos, num_frames) in enumerate(splits):
        for v in range(num_videos):
            rng = np.random.default_rng([p["seed"], split_index, v])
            video = _Video(rng, sprites, textures, size, num_frames, p["num_classes"], p["max_objects"], v)
            num_degraded = round(p["degradation_prob"] * num_frames)
            degraded = sorted(rng.choice(num_frames, num_degraded, replace=False))
            kinds = {int(t): DEGRADATIONS[rng.integers(len(DEGRADATIONS))] for t in degraded}
            folder = f"{split}/toy_{split}_{v:04d}"
            data_dir = os.path.join(out, "Data", "VID", folder)
            ann_dir = os.path.join(out, "Annotations", "VID", folder)
            os.makedirs(data_dir)
            os.makedirs(ann_dir)
            for t in range(num_frames):
                frame, objects = video.render(t)
                occluded = set()
                if t in kinds:
                    frame, occluded = video.degrade(frame, objects, kinds[t], p["difficulty"])
                bgr = cv2.cvtColor((frame * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
                jpeg = os.path.join(data_dir, f"{t:06d}.JPEG")
                if not cv2.imwrite(jpeg, bgr, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                    raise OSError(f"{jpeg}: cannot write image")
                with open(os.path.join(ann_dir, f"{t:06d}.xml"), "w") as f:
                    f.write(_xml(folder, t, size, objects, occluded, kinds.get(t, "")))
            if split == "train":
                split_lines[split] += [f"{folder} 1 {t} {num_frames}" for t in sample_key_frames(num_frames, 15)]
            else:
                split_lines[split].append(f"{folder} {v * num_frames + 1} 0 {num_frames}")
    os.makedirs(os.path.join(out, "ImageSets"))
    for split, name in (("train", "VID_train_15frames.txt"), ("val", "VID_val_videos.txt")):
        with open(os.path.join(out, "ImageSets", name), "w") as f:
            f.write("".join(line + "\n" for line in split_lines[split]))
    # Written last: its presence marks a complete dataset.
    with open(os.path.join(out, STAMP_FILE), "w") as f:
        json.dump(p, f, indent=1, sort_keys=True)


def make_toy_vid(
    root: Optional[str] = None,
    *,
    num_train_videos: int = 24,
    num_val_videos: int = 16,
    frames_per_video: int = 15,
    val_frames_per_video: int = 20,
    image_size: Tuple[int, int] = (128, 160),
    num_classes: int = len(TOY_CATEGORIES),
    max_objects: int = 2,
    degradation_prob: float = 0.35,
    difficulty: float = 1.0,
    seed: int = 0,
) -> str:
    """Write the toy dataset under ``root`` (default :func:`default_toy_root`) and return ``root``.

    Layout as ImageNet VID: ``Data/VID/{train,val}/toy_<split>_<i>/<%06d>.JPEG``, one XML per
    frame under ``Annotations/VID``, and ``ImageSets/VID_train_15frames.txt`` /
    ``ImageSets/VID_val_videos.txt``. Deterministic given the arguments.

    Args:
        image_size: (height, width) of the frames.
        num_classes: how many of TOY_CATEGORIES appear (the first ones); class ids stay those of
            TOY_CATEGORIES.
        max_objects: each video shows 1..max_objects moving objects.
        degradation_prob: fraction of each video's frames that get a degradation.
        difficulty: strength of the degradations (1: heavy; 0.5: half the blur, noise, cover).

    An existing ``root`` is replaced only if it holds a toy dataset (its ``toy_vid.json``); safe
    when several processes make the same dataset at once (the first complete copy stays).
    """
    params = _generation_params(
        _GENERATOR_VERSION,
        num_train_videos=num_train_videos,
        num_val_videos=num_val_videos,
        frames_per_video=frames_per_video,
        val_frames_per_video=val_frames_per_video,
        image_size=image_size,
        num_classes=num_classes,
        max_objects=max_objects,
        degradation_prob=degradation_prob,
        difficulty=difficulty,
        seed=seed,
    )
    return _generate(os.path.abspath(root or default_toy_root()), params, _write_dataset, STAMP_FILE, "toy dataset")


def ensure_toy_vid(root: Optional[str] = None, **kwargs) -> str:
    """Create the toy dataset with :func:`make_toy_vid` unless ``root`` already holds one made with
    the same arguments (recorded in ``toy_vid.json``); returns ``root``."""
    root = os.path.abspath(root or default_toy_root())
    return _ensure(root, make_toy_vid, STAMP_FILE, _GENERATOR_VERSION, kwargs)


def _degradation(xml_root) -> dict:
    """The frame's ``<degradation>`` ("" when clean)."""
    node = xml_root.find("degradation")
    return {"degradation": (node.text or "").strip() if node is not None else ""}


def is_degraded(dataset_dict: dict) -> bool:
    """Whether a toy frame was degraded (the toy datasets' "degraded" evaluation subset)."""
    return bool(dataset_dict.get("degradation"))


_TOY_HINT = (
    "Create it with `python tools/make_toy_vid.py` (the quickstart creates it on first use), "
    "or call temporal_roi_align.data.ensure_toy_vid()."
)


# split: (split file, every frame of each listed video)
TOY_SPLITS = {
    "train": ("ImageSets/VID_train_15frames.txt", False),
    "val": ("ImageSets/VID_val_videos.txt", True),
}


def load_toy_vid(root: Optional[str] = None, split: str = "val") -> List[dict]:
    """The frame dicts of a toy split: :func:`load_imagenet_vid`'s, plus ``"degradation"``."""
    if split not in TOY_SPLITS:
        raise ValueError(f"toy split must be one of {sorted(TOY_SPLITS)}, got {split!r}")
    split_file, all_frames = TOY_SPLITS[split]
    return load_imagenet_vid(
        root or default_toy_root(),
        split_file,
        all_frames=all_frames,
        categories=TOY_CATEGORIES,
        frame_fields=_degradation,
    )


def register_toy_vid_split(name: str, root: Optional[str], split: str) -> str:
    """Register the toy ``split`` ("train" or "val") of the dataset under ``root`` (default:
    :func:`default_toy_root`, read when loaded) as ``name``, with the toy's degradation field and
    "degraded" evaluation subset; returns ``name``."""
    split_file, all_frames = TOY_SPLITS[split]
    register_imagenet_vid(
        name,
        root or default_toy_root,
        split_file,
        all_frames=all_frames,
        categories=TOY_CATEGORIES,
        frame_fields=_degradation,
        hint=_TOY_HINT,
        frame_subsets={"degraded": is_degraded},
    )
    return name


def register_toy_vid():
    """Register ``toy_vid_train`` and ``toy_vid_val`` under ``$DETECTRON2_DATASETS/toy_vid``."""
    for split in TOY_SPLITS:
        register_toy_vid_split(f"toy_vid_{split}", None, split)
