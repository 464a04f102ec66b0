"""Toy configs at test sizes: the detector variants (tiny_cfg), VideoPredictor's (predictor_cfg) and the
video mappers' (small_cfg)."""

import os

from detectron2.config import get_cfg

from temporal_roi_align.config import add_video_config
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file

from helpers import REPO

# Config overrides for a few training iterations of a toy config: 2 frame groups of 64 px a batch,
# no warm-up, no LR steps.
TINY_TRAINING = [
    "SOLVER.IMS_PER_BATCH", 2,
    "INPUT.MIN_SIZE_TRAIN", (64,),
    "INPUT.MIN_SIZE_TEST", 64,
    "SOLVER.WARMUP_ITERS", 0,
    "SOLVER.STEPS", (),
]  # fmt: skip


def tiny_cfg(variant, *opts):
    """configs/toy/<variant>.yaml on the CPU with the toy datasets' 3 classes, then ``opts``."""
    return setup_cfg(
        get_config_file(f"toy/{variant}.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 3, *opts],
    )


def predictor_cfg(config="troi", **overrides):
    """The toy config at a tiny size, MODEL.DEVICE as Detectron2's get_cfg leaves it ("cuda")."""
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "toy", f"{config}.yaml"))
    cfg.merge_from_list(
        ["INPUT.MIN_SIZE_TEST", 64, "INPUT.SUPPORT.NUM_TEST", 2, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    )
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def small_cfg(**support):
    """Detectron2's defaults with the video keys, at 64 px, with INPUT.SUPPORT's ``support`` values."""
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (64,), 200
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 200
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3  # the toy datasets' (the loaders check it)
    for k, v in support.items():
        setattr(cfg.INPUT.SUPPORT, k, v)
    return cfg
