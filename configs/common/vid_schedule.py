from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def warmup_multistep(steps, max_iter, warmup_iters):
    """
    LR multiplier of the yacs solver: linear warmup from 0.001 over ``warmup_iters``, then /10
    at each of ``steps`` (SOLVER.STEPS, MAX_ITER, WARMUP_ITERS of the yaml configs).
    The multiplier is scale-invariant: a shorter ``train.max_iter`` compresses it.
    """
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(steps) + 1)],
            milestones=[*steps, max_iter],
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=0.001,
    )


# The paper's schedule: 6 epochs at a total batch of 16, lr divided by 10 after epoch 4.
# One epoch is FGFA's training split, about 110k images (~57k VID frames, at most 15 per
# training video, and ~53k DET images): 110,000 / 16 = 6,875 iterations.
ITERS_PER_EPOCH = 110_000 // 16
MAX_ITER_6E = 6 * ITERS_PER_EPOCH  # 41,250
lr_multiplier_6e = warmup_multistep(steps=[4 * ITERS_PER_EPOCH], max_iter=MAX_ITER_6E, warmup_iters=500)
