"""Config values that cannot work, refused before a run starts rather than hours into it (a
division by zero at the first checkpoint, an error at the first small image, an evaluation that
fails after training)."""

import logging
import math
from functools import reduce

import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_backbone

from .config import CHOICES, current_choice

__all__ = ["ConfigError", "check_config", "smallest_feature_map"]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Config values that cannot work; the message names each key, its value and the rule."""


def check_config(cfg) -> None:
    """Raise :class:`ConfigError` listing every invalid value of ``cfg`` (a config with
    :func:`add_video_config`'s keys); warn about legal values that are probably a mistake.

    Checked: SOLVER (CHECKPOINT_PERIOD >= 1, MAX_ITER >= 1, IMS_PER_BATCH >= 1, finite BASE_LR
    >= 0, STEPS increasing, >= 1 and without MAX_ITER, WARMUP_ITERS >= 0), TEST.EVAL_PERIOD >= 0,
    DATALOADER.NUM_WORKERS >= 0, MODEL.ROI_HEADS.NUM_CLASSES >= 1 and equal to the classes of each
    dataset whose ``thing_classes`` are known, INPUT.SUPPORT (NUM_* >= 0, TEST_STRIDE >= 1,
    TRAIN_FRAME_RANGE -1 or >= 1), each key of :data:`~.config.CHOICES` (one of its values or a
    former name of one, :data:`~.config.RENAMED_CHOICES`), and with Temporal RoI Align on: TOPK
    >= 1 and at most the locations of the smallest support feature map
    (:func:`smallest_feature_map`), NUM_ATTENTION_BLOCKS >= 0, CHUNK_SIZE >= 1.
    Warned: no support frames (INPUT.SUPPORT.NUM_TEST or NUM_TRAIN 0) for a model that uses them.
    """
    errors = []

    def need(ok, key, value, rule):
        if not ok:
            errors.append(f"{key} {value!r}: {rule}")

    s = cfg.SOLVER
    need(
        s.CHECKPOINT_PERIOD >= 1,
        "SOLVER.CHECKPOINT_PERIOD",
        s.CHECKPOINT_PERIOD,
        "must be >= 1 (iterations between checkpoints; a value above MAX_ITER saves only model_final.pth)",
    )
    need(s.MAX_ITER >= 1, "SOLVER.MAX_ITER", s.MAX_ITER, "must be >= 1 (Detectron2's LR schedule needs an iteration)")
    need(s.IMS_PER_BATCH >= 1, "SOLVER.IMS_PER_BATCH", s.IMS_PER_BATCH, "must be >= 1")
    need(math.isfinite(s.BASE_LR) and s.BASE_LR >= 0, "SOLVER.BASE_LR", s.BASE_LR, "must be a finite number >= 0")
    steps = list(s.STEPS)
    need(
        all(x >= 1 for x in steps) and steps == sorted(set(steps)),
        "SOLVER.STEPS",
        tuple(steps),
        "must be increasing iterations >= 1",
    )
    need(
        s.MAX_ITER not in steps,
        "SOLVER.STEPS",
        tuple(steps),
        f"must not hold MAX_ITER {s.MAX_ITER} (Detectron2's LR schedule refuses it; later steps are ignored)",
    )
    need(s.WARMUP_ITERS >= 0, "SOLVER.WARMUP_ITERS", s.WARMUP_ITERS, "must be >= 0")
    need(
        cfg.TEST.EVAL_PERIOD >= 0,
        "TEST.EVAL_PERIOD",
        cfg.TEST.EVAL_PERIOD,
        "must be >= 0 (0: evaluate at the end only)",
    )
    need(cfg.DATALOADER.NUM_WORKERS >= 0, "DATALOADER.NUM_WORKERS", cfg.DATALOADER.NUM_WORKERS, "must be >= 0")

    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    need(num_classes >= 1, "MODEL.ROI_HEADS.NUM_CLASSES", num_classes, "must be >= 1")
    for dataset in tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST):
        classes = MetadataCatalog.get(dataset).get("thing_classes", None)
        need(
            classes is None or len(classes) == num_classes,
            "MODEL.ROI_HEADS.NUM_CLASSES",
            num_classes,
            f"must be the number of classes of dataset '{dataset}', {len(classes or ())}",
        )

    sup = cfg.INPUT.SUPPORT
    need(sup.NUM_TRAIN >= 0, "INPUT.SUPPORT.NUM_TRAIN", sup.NUM_TRAIN, "must be >= 0")
    need(sup.NUM_TEST >= 0, "INPUT.SUPPORT.NUM_TEST", sup.NUM_TEST, "must be >= 0")
    need(sup.TEST_STRIDE >= 1, "INPUT.SUPPORT.TEST_STRIDE", sup.TEST_STRIDE, "must be >= 1")
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
    if tra.ENABLED:
        need(
            tra.NUM_ATTENTION_BLOCKS >= 0,
            "MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS",
            tra.NUM_ATTENTION_BLOCKS,
            "must be >= 0 (0: average instead of attention)",
        )
        need(tra.CHUNK_SIZE >= 1, "MODEL.TEMPORAL_ROI_ALIGN.CHUNK_SIZE", tra.CHUNK_SIZE, "must be >= 1")
        need(tra.TOPK >= 1, "MODEL.TEMPORAL_ROI_ALIGN.TOPK", tra.TOPK, "must be >= 1")
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

    uses_supports = tra.ENABLED or cfg.MODEL.ROI_BOX_HEAD.NAME == "SelsaBoxHead"
    for key, value, when in (("NUM_TEST", sup.NUM_TEST, "evaluates"), ("NUM_TRAIN", sup.NUM_TRAIN, "trains")):
        if uses_supports and value == 0:
            logger.warning(
                f"INPUT.SUPPORT.{key} is 0: this video model {when} each frame without support frames, "
                "as a single-frame detector (set it >= 1 unless that is the experiment)"
            )


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
