"""Training and evaluation in Detectron2's DefaultTrainer idiom."""
import contextlib
import logging
import os
from datetime import timedelta

import detectron2.engine.defaults as d2_defaults
import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.engine import launch as d2_launch
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.logger import setup_logger

from .config import add_video_config
from .data import VideoDatasetMapper, VISDatasetMapper, build_video_test_loader, build_video_train_loader
from .evaluation import VIDEvaluator, YTVISEvaluator

__all__ = ["TRAIN_MAPPERS", "VideoTrainer", "launch", "setup_cfg", "sgd_with_gradient_clipping"]

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


class VideoTrainer(DefaultTrainer):
    """DefaultTrainer with frame-group loaders (target + support frames, and a reference frame
    for MaskTrack R-CNN) and the VID / YouTube-VIS evaluators."""

    def __init__(self, cfg):
        with _ddp_on_cpu_without_device_ids():
            super().__init__(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        """:func:`build_video_train_loader` with the mapper named by ``INPUT.TRAIN_MAPPER``."""
        if cfg.INPUT.TRAIN_MAPPER not in TRAIN_MAPPERS:
            raise ValueError(
                f"INPUT.TRAIN_MAPPER must be one of {sorted(TRAIN_MAPPERS)}, got {cfg.INPUT.TRAIN_MAPPER!r}"
            )
        return build_video_train_loader(cfg, mapper=TRAIN_MAPPERS[cfg.INPUT.TRAIN_MAPPER](cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator of the dataset's ``evaluator_type`` metadata, as PointRend's
        train_net.py chooses: "vid" -> :class:`VIDEvaluator` (with the dataset's
        ``frame_subsets``, if any); "ytvis" -> :class:`YTVISEvaluator` (video mask AP; on a
        split without annotations it writes the server's results.json and submission.zip and
        returns {})."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        metadata = MetadataCatalog.get(dataset_name)
        evaluator_type = metadata.get("evaluator_type", None)
        if evaluator_type == "vid":
            return VIDEvaluator(dataset_name, output_folder, subsets=metadata.get("frame_subsets", None))
        if evaluator_type == "ytvis":
            return YTVISEvaluator(dataset_name, output_folder)
        raise NotImplementedError(
            f"no evaluator for dataset '{dataset_name}' of evaluator_type {evaluator_type!r} (known: 'vid', 'ytvis')"
        )

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
    clipping = CfgNode(
        {"ENABLED": True, "CLIP_TYPE": clip_type, "CLIP_VALUE": clip_value, "NORM_TYPE": norm_type}
    )
    optimizer_class = maybe_add_gradient_clipping(CfgNode({"SOLVER": {"CLIP_GRADIENTS": clipping}}), torch.optim.SGD)
    return optimizer_class(params, **sgd_kwargs)


def setup_cfg(config_file: str, opts=(), *, args=None):
    """
    Config from a yaml file plus ``KEY VALUE`` overrides. On a machine without CUDA the model runs
    on the CPU whatever MODEL.DEVICE says. With ``args`` (argparse namespace of
    ``default_argument_parser``), also runs Detectron2's ``default_setup`` (logging, output dir).
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
    if args is not None:
        default_setup(cfg, args)
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="temporal_roi_align")
        if cfg.MODEL.DEVICE == "cpu":
            logger.info("CUDA is not available: running on the CPU")
    return cfg


def launch(main_func, num_processes, num_machines=1, machine_rank=0, dist_url=None, args=(),
           timeout=timedelta(minutes=30)):
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
