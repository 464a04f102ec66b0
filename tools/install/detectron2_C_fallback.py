"""Stand-in for ``detectron2._C`` in a Python-only detectron2 install.

Installed as ``detectron2/_C.py`` by ``tools/install/install_detectron2.py`` when
detectron2's compiled extension is unavailable. Importing it succeeds, so
``detectron2.layers`` and ``detectron2.evaluation`` load; calling a compiled op
raises an error that names the op. Everything this project uses has a pure
PyTorch/torchvision path (ROIAlign, NMS, pycocotools' COCOeval).

Detectron2 calls some ops as ``torch.ops.detectron2.<name>``, which its C++ extension
registers (``nms_rotated`` in 0.6; the rotated-box ops after 0.6). Importing this module
(``detectron2.layers`` does) registers those names with ``torch.library``, with
implementations that raise the same error.
"""

import torch

_MISSING = (
    "{name} is a compiled op that this Python-only detectron2 install does not "
    "have (it is needed for rotated boxes, deformable convolution and the fast COCO evaluation). "
    "Use COCOEvaluator(..., use_fast_impl=False) for evaluation, or build detectron2 with its C++ "
    "extension from its source repository (see detectron2's INSTALL.md) into this environment; "
    "tools/env.sh then uses that install untouched."
)


class MissingCompiledOpError(NotImplementedError):
    pass


def _missing_op(name):
    def op(*args, **kwargs):
        raise MissingCompiledOpError(_MISSING.format(name=name))

    op.__name__ = name.rpartition(".")[2]
    return op


# The torch.ops.detectron2 ops of detectron2's vision.cpp (TORCH_LIBRARY), with their schemas.
_TORCH_OPS = {
    "nms_rotated": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated": "(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align_rotated_forward": (
        "(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
        "int sampling_ratio) -> Tensor"
    ),
    "roi_align_rotated_backward": (
        "(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
        "int batch_size, int channels, int height, int width, int sampling_ratio) -> Tensor"
    ),
}


def _register_torch_ops():
    """Define the ops of ``_TORCH_OPS`` that no one defined yet (a second import defines none)."""
    library = torch.library.Library("detectron2", "FRAGMENT")
    for name, schema in _TORCH_OPS.items():
        if not hasattr(torch.ops.detectron2, name):
            library.define(name + schema)
            library.impl(name, _missing_op(f"torch.ops.detectron2.{name}"), "CompositeExplicitAutograd")
    return library


_LIBRARY = _register_torch_ops()  # kept alive: the registrations last as long as this object


def get_compiler_version():
    return "none (Python-only detectron2, fallback _C)"


def get_cuda_version():
    return "none (Python-only detectron2, fallback _C)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing_op(f"detectron2._C.{name}")
