"""Dataset trees and files in each format's on-disk layout, written under a test's folder:
ImageNet VID (XML, split files), EPIC-KITCHENS (CSV, frames), COCO-video JSON, YouTube-VIS JSON."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

# ---- COCO-style video JSON -----------------------------------------------------------------------


def coco_video_json(tmp_path, **overrides):
    """Two videos as mmtracking writes ImageNet VID (frames listed out of order), plus one image
    without a video (a DET image)."""
    data = {
        "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "airplane"}],
        "videos": [{"id": 7, "name": "val/a"}, {"id": 8, "name": "val/b"}],
        "images": [
            {
                "id": 11,
                "video_id": 7,
                "frame_id": 1,
                "file_name": "val/a/000001.JPEG",
                "height": 20,
                "width": 30,
                "is_vid_train_frame": True,
            },
            {
                "id": 10,
                "video_id": 7,
                "frame_id": 0,
                "file_name": "val/a/000000.JPEG",
                "height": 20,
                "width": 30,
                "is_vid_train_frame": False,
            },
            {"id": 12, "video_id": 7, "frame_id": 2, "file_name": "val/a/000002.JPEG", "height": 20, "width": 30},
            {"id": 20, "video_id": 8, "frame_id": 0, "file_name": "val/b/img_a.jpg", "height": 20, "width": 30},
            {"id": 30, "file_name": "det/x.JPEG", "height": 10, "width": 10},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 11,
                "video_id": 7,
                "category_id": 2,
                "instance_id": 5,
                "bbox": [1, 2, 10, 5],
                "area": 50,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 11,
                "video_id": 7,
                "category_id": 1,
                "instance_id": 6,
                "bbox": [25, 15, 10, 10],
                "area": 100,
                "iscrowd": 0,
            },
            {
                "id": 3,
                "image_id": 11,
                "video_id": 7,
                "category_id": 1,
                "instance_id": 7,
                "bbox": [40, 0, 5, 5],
                "area": 25,
                "iscrowd": 0,
            },
            {
                "id": 4,
                "image_id": 30,
                "category_id": 1,
                "bbox": [0, 0, 4, 4],
                "area": 16,
                "iscrowd": 0,
                "segmentation": [[0, 0, 4, 0, 4, 4], [1, 1]],
            },
        ],
    }
    data.update(overrides)
    path = tmp_path / "vid.json"
    path.write_text(json.dumps(data))
    return str(path)


# ---- EPIC-KITCHENS-55 object detection -----------------------------------------------------------

BIG, SMALL = (64, 48), (32, 24)  # (width, height)

# As in the repository: noun_id 0..K-1 in order; `nouns` quoted when it holds a comma.
CLASSES_CSV = """noun_id,class_key,nouns
0,Nothing,['Nothing']
1,pan,"['pan', 'pan:sauce', 'pan:frying']"
2,pan:dust,"['pan:dust', 'dustpan']"
3,tap,['tap']
"""


LABELS_HEADER = "noun_class,noun,participant_id,video_id,frame,bounding_boxes\n"


# Rows as the repository's CSV has them: boxes "(top, left, height, width)", a list quoted when
# it has a comma, an empty list `[]` when the noun is not visible, rows of one frame apart and
# not in frame order, the README's zero-padded frame number ("0121").
LABELS_ROWS = [
    '1,pan,P01,P01_01,1,"[(10, 20, 30, 40)]"',
    "2,dustpan,P01,P01_01,61,[]",
    '3,tap,P01,P01_01,1,"[(0, 0, 5, 5), (40, 50, 20, 20), (10, 70, 5, 5)]"',
    "2,dustpan,P01,P01_01,31,[]",
    '1,pan:sauce,P01,P01_01,0121,"[(1, 2, 3, 4)]"',
    '3,tap,P26,P26_01,1,"[(1, 1, 10, 10)]"',
    '3,tap,P26,P26_01,31,"[(2, 2, 4, 4)]"',
    "3,tap,P26,P26_01,61,[]",
]


# image sizes of each annotated frame: P26_01 changes size at frame 31
TRAIN_IMAGES = {
    ("P01", "P01_01"): {1: BIG, 31: BIG, 61: BIG, 121: BIG},
    ("P26", "P26_01"): {1: BIG, 31: SMALL, 61: BIG},
}


TEST_IMAGES = {
    "test_s1": {("P01", "P01_11"): [1, 31, 61]},
    "test_s2": {("P09", "P09_01"): [1, 31]},
}


def write_image(path, size, value=90):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path, "JPEG")


def image_path(root, split, participant, video, frame):
    return os.path.join(root, "object_detection_images", split, participant, video, f"{frame:010d}.jpg")


def epic_tree(root, labels_rows=LABELS_ROWS, labels_header=LABELS_HEADER, classes=CLASSES_CSV):
    """``root`` laid out as the distributed EPIC-KITCHENS-55 object detection data."""
    ann = os.path.join(root, "annotations")
    os.makedirs(ann, exist_ok=True)
    with open(os.path.join(ann, "EPIC_noun_classes.csv"), "w") as f:
        f.write(classes)
    with open(os.path.join(ann, "EPIC_train_object_labels.csv"), "w") as f:
        f.write(labels_header + "".join(row + "\n" for row in labels_rows))
    for (participant, video), frames in TRAIN_IMAGES.items():
        for n, size in frames.items():
            path = image_path(root, "train", participant, video, n)
            write_image(path, size, value=n % 250)
    for split, videos in TEST_IMAGES.items():
        with open(os.path.join(ann, f"EPIC_{split}_object_video_list.csv"), "w") as f:
            f.write("video_id,participant_id\n")
            f.write("".join(f"{v},{p}\n" for p, v in videos))
        for (participant, video), numbers in videos.items():
            for n in numbers:
                write_image(image_path(root, "test", participant, video, n), BIG)
    # not a frame: ignored
    open(os.path.join(root, "object_detection_images", "test", "P01", "P01_11", "x.txt"), "w")
    return root


# ---- ImageNet VID --------------------------------------------------------------------------------

# Class ids (WordNet)
CAT, HORSE, DOG = "n02121808", "n02374451", "n02084071"


def vid_xml(width, height, objects, track=True):
    """One frame's XML as ILSVRC writes it; objects: (trackid, wnid, (xmin, ymin, xmax, ymax))."""
    objs = "".join(
        "<object>"
        + (f"<trackid>{t}</trackid>" if track else "")
        + f"<name>{w}</name><bndbox><xmax>{b[2]}</xmax><xmin>{b[0]}</xmin><ymax>{b[3]}</ymax><ymin>{b[1]}</ymin>"
        "</bndbox><occluded>0</occluded><generated>0</generated></object>"
        for t, w, b in objects
    )
    return (
        f"<annotation><folder>x</folder><filename>y</filename><source><database>ILSVRC_2015</database></source>"
        f"<size><width>{width}</width><height>{height}</height></size>{objs}</annotation>"
    )


def write_video(root, video, num_frames, objects=lambda t: [(0, CAT, (2, 3, 20, 30))], size=(40, 32)):
    for kind in ("Data", "Annotations"):
        os.makedirs(os.path.join(root, kind, "VID", video), exist_ok=True)
    for t in range(num_frames):
        Image.new("RGB", size, (t, 0, 0)).save(os.path.join(root, "Data", "VID", video, f"{t:06d}.JPEG"), "JPEG")
        with open(os.path.join(root, "Annotations", "VID", video, f"{t:06d}.xml"), "w") as f:
            f.write(vid_xml(*size, objects(t)))


def write_split(root, name, lines):
    os.makedirs(os.path.join(root, "ImageSets"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", name), "w") as f:
        f.write("\n".join(lines) + "\n")
    return f"ImageSets/{name}"


# ---- YouTube-VIS ---------------------------------------------------------------------------------

# The frames of ytvis_tree.
YTVIS_H, YTVIS_W = 24, 32


def uncompressed_rle(mask):
    """The column-major run lengths YouTube-VIS 2019 stores."""
    flat = np.asfortranarray(mask).ravel(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": [YTVIS_H, YTVIS_W]}


def ytvis_tree(tmp_path, with_annotations=True, **overrides):
    image_root = tmp_path / "JPEGImages"
    files = [f"v1/{i:05d}.jpg" for i in (0, 5, 10)]
    for f in files + ["v2/00000.jpg"]:
        os.makedirs(image_root / os.path.dirname(f), exist_ok=True)
        Image.new("RGB", (YTVIS_W, YTVIS_H), (90, 90, 90)).save(image_root / f)
    mask = np.zeros((YTVIS_H, YTVIS_W), np.uint8)
    mask[4:12, 6:20] = 1
    compressed = mask_util.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode()
    data = {
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "giant_panda"}],
        "videos": [
            {"id": 1, "file_names": files, "height": YTVIS_H, "width": YTVIS_W, "length": 3},
            {"id": 2, "file_names": ["v2/00000.jpg"], "height": YTVIS_H, "width": YTVIS_W, "length": 1},
        ],
        "annotations": [
            {
                "id": 100,
                "video_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "areas": [112, None, 112],
                "bboxes": [[6, 4, 14, 8], None, [6, 4, 14, 8]],
                "segmentations": [uncompressed_rle(mask), None, compressed],
            },
            {
                "id": 101,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "areas": [20, 20, 20],
                "bboxes": [[0, 0, 5, 4], [0, 0, 5, 4], [50, 50, 5, 5]],
                "segmentations": [[[0, 0, 5, 0, 5, 4, 0, 4]], [[0, 0, 5, 0, 5, 4, 0, 4]], [[50, 50, 55, 50, 55, 55]]],
            },
        ]
        if with_annotations
        else None,
    }
    data.update(overrides)
    json_file = tmp_path / "train.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(image_root)
