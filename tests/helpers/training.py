"""Work done in each process of a multi-process CPU training (torch.distributed)."""

import torch
import torch.distributed as dist

from temporal_roi_align.engine import VideoTrainer, setup_cfg


def train_two_ranks(config_file, opts, result_path):
    """Trains the config in this process (one of 2); rank 0 saves every rank's parameters and
    thread count to ``result_path``, for the test to compare."""
    cfg = setup_cfg(config_file, opts)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model.module
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    threads = [None] * dist.get_world_size()
    dist.all_gather_object(threads, torch.get_num_threads())
    if dist.get_rank() == 0:
        torch.save({"world_size": dist.get_world_size(), "params": gathered, "threads": threads}, result_path)
