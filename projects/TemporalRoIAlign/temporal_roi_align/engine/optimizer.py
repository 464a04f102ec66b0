"""The optimizer of the LazyConfig files."""

import torch
from detectron2.config import CfgNode
from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["sgd_with_gradient_clipping"]


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
