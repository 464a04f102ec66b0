"""ImageNet VID / DET (ILSVRC2015) in their on-disk format, with FGFA-style split files.

Layout under ``root`` (the ``ILSVRC2015`` folder)::

    Data/VID/{train,val}/<video>/<%06d>.JPEG      Annotations/VID/{train,val}/<video>/<%06d>.xml
    Data/DET/train/<image>.JPEG                   Annotations/DET/train/<image>.xml
    ImageSets/VID_train_15frames.txt   "<video> <n> <frame index, 0-based> <video length>" per line
    ImageSets/VID_val_videos.txt       "<video> <n> <first frame, 0> <video length>" per line
    ImageSets/DET_train_30classes.txt  "<image> <n>" per line

``<video>``/``<image>`` are relative to ``Data/VID``/``Data/DET``; ``<n>`` is a running index
that the loader ignores.
"""

import logging
import os
import xml.etree.ElementTree as ET
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .common import DroppedBoxes, clip_box, frame_pattern, frame_record

__all__ = [
    "VID_CATEGORIES",
    "load_imagenet_vid",
    "register_imagenet_vid",
    "parse_vid_xml",
    "sample_key_frames",
    "prepare_imagenet_vid_splits",
]

logger = logging.getLogger(__name__)

# (class name, WordNet id), in the order of the contiguous class ids.
VID_CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ("airplane", "n02691156"), ("antelope", "n02419796"), ("bear", "n02131653"),
    ("bicycle", "n02834778"), ("bird", "n01503061"), ("bus", "n02924116"),
    ("car", "n02958343"), ("cattle", "n02402425"), ("dog", "n02084071"),
    ("domestic_cat", "n02121808"), ("elephant", "n02503517"), ("fox", "n02118333"),
    ("giant_panda", "n02510455"), ("hamster", "n02342885"), ("horse", "n02374451"),
    ("lion", "n02129165"), ("lizard", "n01674464"), ("monkey", "n02484322"),
    ("motorcycle", "n03790512"), ("rabbit", "n02324045"), ("red_panda", "n02509815"),
    ("sheep", "n02411705"), ("snake", "n01726692"), ("squirrel", "n02355227"),
    ("tiger", "n02129604"), ("train", "n04468005"), ("turtle", "n01662784"),
    ("watercraft", "n04530566"), ("whale", "n02062744"), ("zebra", "n02391049"),
)  # fmt: skip

_FRAME_DIGITS = 6


def _text(node: ET.Element, path: str, xml_file: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise ValueError(f"{xml_file}: missing <{path}>")
    return found.text.strip()


def _number(node: ET.Element, path: str, xml_file: str, kind=float, default=None):
    if default is not None and node.find(path) is None:
        return default
    text = _text(node, path, xml_file)
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{xml_file}: <{path}> is not a number: {text!r}") from None


def parse_vid_xml(xml_file: str, wnid_to_id: Dict[str, int], dropped: DroppedBoxes):
    """Parse one VID/DET annotation file.

    Returns ``(height, width, annotations, degradation, unknown)``: ``degradation`` is the text of
    the toy dataset's ``<degradation>`` element ("" when clean, None when the file has none),
    ``unknown`` the WordNet ids skipped because they are not in ``wnid_to_id``. Objects without
    ``<trackid>`` (DET) get their index in the file as track id. Boxes are clipped to the image;
    boxes with nothing left inside are dropped and counted in ``dropped``.
    """
    if not os.path.isfile(xml_file):
        raise FileNotFoundError(f"{xml_file}: annotation file does not exist")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml_file}: not valid XML ({e})") from e
    width = _number(root, "size/width", xml_file, int)
    height = _number(root, "size/height", xml_file, int)
    if width <= 0 or height <= 0:
        raise ValueError(f"{xml_file}: image size {width}x{height} is empty")
    annotations, unknown = [], []
    for index, obj in enumerate(root.findall("object")):
        wnid = _text(obj, "name", xml_file)
        if wnid not in wnid_to_id:
            unknown.append(wnid)
            continue
        raw = [_number(obj, f"bndbox/{k}", xml_file) for k in ("xmin", "ymin", "xmax", "ymax")]
        box = clip_box(raw, width, height)
        if box is None:
            dropped.add(xml_file, raw)
            continue
        annotations.append(
            {
                "bbox": box,
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": wnid_to_id[wnid],
                "iscrowd": 0,
                "track_id": _number(obj, "trackid", xml_file, int, default=index),
                "occluded": _number(obj, "occluded", xml_file, int, default=0),
                "generated": _number(obj, "generated", xml_file, int, default=0),
            }
        )
    degradation = root.find("degradation")
    if degradation is not None:
        degradation = (degradation.text or "").strip()
    return height, width, annotations, degradation, unknown


def _read_split(split_file: str) -> List[Tuple[int, List[str]]]:
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"{split_file}: split file does not exist")
    with open(split_file) as f:
        return [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]


def _parse_vid_line(split_file: str, lineno: int, fields: List[str]) -> Tuple[str, int, int]:
    where = f"{split_file}:{lineno}"
    if len(fields) != 4:
        raise ValueError(
            f"{where}: expected '<video> <n> <frame> <video length>', got {' '.join(fields)!r}"
        )
    try:
        frame, length = int(fields[2]), int(fields[3])
    except ValueError:
        raise ValueError(f"{where}: frame index and video length must be integers") from None
    if length < 1 or not 0 <= frame < length:
        raise ValueError(f"{where}: frame {frame} is outside a video of {length} frames")
    return fields[0], frame, length


def load_imagenet_vid(
    root: str,
    split_file: str,
    *,
    subset: str = "VID",
    all_frames: bool = False,
    categories: Sequence[Tuple[str, str]] = VID_CATEGORIES,
    dataset_name: str = "",
) -> List[dict]:
    """Load the frames (``subset="VID"``) or images (``"DET"``) listed in a split file.

    Args:
        root: the ``ILSVRC2015`` folder.
        split_file: path of the split file, relative to ``root`` or absolute.
        all_frames: VID only; every frame of each listed video instead of the listed frames.
        categories: (name, WordNet id) pairs; objects of other classes are skipped.

    Every dict knows its whole video (``video_frames``, a pattern): supports may come from any
    frame of it, also from frames the split file does not list. A DET image is a 1-frame video.
    """
    if subset not in ("VID", "DET"):
        raise ValueError(f"subset must be 'VID' or 'DET', got {subset!r}")
    split_file = os.path.join(root, split_file)
    dataset_name = dataset_name or split_file
    wnid_to_id = {wnid: i for i, (_, wnid) in enumerate(categories)}
    lines = _read_split(split_file)
    dropped, unknown, dicts = DroppedBoxes(), [], []

    def load_frame(video, frame, length, frames, xml_file, jpeg_file, image_id):
        height, width, annos, degradation, skipped = parse_vid_xml(xml_file, wnid_to_id, dropped)
        unknown.extend(skipped)
        record = frame_record(
            jpeg_file, image_id, height, width,
            video_id=video, frame_id=frame, video_length=length, video_frames=frames, annotations=annos,
        )  # fmt: skip
        if degradation is not None:
            record["degradation"] = degradation
        dicts.append(record)

    if subset == "DET":
        for lineno, fields in lines:
            if len(fields) not in (1, 2):
                raise ValueError(
                    f"{split_file}:{lineno}: expected '<image> <n>', got {' '.join(fields)!r}"
                )
            jpeg = os.path.join(root, "Data", "DET", fields[0] + ".JPEG")
            xml = os.path.join(root, "Annotations", "DET", fields[0] + ".xml")
            load_frame(f"DET/{fields[0]}", 0, 1, (jpeg,), xml, jpeg, f"DET/{fields[0]}")
    else:
        videos: "OrderedDict[str, Tuple[int, List[int]]]" = OrderedDict()
        for lineno, fields in lines:
            video, frame, length = _parse_vid_line(split_file, lineno, fields)
            if video not in videos:
                if not os.path.isdir(os.path.join(root, "Data", "VID", video)):
                    raise FileNotFoundError(
                        f"{split_file}:{lineno}: video directory "
                        f"{os.path.join(root, 'Data', 'VID', video)} does not exist"
                    )
                videos[video] = (length, [])
            elif videos[video][0] != length:
                raise ValueError(f"{split_file}:{lineno}: video {video} has two different lengths")
            videos[video][1].append(frame)
        for video, (length, frames) in videos.items():
            data_dir = os.path.join(root, "Data", "VID", video)
            ann_dir = os.path.join(root, "Annotations", "VID", video)
            pattern = frame_pattern(data_dir, _FRAME_DIGITS, ".JPEG")
            for frame in range(length) if all_frames else frames:
                name = "%0*d" % (_FRAME_DIGITS, frame)
                load_frame(
                    f"VID/{video}", frame, length, pattern,
                    os.path.join(ann_dir, name + ".xml"), pattern.format(frame), f"VID/{video}/{name}",
                )  # fmt: skip

    dropped.log(dataset_name)
    if unknown:
        # Expected for DET, whose images also show the other 170 DET classes.
        log = logger.info if subset == "DET" else logger.warning
        log(f"{dataset_name}: skipped {len(unknown)} objects of classes not in the dataset's "
            f"list ({', '.join(sorted(set(unknown))[:5])}...)")  # fmt: skip
    logger.info(f"Loaded {len(dicts)} {subset} images from {split_file}")
    return dicts


def register_imagenet_vid(
    name: str,
    root: str,
    split_file: str,
    *,
    subset: str = "VID",
    all_frames: bool = False,
    categories: Sequence[Tuple[str, str]] = VID_CATEGORIES,
):
    """Register a dataset in the ImageNet VID format (see :func:`load_imagenet_vid`)."""
    DatasetCatalog.register(
        name,
        lambda: load_imagenet_vid(
            root,
            split_file,
            subset=subset,
            all_frames=all_frames,
            categories=categories,
            dataset_name=name,
        ),
    )
    MetadataCatalog.get(name).set(
        thing_classes=[c for c, _ in categories],
        thing_wnids=[w for _, w in categories],
        evaluator_type="coco",
    )


def sample_key_frames(num_frames: int, max_frames: int = 15) -> List[int]:
    """At most ``max_frames`` frame indices spread evenly over a video (FGFA's training frames)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / max_frames) for i in range(max_frames)]


def _count_frames(video_dir: str) -> int:
    names = sorted(f for f in os.listdir(video_dir) if f.endswith(".JPEG"))
    expected = ["%0*d.JPEG" % (_FRAME_DIGITS, i) for i in range(len(names))]
    if names != expected:
        raise ValueError(
            f"{video_dir}: frames must be named 000000.JPEG, 000001.JPEG, ... without gaps"
        )
    return len(names)


def _video_dirs(data_root: str, split: str) -> List[str]:
    """Videos under Data/VID/<split>, relative to Data/VID: ``train/<part>/<video>``, ``val/<video>``."""
    base = os.path.join(data_root, split)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{base} does not exist")
    videos = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        if any(f.endswith(".JPEG") for f in filenames):
            videos.append(os.path.relpath(dirpath, data_root).replace(os.sep, "/"))
    return videos


def prepare_imagenet_vid_splits(
    root: str, *, max_frames: int = 15, with_det: bool = True
) -> Dict[str, int]:
    """Write the FGFA-style split files under ``root/ImageSets`` from the raw ILSVRC2015 tree.

    VID_train_15frames.txt: at most ``max_frames`` frames of each training video;
    VID_val_videos.txt: all validation videos; DET_train_30classes.txt: the DET training images
    that show at least one of the 30 VID classes (DET images without their JPEG are skipped with a
    warning). Returns the number of lines written per file.
    """
    data_vid = os.path.join(root, "Data", "VID")
    out_dir = os.path.join(root, "ImageSets")
    os.makedirs(out_dir, exist_ok=True)
    written = {}

    lines = []
    for video in _video_dirs(data_vid, "train"):
        length = _count_frames(os.path.join(data_vid, video))
        lines += [
            f"{video} {len(lines) + 1} {f} {length}" for f in sample_key_frames(length, max_frames)
        ]
    written["VID_train_15frames.txt"] = _write_lines(
        os.path.join(out_dir, "VID_train_15frames.txt"), lines
    )

    lines, start = [], 1
    for video in _video_dirs(data_vid, "val"):
        length = _count_frames(os.path.join(data_vid, video))
        lines.append(f"{video} {start} 0 {length}")
        start += length
    written["VID_val_videos.txt"] = _write_lines(os.path.join(out_dir, "VID_val_videos.txt"), lines)

    if with_det:
        wnids = {w for _, w in VID_CATEGORIES}
        ann_det = os.path.join(root, "Annotations", "DET")
        if not os.path.isdir(os.path.join(ann_det, "train")):
            raise FileNotFoundError(
                f"{os.path.join(ann_det, 'train')} does not exist (pass with_det=False / --no-det "
                "to build the VID split files only)"
            )
        lines, missing = [], []
        for dirpath, dirnames, filenames in os.walk(os.path.join(ann_det, "train")):
            dirnames.sort()
            for f in sorted(filenames):
                if not f.endswith(".xml"):
                    continue
                xml_file = os.path.join(dirpath, f)
                try:
                    names = {
                        n.text.strip() for n in ET.parse(xml_file).getroot().iter("name") if n.text
                    }
                except ET.ParseError as e:
                    raise ValueError(f"{xml_file}: not valid XML ({e})") from e
                if not names & wnids:
                    continue
                image = os.path.relpath(xml_file, ann_det)[: -len(".xml")].replace(os.sep, "/")
                if not os.path.isfile(os.path.join(root, "Data", "DET", image + ".JPEG")):
                    missing.append(image)
                    continue
                lines.append(f"{image} {len(lines) + 1}")
        if missing:
            logger.warning(
                f"skipped {len(missing)} DET images without a JPEG (first: {missing[0]})"
            )
        written["DET_train_30classes.txt"] = _write_lines(
            os.path.join(out_dir, "DET_train_30classes.txt"), lines
        )
    return written


def _write_lines(path: str, lines: List[str]) -> int:
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return len(lines)
