"""The toy datasets' scenes: objects cut from photos shipped in scikit-image's wheel (the cat of
``chelsea``, the ``horse`` silhouette, the motorcycle of ``stereo_motorcycle``) moving over panning
textured backgrounds, and the degradations that leave where the objects are but hide what they are
(blur on the scale of the objects or noise, colours washed out; or occluders over most of each object).
"""

from typing import List, Optional, Tuple

import cv2
import numpy as np

# (VID class name, WordNet id) of the toy classes, in the order of their contiguous ids.
TOY_CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ("domestic_cat", "n02121808"),
    ("horse", "n02374451"),
    ("motorcycle", "n03790512"),
)
DEGRADATIONS = ("motion_blur", "defocus", "occlusion", "noise")


def _fit(image: np.ndarray, longest: int) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def load_sprites() -> List[Tuple[np.ndarray, np.ndarray]]:
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


def load_textures() -> List[np.ndarray]:
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


class Scene:
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
