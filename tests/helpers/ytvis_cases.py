"""YouTube-VIS evaluation cases: masks and their RLE, ground-truth and result JSONs, a random case
covering every rule of the metric, and the frames of a registered dataset."""

import json

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog


def box_mask(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode()
    return r


def gt_json(tmp_path, videos, annotations, categories=((1, "cat"), (2, "dog")), name="gt.json"):
    """A YouTube-VIS JSON; videos are (id, height, width, length); annotations are
    (video_id, category_id, [mask or None per frame], iscrowd)."""
    data = {
        "videos": [
            {"id": v, "height": h, "width": w, "length": n, "file_names": [f"v{v}/{i:05d}.jpg" for i in range(n)]}
            for v, h, w, n in videos
        ],
        "categories": [{"id": c, "name": n} for c, n in categories],
        "annotations": [
            {
                "id": i + 1,
                "video_id": v,
                "category_id": c,
                "iscrowd": crowd,
                "segmentations": [rle(m) if m is not None else None for m in masks],
                "bboxes": [list(mask_util.toBbox(rle(m))) if m is not None else None for m in masks],
                "areas": [int(m.sum()) if m is not None else None for m in masks],
            }
            for i, (v, c, masks, crowd) in enumerate(annotations)
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def results_json(tmp_path, results, name="results.json"):
    """results are (video_id, category_id, score, [mask or None per frame])."""
    path = tmp_path / name
    path.write_text(
        json.dumps(
            [
                {
                    "video_id": v,
                    "category_id": c,
                    "score": s,
                    "segmentations": [rle(m) if m is not None else None for m in masks],
                }
                for v, c, s, masks in results
            ]
        )
    )
    return str(path)


H, W = 10, 12


A = box_mask(H, W, 0, 0, 4, 5)  # 20 px


A_SHIFTED = box_mask(H, W, 2, 0, 6, 5)  # 20 px, 10 of them in A


CATEGORIES = ((1, "person"), (3, "panda"), (7, "duck"))


def random_case(seed):
    """Videos (id, h, w, length), ground truth (video, category, masks, iscrowd) and
    predictions (video, category, score, masks) covering every area range, absent and empty
    frames, crowds, duplicates, class confusion, tied scores, videos without ground truth and
    a video with more than 100 detections of one class. Every ground-truth instance has a
    non-empty mask somewhere (see test_ground_truth_without_a_mask_is_left_out)."""
    rng = np.random.default_rng(seed)
    videos = [(1, 300, 320, 4), (2, 64, 80, 5), (3, 200, 180, 3), (5, 48, 40, 2), (8, 90, 120, 6)]
    sizes = {v: (h, w, n) for v, h, w, n in videos}

    def moving_box(v, present):
        h, w, n = sizes[v]
        frac = rng.choice([0.08, 0.3, 0.6, 0.95]) * rng.uniform(0.7, 1.0, 2)
        bh, bw = max(2, int(h * frac[0])), max(2, int(w * frac[1]))
        y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        masks = []
        for f in range(n):
            if not present[f]:
                masks.append(None)
                continue
            dy, dx = (int(v) for v in rng.integers(-3, 4, 2))
            y, x = min(max(y0 + dy * f, 0), h - 1), min(max(x0 + dx * f, 0), w - 1)
            m = box_mask(h, w, y, x, y + bh, x + bw)
            m &= rng.random((h, w)) > 0.1 * rng.random()  # ragged masks
            masks.append(m)
        return masks

    def jitter(v, masks):
        h, w, n = sizes[v]
        out = []
        for m in masks:
            r = rng.random()
            if r < 0.1:
                out.append(None)  # missed frame
            elif m is None:
                out.append(moving_box(v, [True] * n)[0] if r < 0.3 else None)  # extra frame
            else:
                shift = int(rng.choice([0, 0.04, 0.1, 0.25]) * np.sqrt(m.sum()))
                out.append(np.roll(m, (shift, int(rng.integers(-1, 2)) * shift), axis=(0, 1)))
        return out

    cats = [c for c, _ in CATEGORIES]
    gts, dts = [], []
    for v, _, _, n in videos:
        if v == 5:
            continue  # no ground truth
        for _ in range(int(rng.integers(1, 5))):
            present = rng.random(n) < 0.75
            present[rng.integers(n)] = True
            gts.append((v, int(rng.choice(cats)), moving_box(v, present), int(rng.random() < 0.15)))
    with_empty_frame = moving_box(2, [False, True, True, False, True])
    with_empty_frame[0] = np.zeros((64, 80), bool)  # a null segmentation for the loader
    gts.append((2, cats[0], with_empty_frame, 0))
    large = [box_mask(300, 320, 4 + f, 10, 294 + f, 315) if f != 2 else None for f in range(4)]
    gts.append((1, cats[2], large, 0))  # at least one "large" object (area > 256²)
    for v, c, masks, _ in gts:
        for _ in range(int(rng.integers(0, 3))):  # 0-2 predictions per object (duplicates)
            cls = c if rng.random() < 0.8 else int(rng.choice(cats))
            dts.append((v, cls, round(float(rng.random()), 2), jitter(v, masks)))
    for v, _, _, n in videos:
        for _ in range(int(rng.integers(0, 4))):  # false positives
            dts.append(
                (
                    v,
                    int(rng.choice(cats)),
                    round(float(rng.random()), 2),
                    moving_box(v, rng.random(n) < 0.7),
                )
            )
    dts.append((5, cats[1], 0.5, [None, None]))  # absent everywhere
    for _ in range(103):  # more than maxDets = 100 on one video and class
        dts.append((2, cats[0], round(float(rng.random()) * 0.3, 1), moving_box(2, [True] * 5)))
    order = rng.permutation(len(dts))
    return videos, gts, [dts[i] for i in order]


def frame_inputs(name):
    return {(d["video_id"], d["frame_id"]): d for d in DatasetCatalog.get(name)}
