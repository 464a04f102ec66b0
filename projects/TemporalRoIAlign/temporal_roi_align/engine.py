"""Training and evaluation in Detectron2's DefaultTrainer idiom."""

import contextlib
import logging
import os
import weakref
from datetime import timedelta

import detectron2.engine.defaults as d2_defaults
import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup
from detectron2.engine import launch as d2_launch
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.logger import setup_logger

from .checkpoint import VideoCheckpointer
from .config import add_video_config
from .config_checks import check_config
from .data import VideoDatasetMapper, VISDatasetMapper, build_video_test_loader, build_video_train_loader
from .evaluation import VideoPostprocessingEvaluator, VIDEvaluator, YTVISEvaluator
from .postprocessing import build_video_postprocessor

__all__ = [
    "FailureRecordingLoader",
    "TRAIN_MAPPERS",
    "VideoTrainer",
    "argument_parser",
    "check_output_dir",
    "launch",
    "save_iterations_done",
    "setup_cfg",
    "sgd_with_gradient_clipping",
]

logger = logging.getLogger(__name__)

# INPUT.TRAIN_MAPPER -> the mapper of the training frame groups.
TRAIN_MAPPERS = {"VideoDatasetMapper": VideoDatasetMapper, "VISDatasetMapper": VISDatasetMapper}


@contextlib.contextmanager
def _ddp_on_cpu_without_device_ids():
    """DefaultTrainer gives DDP ``device_ids=[local_rank]``, which DDP rejects for CPU models."""
    create_ddp_model = d2_defaults.create_ddp_model

    def create(model, **kwargs):
        if next(model.parameters()).device.type == "cpu":
            kwargs.setdefault("device_ids", None)
        return create_ddp_model(model, **kwargs)

    d2_defaults.create_ddp_model = create
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = create_ddp_model


class FailureRecordingLoader:
    """A training loader that records whether reading its data failed (``failed``)."""

    def __init__(self, loader):
        self.loader = loader
        self.failed = False

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception:
                self.failed = True
                raise
            yield batch


def save_iterations_done(trainer, checkpointer, output_dir: str):
    """After reading the training data failed at ``trainer.iter``: save the iterations done as
    ``model_<last done>.pth`` (which ``--resume`` continues) and log what to do."""
    done = trainer.iter - 1  # the iteration whose data could not be read did not run
    hint = (
        "fix the data (tools/check_dataset.py lists the problems) or set DATALOADER.SKIP_BAD_FRAMES "
        "True, then continue with --resume"
    )
    if done < trainer.start_iter or not comm.is_main_process():
        logger.error(f"Reading the training data failed at iteration {trainer.iter}: {hint}")
        return
    trainer.iter = done
    name = f"model_{done:07d}"
    checkpointer.save(name, iteration=done)
    logger.error(
        f"Reading the training data failed at iteration {done + 1}; the {done + 1} iterations done are "
        f"saved in {os.path.join(output_dir, name)}.pth: {hint}"
    )


class VideoTrainer(DefaultTrainer):
    """DefaultTrainer with frame-group loaders (target + support frames, and a reference frame
    for MaskTrack R-CNN), the VID / YouTube-VIS evaluators and a :class:`VideoCheckpointer`:
    atomic checkpoints, resuming from the newest whole one, weights checked against the model
    (:meth:`resume_or_load`). When reading the training data fails, the iterations done are saved
    as a checkpoint before the error goes on."""

    def __init__(self, cfg):
        with _ddp_on_cpu_without_device_ids():
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer made its DetectionCheckpointer just before; the hooks save through ours.
        self.checkpointer = VideoCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        return super().build_hooks()

    def resume_or_load(self, resume=True, *, allow_partial_weights=False):
        """:meth:`DefaultTrainer.resume_or_load`, then the loaded weights are checked
        (:meth:`VideoCheckpointer.check_weights`): resuming needs every parameter; training from
        MODEL.WEIGHTS needs the parameters outside the backbone unless the file holds backbone
        parameters only (ImageNet-pretrained). ``allow_partial_weights`` turns refusals into
        warnings."""
        super().resume_or_load(resume=resume)
        self.checkpointer.check_weights(evaluating=False, allow_partial=allow_partial_weights)

    def train(self):
        try:
            return super().train()
        except Exception:
            if getattr(self._trainer.data_loader, "failed", False):
                save_iterations_done(self, self.checkpointer, self.cfg.OUTPUT_DIR)
            raise

    @classmethod
    def build_train_loader(cls, cfg):
        """:func:`build_video_train_loader` with the mapper named by ``INPUT.TRAIN_MAPPER``."""
        if cfg.INPUT.TRAIN_MAPPER not in TRAIN_MAPPERS:
            raise ValueError(
                f"INPUT.TRAIN_MAPPER must be one of {sorted(TRAIN_MAPPERS)}, got {cfg.INPUT.TRAIN_MAPPER!r}"
            )
        return FailureRecordingLoader(
            build_video_train_loader(cfg, mapper=TRAIN_MAPPERS[cfg.INPUT.TRAIN_MAPPER](cfg, True))
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator of the dataset's ``evaluator_type`` metadata, as PointRend's
        train_net.py chooses: "vid" -> :class:`VIDEvaluator` (with the dataset's
        ``frame_subsets``, if any); "ytvis" -> :class:`YTVISEvaluator` (video mask AP; on a
        split without annotations it writes the server's results.json and submission.zip and
        returns {}). Each whole video's detections are post-processed first when
        ``VIDEO.POSTPROCESS`` is set."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        metadata = MetadataCatalog.get(dataset_name)
        evaluator_type = metadata.get("evaluator_type", None)
        if evaluator_type == "vid":
            evaluator = VIDEvaluator(dataset_name, output_folder, subsets=metadata.get("frame_subsets", None))
        elif evaluator_type == "ytvis":
            evaluator = YTVISEvaluator(dataset_name, output_folder)
        else:
            raise NotImplementedError(
                f"no evaluator for dataset '{dataset_name}' of evaluator_type {evaluator_type!r} "
                "(known: 'vid', 'ytvis')"
            )
        postprocess = build_video_postprocessor(cfg)
        return evaluator if postprocess is None else VideoPostprocessingEvaluator(evaluator, postprocess)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """:meth:`DefaultTrainer.test`; a dataset whose evaluator returns no scores (a
        YouTube-VIS split without public annotations) is named with where its results went."""
        results = super().test(cfg, model, evaluators)
        per_dataset = {cfg.DATASETS.TEST[0]: results} if len(cfg.DATASETS.TEST) == 1 else results
        for name, scores in per_dataset.items():
            if not scores and comm.is_main_process():
                folder = os.path.join(cfg.OUTPUT_DIR, "inference", name)
                logger.warning(
                    f"'{name}': no scores computed here (no annotations); the predictions are in "
                    f"{folder} (results.json, submission.zip for the YouTube-VIS evaluation server)"
                    if MetadataCatalog.get(name).get("evaluator_type", None) == "ytvis"
                    else f"'{name}': the evaluator returned no scores"
                )
        return results


def sgd_with_gradient_clipping(
    params, *, clip_value: float, clip_type: str = "norm", norm_type: float = 2.0, **sgd_kwargs
) -> torch.optim.Optimizer:
    """
    ``torch.optim.SGD(params, **sgd_kwargs)`` that clips the gradients before each step as the
    yacs trainer does with ``SOLVER.CLIP_GRADIENTS`` (each parameter's gradient: its norm at
    ``clip_value`` for ``clip_type="norm"``, its values for ``"value"``): the optimizer of the
    LazyConfig files whose yaml twins clip.
    """
    clipping = CfgNode({"ENABLED": True, "CLIP_TYPE": clip_type, "CLIP_VALUE": clip_value, "NORM_TYPE": norm_type})
    optimizer_class = maybe_add_gradient_clipping(CfgNode({"SOLVER": {"CLIP_GRADIENTS": clipping}}), torch.optim.SGD)
    return optimizer_class(params, **sgd_kwargs)


def setup_cfg(config_file: str, opts=(), *, args=None):
    """
    Config from a yaml file plus ``KEY VALUE`` overrides, checked by :func:`check_config`. On a
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
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
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


def launch(
    main_func, num_processes, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=timedelta(minutes=30)
):
    """
    Detectron2's ``launch`` where CUDA is available (NCCL, one process per GPU); otherwise
    ``num_processes`` CPU processes per machine joined with the gloo backend.
    """
    if torch.cuda.is_available() or num_processes * num_machines == 1:
        return d2_launch(main_func, num_processes, num_machines, machine_rank, dist_url, args, timeout)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes,
        args=(main_func, num_processes, num_machines, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, num_processes, num_machines, machine_rank, dist_url, args, timeout):
    dist.init_process_group(
        backend="gloo",
        init_method=dist_url,
        world_size=num_processes * num_machines,
        rank=machine_rank * num_processes + local_rank,
        timeout=timeout,
    )
    for i in range(num_machines):
        group = dist.new_group(list(range(i * num_processes, (i + 1) * num_processes)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)
    # Tear gloo down together: a rank leaving while another still talks to it can abort.
    comm.synchronize()
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
