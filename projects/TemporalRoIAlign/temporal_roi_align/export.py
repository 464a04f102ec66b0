"""
Export of the video detectors to TorchScript and ONNX by tracing, with Detectron2's
``TracingAdapter``, as Detectron2's ``tools/deploy/export_model.py`` exports its detectors
(``tools/export_model.py``; docs/export.md says which models and ops export and why).

The exported model is :class:`VideoRCNN`'s one-shot path: one frame group (the target frame and
its supports, each ``[3, H, W]`` float32 in ``INPUT.FORMAT``, resized as the predictor resizes)
in, the target's detections at that resolution out: ``boxes`` ``[N, 4]``, ``scores`` ``[N]``,
``classes`` ``[N]``, as ``model.inference(..., do_postprocess=False)`` gives them. There is no
feature cache: every call runs the backbone on every frame of the group. The number of supports
is fixed at export; the image size and the number of proposals and detections are not.
"""

import importlib
import io
import os
import sys
import types
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.structures import Boxes, Instances

from .modeling import VideoRCNN
from .utils import atomic_write

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "OUTPUT_NAMES",
    "ExportError",
    "ExportedModel",
    "check_exportable",
    "detectron2_export",
    "eager_outputs",
    "export_model",
    "frame_group_inputs",
    "input_names",
    "max_differences",
]

# The file each format is written to in the output folder (as Detectron2's export_model.py names them).
FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
OUTPUT_NAMES = ("boxes", "scores", "classes")
# Widely supported by ONNX runtimes; TAFA's split into blocks (aten::unflatten) needs 13 or later.
ONNX_OPSET = 17


class ExportError(ValueError):
    """A model that cannot be exported, with the reason."""


def detectron2_export() -> types.ModuleType:
    """Detectron2's ``detectron2.export`` (``TracingAdapter``, ``dump_torchscript_IR``,
    ``scripting_with_instances``). Detectron2 0.6's imports caffe2, which
    PyTorch 2 no longer has, for its Caffe2 exporter: its tracing modules are then loaded without
    it, as later Detectron2 versions do."""
    try:
        return importlib.import_module("detectron2.export")
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("caffe2"):
            raise
    import detectron2

    package = types.ModuleType("detectron2.export")
    package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
    sys.modules["detectron2.export"] = package
    flatten = importlib.import_module("detectron2.export.flatten")
    torchscript = importlib.import_module("detectron2.export.torchscript")
    package.TracingAdapter = flatten.TracingAdapter
    package.dump_torchscript_IR = torchscript.dump_torchscript_IR
    package.scripting_with_instances = torchscript.scripting_with_instances
    return package


def check_exportable(model: torch.nn.Module) -> None:
    """Raises :class:`ExportError` saying why, unless ``model`` is a :class:`VideoRCNN` whose trace
    holds for other inputs: the single-frame detector, Temporal RoI Align, TAM."""
    name = type(model).__name__
    if type(model) is not VideoRCNN:
        flow = (
            "its flow is resized by a scale computed from the feature maps' shapes, which are tensors while "
            "tracing and which F.interpolate does not take"
        )
        reasons = {
            "FgfaRCNN": flow,
            "DffRCNN": flow,
            "MaskTrackRCNN": "its tracker keeps the tracks of the video between calls, in Python",
        }
        raise ExportError(f"{name} cannot be exported: {reasons.get(name, 'only VideoRCNN models are supported')}")
    if model.needs_support_proposals:
        raise ExportError(
            "SELSA (ROI_BOX_HEAD.NAME SelsaBoxHead) cannot be exported: its head splits the RoI features per image "
            "by Python counts of proposals, which a trace keeps, so the exported model fails or is wrong for "
            "another number of proposals"
        )
    heads = model.roi_heads
    if getattr(heads, "mask_on", False) or getattr(heads, "keypoint_on", False):
        raise ExportError(f"the exported model gives boxes, scores and classes only; {name} has masks or keypoints")


def frame_group_inputs(model: VideoRCNN, target: Dict, supports: Sequence[Dict] = ()) -> List[Dict]:
    """The model input of one frame group as the export takes it: the ``"image"`` of ``target``
    (a model input, e.g. from :meth:`VideoPredictor.frame_group`) and of its supports when the
    model uses them, as float32; nothing else (no ids: no feature cache)."""
    inputs = {"image": target["image"].float()}
    if model.needs_supports:
        inputs["supports"] = [{"image": s["image"].float()} for s in supports]
    return [inputs]


def input_names(num_supports: int) -> List[str]:
    """The exported model's inputs, in order: the target frame, then its supports."""
    return ["image", *(f"support_{i}" for i in range(num_supports))]


def _images(inputs: List[Dict]) -> List[torch.Tensor]:
    """The target's and the supports' images of :func:`frame_group_inputs`, in the exported model's order."""
    return [inputs[0]["image"], *(s["image"] for s in inputs[0].get("supports", []))]


def _inference(model: VideoRCNN, inputs: List[Dict]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    instances = model.inference(inputs, do_postprocess=False)[0]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def eager_outputs(model: VideoRCNN, inputs: List[Dict]) -> Instances:
    """What the exported model gives for ``inputs`` (:func:`frame_group_inputs`), from ``model``."""
    with torch.no_grad():
        return _instances(inputs[0]["image"], _inference(model, inputs))


def _instances(image: torch.Tensor, outputs: Sequence[torch.Tensor]) -> Instances:
    boxes, scores, classes = outputs
    return Instances(tuple(image.shape[-2:]), pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes)


def export_model(model: VideoRCNN, inputs: List[Dict], fmt: str, path: str):
    """
    Trace ``model`` (in eval mode) on ``inputs`` (:func:`frame_group_inputs`) with Detectron2's
    ``TracingAdapter`` and write it to ``path`` (whole or not at all): ``fmt`` "torchscript"
    (``torch.jit.trace``) or "onnx" (the TorchScript-based ``torch.onnx.export``, opset
    :data:`ONNX_OPSET`; inputs ``image``, ``support_0``, ... with dynamic height and width,
    outputs :data:`OUTPUT_NAMES`).
    Returns the traced TorchScript module, or None for ONNX.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    check_exportable(model)
    if model.training:
        raise ValueError("export_model traces the inference path: call model.eval() first")
    # eval(): torch.onnx.export leaves the adapter, and so the model, in the mode it found.
    adapter = detectron2_export().TracingAdapter(model, inputs, _inference).eval()
    images = _images(inputs)
    if len(images) != len(adapter.flattened_inputs) or any(
        a is not b for a, b in zip(images, adapter.flattened_inputs)
    ):
        raise ValueError("inputs must be frame_group_inputs(...): one dict with 'image' and 'supports' only")
    if fmt == "torchscript":
        # check_trace would run the model again on the same inputs; callers compare with eager_outputs.
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        with atomic_write(path, "wb") as f:
            torch.jit.save(traced, f)
        return traced
    names = input_names(len(images) - 1)
    buffer = io.BytesIO()
    torch.onnx.export(
        adapter,
        adapter.flattened_inputs,
        buffer,
        dynamo=False,  # torch.export stops at Detectron2's data-dependent Python (docs/export.md)
        opset_version=ONNX_OPSET,
        input_names=names,
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={name: {1: "height", 2: "width"} for name in names},
    )
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())
    return None


class ExportedModel:
    """A file written by :func:`export_model` (``.ts`` or ``.onnx``, the latter run by
    onnxruntime on the CPU): ``model(inputs)`` takes what the eager model took
    (:func:`frame_group_inputs`) and returns :class:`Instances` as :func:`eager_outputs` does."""

    def __init__(self, path: str):
        self.path = path
        if path.endswith(".onnx"):
            try:
                import onnxruntime
            except ImportError:
                raise ImportError(
                    f"{path}: running an ONNX model needs onnxruntime (pip install onnxruntime)"
                ) from None
            self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.num_inputs = len(self._session.get_inputs())
        else:
            self._module = torch.jit.load(path, map_location="cpu")
            self._session = None
            self.num_inputs = len(list(self._module.graph.inputs())) - 1  # less self

    def __call__(self, inputs: List[Dict]) -> Instances:
        images = _images(inputs)
        if len(images) != self.num_inputs:
            raise ValueError(
                f"{self.path} takes a target frame and {self.num_inputs - 1} supports, got {len(images) - 1} supports"
            )
        if self._session is None:
            with torch.no_grad():
                return _instances(images[0], self._module(*images))
        feed = {i.name: image.cpu().numpy() for i, image in zip(self._session.get_inputs(), images)}
        return _instances(images[0], [torch.from_numpy(x) for x in self._session.run(list(OUTPUT_NAMES), feed)])


def max_differences(a: Instances, b: Instances) -> Dict[str, float]:
    """How far two detectors' outputs for one frame are: the numbers of detections, and, when they
    are equal, the largest difference of a box coordinate and of a score and the count of
    differing classes (detections compared in order)."""
    result = {"detections": len(a), "other_detections": len(b)}
    if len(a) == len(b):
        result.update(
            boxes=float((a.pred_boxes.tensor - b.pred_boxes.tensor).abs().max()) if len(a) else 0.0,
            scores=float((a.scores - b.scores).abs().max()) if len(a) else 0.0,
            classes=int((a.pred_classes != b.pred_classes).sum()),
        )
    return result
