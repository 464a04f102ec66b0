"""Detectron2's ``launch``, or CPU processes joined with gloo where CUDA is missing; DDP of CPU models."""

import contextlib
import os
import socket
from datetime import timedelta

import detectron2.engine.defaults as d2_defaults
import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch

__all__ = ["launch", "threads_per_process"]


def launch(
    main_func, num_processes, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=timedelta(minutes=30)
):
    """
    Detectron2's ``launch`` where CUDA is available (NCCL, one process per GPU); otherwise
    ``num_processes`` CPU processes per machine joined with the gloo backend, each with its share
    of the cores as torch threads (:func:`threads_per_process`).
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


def threads_per_process(num_processes: int, environ=os.environ, cores=None):
    """The torch threads of each of ``num_processes`` CPU processes on one machine: its share of
    the cores this process may use (``cores``, default: its CPU affinity), at least 1; None when
    ``OMP_NUM_THREADS`` is set (the user's choice stands). Otherwise each process would start a
    thread per core, and the processes would compete for the cores."""
    if environ.get("OMP_NUM_THREADS"):
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // num_processes)


def _cpu_worker(local_rank, main_func, num_processes, num_machines, machine_rank, dist_url, args, timeout):
    threads = threads_per_process(num_processes)
    if threads is not None:
        torch.set_num_threads(threads)
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ddp_on_cpu_without_device_ids():
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
