"""
table8_R_50_FPN.py at toy size, to run Table 8's two rows on a CPU in minutes: the model and data
of configs/toy/masktrack_troi.yaml (the generated toy VIS dataset) and its schedule, 300
iterations at batch 4, lr 0.005. The GRID's "masktrack" point is configs/toy/masktrack.yaml.

    python tools/lazyconfig_train_net.py --config-file configs/YouTubeVIS/table8_toy.py \\
        train.output_dir=output/table8_toy/masktrack_troi
"""

from detectron2.config import LazyCall as L

from temporal_roi_align.engine import sgd_with_gradient_clipping

from ..common.data.toy_vis import dataloader
from ..common.models.masktrack_toy import model
from ..common.optim import SGD
from ..common.train import train
from ..common.vid_schedule import warmup_multistep
from .table8_R_50_FPN import GRID, MASKTRACK

# SGD at lr 0.005 whose per-parameter gradient norms are clipped at 5, as the yaml's BASE_LR and
# SOLVER.CLIP_GRADIENTS: at 0.02 the new mask and track heads make the shared conv4 features
# diverge, and without clipping the track head's dot products do.
optimizer = L(sgd_with_gradient_clipping)(
    params=SGD.params, lr=0.005, momentum=SGD.momentum, weight_decay=SGD.weight_decay, clip_value=5.0
)
train.max_iter = 300
train.seed = 7  # as the yaml's SEED
train.checkpointer.period = 100000
lr_multiplier = warmup_multistep(steps=[240], max_iter=train.max_iter, warmup_iters=30)
