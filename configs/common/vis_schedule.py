from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def masktrack_schedule(epoch_iters, epochs=12, drops=(8, 11), warmup_iters=500, warmup_factor=1.0 / 3):
    """
    mmtrack's MaskTrack R-CNN learning-rate multiplier: linear warm-up from ``warmup_factor`` over
    ``warmup_iters`` iterations, then x 0.1 after each epoch in ``drops``, ``epochs`` epochs of
    ``epoch_iters`` iterations.
    """
    max_iter = epochs * epoch_iters
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(drops) + 1)],
            milestones=[*(d * epoch_iters for d in drops), max_iter],
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
    )


# YouTube-VIS 2019 train: about 61.8k frames with instances at 8 frames per iteration (recount
# with len(DatasetCatalog.get("ytvis_2019_train")) and scale if yours differs).
YTVIS_2019_EPOCH_ITERS = 7730
