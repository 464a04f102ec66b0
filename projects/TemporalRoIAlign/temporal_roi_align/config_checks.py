"""Config values that cannot work, refused before a run starts rather than hours into it (a
division by zero at the first checkpoint, an error at the first small image, an evaluation that
fails after training)."""

import inspect
import logging
import math
from functools import reduce
from typing import NamedTuple

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_backbone
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig, OmegaConf

from .config import CHOICES, current_choice

__all__ = [
    "LAZY_RANGES",
    "RANGES",
    "ConfigError",
    "Range",
    "check_config",
    "check_lazy_config",
    "check_lazy_overrides",
    "check_num_classes",
    "range_errors",
    "smallest_feature_map",
]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Config values that cannot work; the message names each key, its value and the rule."""


class Range(NamedTuple):
    """The finite numbers from ``low`` (excluded with ``low_open``) to ``high``, odd ones only
    with ``odd``."""

    low: float
    high: float = math.inf
    low_open: bool = False
    odd: bool = False

    def holds(self, number) -> bool:
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            return False
        above = number > self.low if self.low_open else number >= self.low
        return above and number <= self.high and (not self.odd or number % 2 == 1)

    def describe(self, floats: bool) -> str:
        """The rule, e.g. "in [0, 1]", "an odd number >= 1", "a finite number > 0" (``floats``)."""
        low = f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high != math.inf:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return f"{'an odd number ' if self.odd else 'a finite number ' if floats else ''}{low}"


FRACTION = Range(0, 1)  # probabilities, fractions, IoU and score thresholds
COUNT = Range(1)  # sizes, counts, periods
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
ODD_SIZE = Range(1, odd=True)
IOU_THRESHOLD = Range(0, 1, low_open=True)  # Detectron2's Matcher refuses 0

# The numbers each numeric key can take, and what it is when that helps (each number of a list
# or of a list of lists): check_config refuses any other. Rules between keys are in check_config.
RANGES = {
    "SOLVER.MAX_ITER": (COUNT, "Detectron2's LR schedule needs an iteration"),
    "SOLVER.CHECKPOINT_PERIOD": (
        COUNT,
        "iterations between checkpoints; a value above MAX_ITER saves only model_final.pth",
    ),
    "SOLVER.IMS_PER_BATCH": (COUNT, ""),
    "SOLVER.BASE_LR": (NON_NEGATIVE, ""),
    "SOLVER.WARMUP_ITERS": (NON_NEGATIVE, ""),
    "SOLVER.WARMUP_FACTOR": (FRACTION, "the LR of the first iteration, as a fraction of BASE_LR"),
    "SOLVER.GAMMA": (POSITIVE, "the LR's factor at each of SOLVER.STEPS"),
    "SOLVER.MOMENTUM": (FRACTION, ""),
    "SOLVER.WEIGHT_DECAY": (NON_NEGATIVE, ""),
    "SOLVER.WEIGHT_DECAY_NORM": (NON_NEGATIVE, ""),
    "SOLVER.BIAS_LR_FACTOR": (NON_NEGATIVE, ""),
    "SOLVER.REFERENCE_WORLD_SIZE": (NON_NEGATIVE, "0: no rescaling"),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": (POSITIVE, ""),
    "TEST.EVAL_PERIOD": (NON_NEGATIVE, "0: evaluate at the end only"),
    "TEST.DETECTIONS_PER_IMAGE": (COUNT, ""),
    "DATALOADER.NUM_WORKERS": (NON_NEGATIVE, ""),
    "INPUT.MIN_SIZE_TRAIN": (COUNT, ""),
    "INPUT.MAX_SIZE_TRAIN": (COUNT, ""),
    "INPUT.MIN_SIZE_TEST": (NON_NEGATIVE, "0: no resizing"),
    "INPUT.MAX_SIZE_TEST": (COUNT, ""),
    "INPUT.REFERENCE_FRAME_RANGE": (COUNT, ""),
    "INPUT.SUPPORT.NUM_TRAIN": (NON_NEGATIVE, ""),
    "INPUT.SUPPORT.NUM_TEST": (NON_NEGATIVE, ""),
    "INPUT.SUPPORT.TEST_STRIDE": (COUNT, ""),
    "MODEL.PIXEL_STD": (POSITIVE, ""),
    "MODEL.ANCHOR_GENERATOR.SIZES": (POSITIVE, ""),
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": (POSITIVE, ""),
    "MODEL.CHANNEL_REDUCTION.OUT_CHANNELS": (COUNT, ""),
    "MODEL.RPN.IOU_THRESHOLDS": (IOU_THRESHOLD, ""),
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": (COUNT, ""),
    "MODEL.RPN.POSITIVE_FRACTION": (FRACTION, ""),
    "MODEL.RPN.NMS_THRESH": (FRACTION, ""),
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": (COUNT, ""),
    "MODEL.RPN.PRE_NMS_TOPK_TEST": (COUNT, ""),
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": (COUNT, ""),
    "MODEL.RPN.POST_NMS_TOPK_TEST": (COUNT, ""),
    "MODEL.ROI_HEADS.NUM_CLASSES": (COUNT, ""),
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": (IOU_THRESHOLD, ""),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": (COUNT, ""),
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": (FRACTION, ""),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": (FRACTION, "detections scoring less are dropped"),
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": (FRACTION, ""),
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": (COUNT, ""),
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": (NON_NEGATIVE, "0: adaptive"),
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": (COUNT, ""),
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": (NON_NEGATIVE, "0: adaptive"),
    "MODEL.ROI_TRACK_HEAD.POOLER_RESOLUTION": (COUNT, ""),
    "MODEL.ROI_TRACK_HEAD.POOLER_SAMPLING_RATIO": (NON_NEGATIVE, "0: adaptive"),
    "MODEL.ROI_TRACK_HEAD.NUM_FC": (COUNT, ""),
    "MODEL.ROI_TRACK_HEAD.FC_DIM": (COUNT, ""),
    "MODEL.ROI_TRACK_HEAD.LOSS_WEIGHT": (NON_NEGATIVE, ""),
    "MODEL.ROI_TRACK_HEAD.BATCH_SIZE_PER_IMAGE": (COUNT, ""),
    "MODEL.ROI_TRACK_HEAD.POSITIVE_FRACTION": (FRACTION, ""),
    "MODEL.ROI_TRACK_HEAD.IOU_THRESHOLD": (FRACTION, ""),
    "MODEL.MASKTRACK_TRACKER.NUM_FRAMES_RETAIN": (COUNT, ""),
    "MODEL.TEMPORAL_ROI_ALIGN.TOPK": (COUNT, ""),
    "MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS": (NON_NEGATIVE, "0: average instead of attention"),
    "MODEL.TEMPORAL_ROI_ALIGN.CHUNK_SIZE": (COUNT, ""),
    "MODEL.SELSA.NUM_ATTENTION_GROUPS": (COUNT, ""),
    "MODEL.SELSA.NUM_MODULES": (COUNT, ""),
    "MODEL.SELSA.SUPPORT_PROPOSALS_TRAIN": (COUNT, ""),
    "MODEL.SELSA.SUPPORT_PROPOSALS_TEST": (COUNT, ""),
    "MODEL.FLOW_NET.INPUT_SCALE": (POSITIVE, ""),
    "MODEL.FLOW_NET.PIXEL_STD": (POSITIVE, ""),
    "MODEL.FLOW_NET.WIDTH_DIVISOR": (COUNT, ""),
    "MODEL.FGFA.NUM_EMBED_CONVS": (COUNT, ""),
    "MODEL.FGFA.EMBED_KERNEL_SIZE": (ODD_SIZE, ""),
    "MODEL.TAM.KERNEL_SIZE": (ODD_SIZE, ""),
    "VIDEO.CACHE_FRAMES": (NON_NEGATIVE, ""),
    "VIDEO.KEY_FRAME_INTERVAL": (COUNT, ""),
    "VIDEO.SEQ_NMS.LINK_IOU": (FRACTION, ""),
    "VIDEO.SEQ_NMS.NMS_IOU": (FRACTION, ""),
}


# RANGES for the keys of the lazy configs (configs/common): a key a config does not have is skipped.
LAZY_RANGES = {
    "train.max_iter": (COUNT, ""),
    "train.checkpointer.period": (COUNT, "iterations between checkpoints"),
    "train.checkpointer.max_to_keep": (COUNT, ""),
    "train.eval_period": (NON_NEGATIVE, "0: evaluate at the end only"),
    "train.log_period": (COUNT, ""),
    "optimizer.lr": (NON_NEGATIVE, ""),
    "optimizer.momentum": (FRACTION, ""),
    "optimizer.weight_decay": (NON_NEGATIVE, ""),
    "lr_multiplier.warmup_length": (FRACTION, "a fraction of the schedule"),
    "lr_multiplier.warmup_factor": (FRACTION, "the LR of the first iteration, as a fraction of the base LR"),
    "dataloader.train.total_batch_size": (COUNT, ""),
    "dataloader.train.num_workers": (NON_NEGATIVE, ""),
    "dataloader.test.num_workers": (NON_NEGATIVE, ""),
    "dataloader.train.mapper.support_selector.num": (NON_NEGATIVE, ""),
    "dataloader.test.mapper.support_selector.num": (NON_NEGATIVE, ""),
    "dataloader.test.mapper.support_selector.stride": (COUNT, ""),
    "model.pixel_std": (POSITIVE, ""),
    "model.cache_frames": (NON_NEGATIVE, ""),
    "model.support_proposals_train": (COUNT, ""),
    "model.support_proposals_test": (COUNT, ""),
    "model.proposal_generator.anchor_matcher.thresholds": (IOU_THRESHOLD, ""),
    "model.proposal_generator.batch_size_per_image": (COUNT, ""),
    "model.proposal_generator.positive_fraction": (FRACTION, ""),
    "model.proposal_generator.pre_nms_topk": (COUNT, ""),
    "model.proposal_generator.post_nms_topk": (COUNT, ""),
    "model.proposal_generator.nms_thresh": (FRACTION, ""),
    "model.roi_heads.proposal_matcher.thresholds": (IOU_THRESHOLD, ""),
    "model.roi_heads.batch_size_per_image": (COUNT, ""),
    "model.roi_heads.positive_fraction": (FRACTION, ""),
    "model.roi_heads.box_pooler.topk": (COUNT, ""),
    "model.roi_heads.box_pooler.num_attention_blocks": (NON_NEGATIVE, "0: average instead of attention"),
    "model.roi_heads.box_predictor.test_score_thresh": (FRACTION, "detections scoring less are dropped"),
    "model.roi_heads.box_predictor.test_nms_thresh": (FRACTION, ""),
}


def range_errors(table, value_of) -> list:
    """``KEY VALUE: rule`` of each key of ``table`` (key -> (:class:`Range`, note)) whose value,
    ``value_of(key)``, breaks its rule; a list must hold numbers, each checked. A key whose value
    is None (absent from a lazy config) is skipped."""
    errors = []
    for key, (rule, note) in table.items():
        value = value_of(key)
        if value is None:
            continue
        numbers = list(_numbers(value))
        if numbers and all(rule.holds(n) for n in numbers):
            continue
        floats = any(isinstance(n, float) for n in numbers)
        each = "a list of numbers, each " if isinstance(value, _LISTS) else ""
        errors.append(f"{key} {value!r}: must be {each}{rule.describe(floats)}" + (f" ({note})" if note else ""))
    return errors


_LISTS = (list, tuple, ListConfig)


def _numbers(value):
    if isinstance(value, _LISTS):
        for item in value:
            yield from _numbers(item)
    else:
        yield value


def check_config(cfg) -> None:
    """Raise :class:`ConfigError` listing every invalid value of ``cfg`` (a config with
    :func:`add_video_config`'s keys); warn about legal values that are probably a mistake.

    Checked: each key of :data:`RANGES` (its numbers in their range), each key of
    :data:`~.config.CHOICES` (one of its values or a former name of one,
    :data:`~.config.RENAMED_CHOICES`), and rules between keys: SOLVER.STEPS increasing
    iterations >= 1, WARMUP_ITERS <= MAX_ITER, the IoU thresholds
    of the RPN and ROI heads increasing with one label more than thresholds,
    MODEL.ROI_HEADS.NUM_CLASSES equal to the classes of each dataset whose ``thing_classes``
    are known (the loaders check the others when they read them: :func:`check_num_classes`),
    INPUT.SUPPORT.TRAIN_FRAME_RANGE -1 or >= 1, and with Temporal RoI Align on, TOPK
    at most the locations of the smallest support feature map (:func:`smallest_feature_map`).
    Warned: SOLVER.STEPS at or after MAX_ITER (they never apply; a short run of a long schedule is
    legitimate), no support frames (INPUT.SUPPORT.NUM_TEST or NUM_TRAIN 0) for a model that uses them.
    """
    errors = range_errors(RANGES, lambda key: reduce(getattr, key.split("."), cfg))

    def need(ok, key, value, rule):
        if not ok:
            errors.append(f"{key} {value!r}: {rule}")

    s = cfg.SOLVER
    steps = list(s.STEPS)
    need(
        all(x >= 1 for x in steps) and steps == sorted(set(steps)),
        "SOLVER.STEPS",
        tuple(steps),
        "must be increasing iterations >= 1",
    )
    need(
        s.WARMUP_ITERS <= s.MAX_ITER,
        "SOLVER.WARMUP_ITERS",
        s.WARMUP_ITERS,
        f"must be at most MAX_ITER {s.MAX_ITER} (the LR would never reach BASE_LR; for a shorter run "
        "scale it, or set SOLVER.WARMUP_ITERS 0)",
    )
    for head in ("MODEL.RPN", "MODEL.ROI_HEADS"):
        node = reduce(getattr, head.split(".")[1:], cfg.MODEL)
        thresholds, labels = list(node.IOU_THRESHOLDS), list(node.IOU_LABELS)
        need(
            thresholds == sorted(thresholds),
            f"{head}.IOU_THRESHOLDS",
            node.IOU_THRESHOLDS,
            "must be increasing",
        )
        need(
            len(labels) == len(thresholds) + 1 and set(labels) <= {-1, 0, 1},
            f"{head}.IOU_LABELS",
            node.IOU_LABELS,
            f"must be {len(thresholds) + 1} labels (one more than IOU_THRESHOLDS), each -1, 0 or 1",
        )

    errors += num_classes_errors(cfg.MODEL.ROI_HEADS.NUM_CLASSES, (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST))

    sup = cfg.INPUT.SUPPORT
    need(
        sup.TRAIN_FRAME_RANGE == -1 or sup.TRAIN_FRAME_RANGE >= 1,
        "INPUT.SUPPORT.TRAIN_FRAME_RANGE",
        sup.TRAIN_FRAME_RANGE,
        "must be -1 (anywhere in the video) or >= 1 (0 gives copies of the target)",
    )
    for key, choices in CHOICES.items():
        value = reduce(getattr, key.split("."), cfg)
        need(current_choice(key, value) in choices, key, value, f"must be one of {choices}")

    tra = cfg.MODEL.TEMPORAL_ROI_ALIGN
    if tra.ENABLED and tra.TOPK >= 1 and cfg.INPUT.MIN_SIZE_TRAIN:
        smallest = smallest_feature_map(cfg)
        if smallest is not None:
            cells, side, feature, stride, size = smallest
            need(
                tra.TOPK <= cells,
                "MODEL.TEMPORAL_ROI_ALIGN.TOPK",
                tra.TOPK,
                f"must be at most the {cells} locations ({side}x{side}) of the smallest support map: "
                f"'{feature}' (stride {stride}) of a square image resized to {size} px by INPUT.MIN_SIZE_*/MAX_SIZE_*",
            )
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))

    late = [x for x in steps if x >= s.MAX_ITER]
    if late:
        # Detectron2 warns too: a short smoke run of a long schedule is legitimate.
        logger.warning(
            f"SOLVER.STEPS {tuple(steps)}: {late} at or after MAX_ITER {s.MAX_ITER} never apply "
            '(for a shorter run scale them, or set SOLVER.STEPS "()")'
        )
    uses_supports = tra.ENABLED or cfg.MODEL.ROI_BOX_HEAD.NAME == "SelsaBoxHead"
    for key, value, when in (("NUM_TEST", sup.NUM_TEST, "evaluates"), ("NUM_TRAIN", sup.NUM_TRAIN, "trains")):
        if uses_supports and value == 0:
            logger.warning(
                f"INPUT.SUPPORT.{key} is 0: this video model {when} each frame without support frames, "
                "as a single-frame detector (set it >= 1 unless that is the experiment)"
            )


def num_classes_errors(num_classes: int, dataset_names, key="MODEL.ROI_HEADS.NUM_CLASSES", load=False):
    """A message for each dataset of ``dataset_names`` whose class count (its ``thing_classes``)
    is not ``num_classes``, the value of ``key``. A dataset whose classes are not known yet
    (registered without them: its loader records its JSON's classes) is loaded first with
    ``load``, else passed over."""
    errors = []
    for name in dict.fromkeys(dataset_names):
        metadata = MetadataCatalog.get(name)
        if load and metadata.get("thing_classes", None) is None and name in DatasetCatalog.list():
            logger.info(f"Loading dataset '{name}' for its classes, to check {key}")
            DatasetCatalog.get(name)
        classes = metadata.get("thing_classes", None)
        if classes is not None and len(classes) != num_classes:
            errors.append(
                f"{key} {num_classes!r}: must be the number of classes of dataset '{name}', {len(classes)} "
                f"({', '.join(map(str, classes[:8]))}{', ...' if len(classes) > 8 else ''})"
                + (
                    f": class {num_classes} would be taken for the background"
                    if len(classes) > num_classes
                    else ": the model would learn classes that no annotation has"
                )
            )
    return errors


def check_num_classes(num_classes: int, dataset_names, key="MODEL.ROI_HEADS.NUM_CLASSES") -> None:
    """Raise :class:`ConfigError` when a dataset of ``dataset_names`` has another number of
    classes than ``num_classes`` (the value of ``key``), loading those whose classes are not known
    yet (:func:`num_classes_errors`): run where the loaders read the datasets, before training or
    evaluating, as :func:`check_config` can only check the datasets registered with their classes."""
    errors = num_classes_errors(num_classes, dataset_names, key, load=True)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


def check_lazy_config(cfg, name: str) -> None:
    """Raise :class:`ConfigError` listing every value of the lazy config ``cfg`` (of file
    ``name``) outside its :data:`LAZY_RANGES`."""
    errors = range_errors(LAZY_RANGES, lambda key: OmegaConf.select(cfg, key, default=None))
    if errors:
        raise ConfigError(f"{name}: invalid config:\n  - " + "\n  - ".join(errors))


def check_lazy_overrides(cfg, overrides, name: str) -> None:
    """Raise :class:`ConfigError` listing each of ``overrides`` (``key=value``, as
    ``LazyConfig.apply_overrides`` takes them) that would not do what it says on the lazy config
    ``cfg`` (of file ``name``): a key that is neither in ``cfg`` nor an argument of the callable
    it belongs to (it would be added and never read), a number or bool replaced by a value of
    another type (``train.max_iter=four``), an override hydra cannot parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    errors = []
    for override in overrides:
        try:
            (parsed,) = parser.parse_overrides([override])
        except Exception as e:  # hydra's OverrideParseException, raised by its grammar
            errors.append(f"{override}: not an override key=value ({str(e).splitlines()[0]})")
            continue
        key = parsed.key_or_group
        if parsed.is_delete():
            errors.append(f"{override}: deleting a key is not supported")
            continue
        current = OmegaConf.select(cfg, key, default=_MISSING)
        if current is _MISSING:
            if not _is_argument(cfg, key):
                errors.append(f"{override}: the config has no key {key}")
            continue
        problem = _type_problem(current, parsed.value())
        if problem:
            errors.append(f"{override}: {key} {problem}")
    if errors:
        raise ConfigError(f"{name}: invalid overrides:\n  - " + "\n  - ".join(errors))


_MISSING = object()


def _is_argument(cfg, key: str) -> bool:
    """Whether ``key`` names an argument of the ``_target_`` of its parent node in ``cfg``."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if isinstance(target, str):
        target = locate(target)
    if target is None:
        return False
    params = inspect.signature(target).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _type_problem(current, new):
    """Why ``new`` cannot replace the number or bool ``current`` (None: it can)."""
    if new is None:
        return None
    if isinstance(current, bool):
        expected, ok = "a bool (true/false)", isinstance(new, bool)
    elif isinstance(current, int):
        expected, ok = "an integer", isinstance(new, int) and not isinstance(new, bool)
    elif isinstance(current, float):
        expected, ok = "a number", isinstance(new, (int, float)) and not isinstance(new, bool)
    else:
        return None
    return None if ok else f"must be {expected}, as its value {current!r} in the config, not {new!r}"


def smallest_feature_map(cfg):
    """``(locations, side, feature, stride, image side)`` of the smallest map the box pooler
    can get: the coarsest of MODEL.ROI_HEADS.IN_FEATURES on a square image resized to the
    smallest training or test size (``min(MIN_SIZE, MAX_SIZE)``). Other aspect ratios give larger
    maps up to a long side of ``MAX_SIZE**2 / MIN_SIZE``. None when the strides are unknown (a
    backbone that cannot be built on the meta device) or the test images are not resized."""
    try:
        with torch.device("meta"):  # shapes only: no weights allocated or initialized
            shapes = build_backbone(cfg).output_shape()
    except Exception as e:  # the model's own build reports a broken backbone config
        logger.debug(f"feature strides unknown ({type(e).__name__}: {e}); TOPK not checked")
        return None
    features = [f for f in cfg.MODEL.ROI_HEADS.IN_FEATURES if f in shapes]
    if not features or cfg.INPUT.MIN_SIZE_TEST == 0:
        return None
    stride, feature = max((shapes[f].stride, f) for f in features)
    size = min(
        min(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST),
        min(min(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN),
    )
    side = -(-size // stride)
    return side * side, side, feature, stride, size
