"""Setting up a run, as Detectron2's ``engine/defaults.py``: the checked config, the command line
and the output folder."""

import logging
import os

import detectron2.utils.comm as comm
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils.logger import setup_logger

from ..config import add_video_config, rename_former_choices
from ..config_checks import check_config

__all__ = ["argument_parser", "check_output_dir", "fall_back_to_cpu", "setup_cfg"]

logger = logging.getLogger(__name__)


def setup_cfg(config_file: str, opts=(), *, args=None):
    """
    Config from a yaml file plus ``KEY VALUE`` overrides, former names of values replaced by the
    current ones (:func:`rename_former_choices`), checked by :func:`check_config`. On a
    machine without CUDA the model runs on the CPU whatever MODEL.DEVICE says. With ``args``
    (argparse namespace of ``default_argument_parser``): the datasets must be registered, the
    output folder passes :func:`check_output_dir`, then Detectron2's ``default_setup`` runs
    (logging, output dir).
    """
    if not os.path.isfile(config_file):
        raise SystemExit(f"{config_file}: config file not found")
    cfg = get_cfg()
    add_video_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    rename_former_choices(cfg)
    fall_back_to_cpu(cfg)
    cfg.freeze()
    check_config(cfg)
    if args is not None:
        unknown = [n for n in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if n not in DatasetCatalog.list()]
        if unknown:
            raise SystemExit(f"DATASETS.TRAIN/TEST: {unknown} are not registered datasets (see datasets/README.md)")
        check_output_dir(
            cfg.OUTPUT_DIR, resume=args.resume, eval_only=args.eval_only, overwrite=getattr(args, "overwrite", False)
        )
        default_setup(cfg, args)
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="temporal_roi_align")
        if cfg.MODEL.DEVICE == "cpu":
            logger.info("CUDA is not available: running on the CPU")
    return cfg


def fall_back_to_cpu(cfg) -> bool:
    """Set MODEL.DEVICE of the (unfrozen) ``cfg`` to "cpu" when it names CUDA on a machine
    without CUDA; True if it did."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        return True
    return False


def argument_parser():
    """Detectron2's ``default_argument_parser`` plus the switches of this project's safeguards
    (tools/train_net.py, tools/lazyconfig_train_net.py)."""
    parser = default_argument_parser()
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="load weights that do not fit the model (missing parameters, another class count) and run "
        "anyway with the rest of the model as initialized, e.g. to fine-tune on other classes",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an output folder that holds a finished run, removing its model_final.pth, "
        "last_checkpoint and metrics.json first",
    )
    return parser


def check_output_dir(output_dir: str, *, resume: bool, eval_only: bool, overwrite: bool, key="OUTPUT_DIR"):
    """Refuse to train into a folder that holds a finished run (``model_final.pth``) without
    ``resume``: Detectron2 would overwrite its model and append to its metrics.json. With
    ``overwrite``, the files a new run would overwrite or append to (``model_final.pth``,
    ``last_checkpoint``, ``metrics.json``) are removed first. Evaluation (which adds to log.txt,
    config.yaml and ``inference/``) is always allowed. ``key`` names the folder's config key."""
    final = os.path.join(output_dir, "model_final.pth")
    if eval_only or resume or not os.path.exists(final):
        return
    if not overwrite:
        raise SystemExit(
            f"{key} {output_dir} holds a finished run (model_final.pth); training into it would "
            "overwrite the model and append to its metrics.json. Continue or re-evaluate it with "
            f"--resume, train into a new {key}, or pass --overwrite to replace it."
        )
    for name in ("model_final.pth", "last_checkpoint", "metrics.json"):
        path = os.path.join(output_dir, name)
        if comm.is_main_process() and os.path.exists(path):
            os.remove(path)
            logger.warning(f"--overwrite: removed {path}")
