"""ImageNet VID / DET (ILSVRC2015) in their on-disk format, with FGFA-style split files.

Layout under ``root`` (the ``ILSVRC2015`` folder)::

    Data/VID/{train,val}/<video>/<%06d>.JPEG      Annotations/VID/{train,val}/<video>/<%06d>.xml
    Data/DET/train/<image>.JPEG                   Annotations/DET/train/<image>.xml
    ImageSets/VID_train_15frames.txt   "<video> <n> <frame index, 0-based> <video length>" per line
    ImageSets/VID_val_videos.txt       "<video> <n> <first frame, 0> <video length>" per line
    ImageSets/DET_train_30classes.txt  "<image> <n>" per line

``<video>``/``<image>`` are relative to ``Data/VID``/``Data/DET``; ``<n>`` is a running index
that the loader ignores. The frame column is read as FGFA's code reads it: the 0-based number of
the frame's file (``<frame>`` -> ``%06d.JPEG``). mmtrack's converter to COCO-style JSON
(``imagenet2coco_vid.py``) reads the same column as 1-based (it subtracts 1), so the two pick
frames one apart; the ``*_cocofmt`` datasets follow the JSON.
"""

import logging
import math
import os
import xml.etree.ElementTree as ET
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .common import (
    CountedWarning,
    DatasetError,
    DroppedBoxes,
    clip_box,
    count_numbered_frames,
    frame_pattern,
    frame_record,
    read_text_lines,
)

__all__ = [
    "VID_CATEGORIES",
    "load_imagenet_vid",
    "register_imagenet_vid",
    "parse_vid_xml",
    "sample_key_frames",
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
        raise DatasetError(f"{xml_file}: missing <{path}>")
    return found.text.strip()


def _number(node: ET.Element, path: str, xml_file: str, kind=float, default=None):
    if default is not None and node.find(path) is None:
        return default
    text = _text(node, path, xml_file)
    try:
        value = kind(text)
    except ValueError:
        raise DatasetError(f"{xml_file}: <{path}> is not a number: {text!r}") from None
    if not math.isfinite(value):  # float() reads "nan" and "inf"
        raise DatasetError(f"{xml_file}: <{path}> is not a finite number: {text!r}")
    return value


def parse_vid_xml(xml_file: str, wnid_to_id: Dict[str, int], dropped: DroppedBoxes, *, tracks: bool = False):
    """Parse one VID/DET annotation file.

    Returns ``(root, height, width, annotations, unknown)``: ``root`` the parsed XML's root
    element, ``unknown`` the WordNet ids skipped because they are not in ``wnid_to_id``. With
    ``tracks`` (VID) every object needs a ``<trackid>`` (a ValueError naming the file otherwise:
    the motion IoU follows tracks); without (DET), objects get their index in the file as track
    id. Boxes are clipped to the image; boxes with nothing left inside are dropped and counted in
    ``dropped``.
    """
    if not os.path.isfile(xml_file):
        raise FileNotFoundError(f"{xml_file}: annotation file does not exist")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        raise DatasetError(f"{xml_file}: not valid XML ({e})") from e
    width = _number(root, "size/width", xml_file, int)
    height = _number(root, "size/height", xml_file, int)
    if width <= 0 or height <= 0:
        raise DatasetError(f"{xml_file}: image size {width}x{height} is empty")
    annotations, unknown = [], []
    for index, obj in enumerate(root.findall("object")):
        wnid = _text(obj, "name", xml_file)
        if tracks and obj.find("trackid") is None:
            raise DatasetError(f"{xml_file}: object {index} ({wnid}) has no <trackid> (every VID object needs one)")
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
    return root, height, width, annotations, unknown


def _read_split(split_file: str) -> List[Tuple[int, List[str]]]:
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"{split_file}: split file does not exist")
    return [(n, line.split()) for n, line in read_text_lines(split_file) if line.strip()]


def _check_length_on_disk(data_dir: str, length: int, where: str):
    """The split file's video length must be the number of frames in ``data_dir``: a shorter one
    would leave frames out of the evaluation, a longer one fail when a support is read."""
    on_disk, missing = count_numbered_frames(data_dir, _FRAME_DIGITS, ".JPEG")
    if missing is not None:
        raise DatasetError(f"{where}: in {data_dir}, {missing} is missing (frames are numbered without gaps)")
    if on_disk != length:
        raise DatasetError(
            f"{where}: video length {length}, but {data_dir} holds {on_disk} frames "
            f"(000000.JPEG to {on_disk - 1:06d}.JPEG); fix the split file or the download"
        )


def _parse_vid_line(split_file: str, lineno: int, fields: List[str]) -> Tuple[str, int, int]:
    where = f"{split_file}:{lineno}"
    if len(fields) != 4:
        raise DatasetError(f"{where}: expected '<video> <n> <frame> <video length>', got {' '.join(fields)!r}")
    try:
        frame, length = int(fields[2]), int(fields[3])
    except ValueError:
        raise DatasetError(f"{where}: frame index and video length must be integers") from None
    if length < 1 or not 0 <= frame < length:
        raise DatasetError(
            f"{where}: frame {frame} is outside a video of {length} frames (the frame column is read "
            f"as FGFA does, as the 0-based file number 0..{length - 1}; a file numbered from 1, as "
            "mmtrack's converter reads it, needs 1 subtracted)"
        )
    return fields[0], frame, length


def load_imagenet_vid(
    root: str,
    split_file: str,
    *,
    subset: str = "VID",
    all_frames: bool = False,
    categories: Sequence[Tuple[str, str]] = VID_CATEGORIES,
    dataset_name: str = "",
    frame_fields: Optional[Callable[[ET.Element], dict]] = None,
) -> List[dict]:
    """Load the frames (``subset="VID"``) or images (``"DET"``) listed in a split file.

    Args:
        root: the ``ILSVRC2015`` folder.
        split_file: path of the split file, relative to ``root`` or absolute.
        all_frames: VID only; every frame of each listed video instead of the listed frames.
        categories: (name, WordNet id) pairs; objects of other classes are skipped.
        frame_fields: extra fields of each frame's dict, read from the root element of its XML
            (for datasets in this format that annotate more than ImageNet VID does).

    Every dict knows its whole video (``video_frames``, a pattern): supports may come from any
    frame of it, also from frames the split file does not list. A DET image is a 1-frame video.
    Each VID video's folder is listed once: a video length in the split file that differs from
    the frames on disk, or frames with a gap, is a ValueError naming the split file's line.
    """
    if subset not in ("VID", "DET"):
        raise DatasetError(f"subset must be 'VID' or 'DET', got {subset!r}")
    split_file = os.path.join(root, split_file)
    dataset_name = dataset_name or split_file
    wnid_to_id = {wnid: i for i, (_, wnid) in enumerate(categories)}
    lines = _read_split(split_file)
    dropped, unknown, dicts = DroppedBoxes(), [], []
    repeated = CountedWarning("skipped {count} lines that repeat an earlier line's frame (it would be loaded twice)")

    def load_frame(video, frame, length, frames, xml_file, jpeg_file, image_id):
        xml_root, height, width, annos, skipped = parse_vid_xml(xml_file, wnid_to_id, dropped, tracks=subset == "VID")
        unknown.extend(skipped)
        record = frame_record(
            jpeg_file,
            image_id,
            height,
            width,
            video_id=video,
            frame_id=frame,
            video_length=length,
            video_frames=frames,
            annotations=annos,
        )
        if frame_fields is not None:
            record.update(frame_fields(xml_root))
        dicts.append(record)

    if subset == "DET":
        listed = {}
        for lineno, fields in lines:
            if len(fields) not in (1, 2):
                raise DatasetError(f"{split_file}:{lineno}: expected '<image> <n>', got {' '.join(fields)!r}")
            if fields[0] in listed:
                repeated.add(f"{split_file}:{lineno}", f"image {fields[0]} of line {listed[fields[0]]}")
                continue
            listed[fields[0]] = lineno
            jpeg = os.path.join(root, "Data", "DET", fields[0] + ".JPEG")
            xml = os.path.join(root, "Annotations", "DET", fields[0] + ".xml")
            load_frame(f"DET/{fields[0]}", 0, 1, (jpeg,), xml, jpeg, f"DET/{fields[0]}")
    else:
        videos: "OrderedDict[str, Tuple[int, List[int]]]" = OrderedDict()
        listed = {}
        for lineno, fields in lines:
            video, frame, length = _parse_vid_line(split_file, lineno, fields)
            if video not in videos:
                data_dir = os.path.join(root, "Data", "VID", video)
                if not os.path.isdir(data_dir):
                    raise FileNotFoundError(f"{split_file}:{lineno}: video directory {data_dir} does not exist")
                _check_length_on_disk(data_dir, length, f"{split_file}:{lineno}")
                videos[video] = (length, [])
            elif videos[video][0] != length:
                raise DatasetError(f"{split_file}:{lineno}: video {video} has two different lengths")
            if (video, frame) in listed and not all_frames:
                repeated.add(f"{split_file}:{lineno}", f"frame {frame} of {video}, line {listed[video, frame]}")
                continue
            listed[video, frame] = lineno
            videos[video][1].append(frame)
        for video, (length, frames) in videos.items():
            data_dir = os.path.join(root, "Data", "VID", video)
            ann_dir = os.path.join(root, "Annotations", "VID", video)
            pattern = frame_pattern(data_dir, _FRAME_DIGITS, ".JPEG")
            for frame in range(length) if all_frames else frames:
                name = "%0*d" % (_FRAME_DIGITS, frame)
                load_frame(
                    f"VID/{video}",
                    frame,
                    length,
                    pattern,
                    os.path.join(ann_dir, name + ".xml"),
                    pattern.format(frame),
                    f"VID/{video}/{name}",
                )

    dropped.log(dataset_name)
    repeated.log(dataset_name)
    if unknown:
        # Expected for DET, whose images also show the other 170 DET classes.
        log = logger.info if subset == "DET" else logger.warning
        log(
            f"{dataset_name}: skipped {len(unknown)} objects of classes not in the dataset's "
            f"list ({', '.join(sorted(set(unknown))[:5])}...)"
        )
    logger.info(f"Loaded {len(dicts)} {subset} images from {split_file}")
    return dicts


def register_imagenet_vid(
    name: str,
    root: Union[str, Callable[[], str]],
    split_file: str,
    *,
    subset: str = "VID",
    all_frames: bool = False,
    categories: Sequence[Tuple[str, str]] = VID_CATEGORIES,
    frame_fields: Optional[Callable[[ET.Element], dict]] = None,
    hint: str = "",
    **metadata,
):
    """Register a dataset in the ImageNet VID format (see :func:`load_imagenet_vid`).

    ``root`` may be a function returning the folder, called when the dataset is loaded (the
    builtin names resolve ``$DETECTRON2_DATASETS`` then). A missing folder or split file raises
    ``FileNotFoundError`` naming the path, followed by ``hint``. ``metadata`` is added to the
    name's metadata (``thing_classes``, ``thing_wnids`` and ``evaluator_type="vid"`` are set).
    """

    def load():
        folder = root() if callable(root) else root
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Dataset '{name}': folder {folder} does not exist. {hint}".rstrip())
        if not os.path.isfile(os.path.join(folder, split_file)):
            raise FileNotFoundError(
                f"Dataset '{name}': split file {os.path.join(folder, split_file)} does not exist. {hint}".rstrip()
            )
        return load_imagenet_vid(
            folder,
            split_file,
            subset=subset,
            all_frames=all_frames,
            categories=categories,
            dataset_name=name,
            frame_fields=frame_fields,
        )

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=[c for c, _ in categories],
        thing_wnids=[w for _, w in categories],
        evaluator_type="vid",
        **metadata,
    )


def sample_key_frames(num_frames: int, max_frames: int = 15) -> List[int]:
    """At most ``max_frames`` frame indices spread evenly over a video (FGFA's training frames)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / max_frames) for i in range(max_frames)]
