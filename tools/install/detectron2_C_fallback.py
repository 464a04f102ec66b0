"""Stand-in for ``detectron2._C`` in a Python-only detectron2 install.

Installed as ``detectron2/_C.py`` by ``tools/install/install_detectron2.py`` when
detectron2's compiled extension is unavailable. Importing it succeeds, so
``detectron2.layers`` and ``detectron2.evaluation`` load; calling a compiled op
raises an error that names the op. Everything this project uses has a pure
PyTorch/torchvision path (ROIAlign, NMS, pycocotools' COCOeval).
"""

_MISSING = (
    "detectron2._C.{name} is a compiled op that this Python-only detectron2 install does not "
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

    op.__name__ = name
    return op


def get_compiler_version():
    return "none (Python-only detectron2, fallback _C)"


def get_cuda_version():
    return "none (Python-only detectron2, fallback _C)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing_op(name)
