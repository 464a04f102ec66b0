"""
troi_R_101_DC5.py at toy size, to run the lazy path on a CPU in minutes: the model and data of
configs/toy/troi.yaml (generated toy dataset; see temporal_roi_align.data.ensure_toy_vid) and
its schedule, 300 iterations at batch 4. `tools/run_ablation.py --toy` runs an ablation on it.
"""

from ..common.data.toy_vid import dataloader
from ..common.models.video_rcnn_toy import model
from ..common.optim import SGD as optimizer
from ..common.train import train
from ..common.vid_schedule import warmup_multistep

train.max_iter = 300
train.seed = 7  # as the yaml's SEED
train.checkpointer.period = 100000
lr_multiplier = warmup_multistep(steps=[240], max_iter=train.max_iter, warmup_iters=30)
