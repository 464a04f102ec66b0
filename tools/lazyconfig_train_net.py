#!/usr/bin/env python
"""
Train or evaluate a video detector from a LazyConfig (Python) file, in the conventions of
Detectron2's tools/lazyconfig_train_net.py:

    python tools/lazyconfig_train_net.py --config-file configs/ablations/troi_R_101_DC5.py
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model_final.pth
    python tools/lazyconfig_train_net.py --config-file configs/ablations/troi_toy.py --num-gpus 2  # gloo on CPU
    python tools/lazyconfig_train_net.py --config-file configs/ablations/troi_toy.py --import my_datasets \\
        'dataloader.train.dataset.names=[my_train]' dataloader.test.dataset.names=my_val \\
        model.roi_heads.num_classes=4

Overrides are path.key=value. --import MODULE imports a module that registers your datasets
first, in every process (docs/custom_data.md).

The config defines ``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``,
``lr_multiplier`` and ``train`` (configs/common/train.py). Without CUDA, ``train.device`` is set
to "cpu" and ``--num-gpus N`` starts N CPU processes.

The safeguards of tools/train_net.py apply (docs/safeguards.md): the overrides and values checked,
train.output_dir locked against a second run, atomic checkpoints and resuming from the newest whole
one, weights checked against the model (--allow-partial-weights), no training into a finished
run's train.output_dir without --resume or --overwrite, metrics.json trimmed to the iteration
training starts from, the iterations done saved when the training data fails.
"""

import logging
import os

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from omegaconf import OmegaConf

from temporal_roi_align.checkpoint import VideoCheckpointer
from temporal_roi_align.config_checks import check_lazy_config, check_lazy_overrides, check_num_classes
from temporal_roi_align.engine import (
    FailureRecordingLoader,
    PeriodicWriter,
    argument_parser,
    check_output_dir,
    errors_as_messages,
    import_modules,
    launch,
    save_iterations_done,
    setup_run,
    trim_metrics,
)

logger = logging.getLogger("detectron2")


def do_test(cfg, model):
    if "evaluator" in cfg.dataloader:
        ret = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
        print_csv_format(ret)
        return ret


def ddp_model(cfg, model, **kwargs):
    # DDP takes no device_ids for a CPU model.
    if cfg.train.device == "cpu":
        kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **kwargs)


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)

    train_loader = FailureRecordingLoader(instantiate(cfg.dataloader.train))

    model = ddp_model(cfg, model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = VideoCheckpointer(model, cfg.train.output_dir, optimizer=optim, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            (hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None),
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            (
                PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
                if comm.is_main_process()
                else None
            ),
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    checkpointer.check_weights(evaluating=False, allow_partial=args.allow_partial_weights)
    if args.resume and checkpointer.has_checkpoint():
        # The checkpoint stores the training iteration that just finished.
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    if comm.is_main_process():
        trim_metrics(cfg.train.output_dir, start_iter)
    try:
        trainer.train(start_iter, cfg.train.max_iter)
    except Exception:
        if train_loader.failed:
            save_iterations_done(trainer, checkpointer, cfg.train.output_dir)
        raise


def check_class_counts(cfg, eval_only):
    """``model.roi_heads.num_classes`` against the classes of the datasets of
    ``dataloader.test`` and, unless ``eval_only``, ``dataloader.train``
    (:func:`check_num_classes`, which reads a dataset registered without its classes)."""
    num_classes = OmegaConf.select(cfg, "model.roi_heads.num_classes", default=None)
    if num_classes is None:
        return
    names = []
    for split in ("test",) if eval_only else ("train", "test"):
        value = OmegaConf.select(cfg, f"dataloader.{split}.dataset.names", default=None)
        names += [] if value is None else [value] if isinstance(value, str) else list(value)
    check_num_classes(num_classes, names, key="model.roi_heads.num_classes")


def setup(args):
    if not os.path.isfile(args.config_file):
        raise SystemExit(f"{args.config_file}: config file not found")
    cfg = LazyConfig.load(args.config_file)
    check_lazy_overrides(cfg, args.opts, args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    check_lazy_config(cfg, args.config_file)
    if args.eval_only and not {"test", "evaluator"} <= set(cfg.dataloader):
        raise SystemExit(
            f"--eval-only: {args.config_file} defines no dataloader.test and dataloader.evaluator, "
            "there is nothing to evaluate"
        )
    cuda_missing = cfg.train.device.startswith("cuda") and not torch.cuda.is_available()
    if cuda_missing:
        cfg.train.device = "cpu"
    if cfg.train.amp.enabled and cfg.train.device == "cpu":
        raise SystemExit("train.amp.enabled=True needs CUDA (AMPTrainer); set it to False on the CPU")
    check_class_counts(cfg, args.eval_only)
    check_output_dir(
        cfg.train.output_dir,
        resume=args.resume,
        eval_only=args.eval_only,
        overwrite=args.overwrite,
        key="train.output_dir",
    )
    setup_run(cfg, args, cfg.train.output_dir)
    if cuda_missing:
        logger.info("CUDA is not available: running on the CPU")
    return cfg


def parse_args(argv=None):
    return argument_parser(__doc__).parse_args(argv)


def main(args):
    import_modules(args.modules)  # in every process of --num-gpus N
    cfg = setup(args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = ddp_model(cfg, model)
        checkpointer = VideoCheckpointer(model, cfg.train.output_dir)
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
        checkpointer.check_weights(evaluating=True, allow_partial=args.allow_partial_weights)
        print(do_test(cfg, model))
    else:
        do_train(args, cfg)


if __name__ == "__main__":
    args = parse_args()
    import_modules(args.modules)  # a module that cannot be imported stops the run once, before any process starts
    with errors_as_messages():
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
