"""ResNet / ResNeXt weights named as in torchvision (and mmtrack's ``backbone.``) ->
Detectron2's ResNet (``backbone.bottom_up.`` of this project's models)."""

from collections import OrderedDict
from typing import List, Tuple

from .common import (
    ConversionReport,
    Rule,
    apply_rules,
    build_meta_model,
    config_differences,
    enforce_config_match,
    state_dict_of,
)

__all__ = ["resnet_rules", "convert_torchvision_checkpoint", "TORCHVISION_CONFIG"]

_BN = r"(weight|bias|running_mean|running_var)"
BOTTOM_UP = "backbone.bottom_up."

# torchvision's ImageNet ResNets: RGB input in [0, 255] normalised by the ImageNet mean/std,
# stride in the 3x3 conv of each bottleneck ("pytorch" style), BatchNorm used frozen.
TORCHVISION_CONFIG: Tuple[Tuple[str, object], ...] = (
    ("INPUT.FORMAT", "RGB"),
    ("MODEL.PIXEL_MEAN", (123.675, 116.28, 103.53)),
    ("MODEL.PIXEL_STD", (58.395, 57.12, 57.375)),
    ("MODEL.RESNETS.STRIDE_IN_1X1", False),
    ("MODEL.RESNETS.NORM", "FrozenBN"),
)


def resnet_rules(prefix: str) -> List[Rule]:
    """
    Rules for a ResNet whose keys are ``prefix`` + torchvision's names (conv1, bn1,
    layer1..4.<block>.conv1..3 / bn1..3 / downsample.0-1). ``prefix`` is a regex.
    Stage ``layer<i>`` is Detectron2's ``res<i+1>``.
    """
    stage = r"layer([1-4])\.(\d+)\."

    def block(m):
        return f"{BOTTOM_UP}res{int(m[1]) + 1}.{m[2]}."

    return [
        Rule(rf"{prefix}.*\.num_batches_tracked", None, "BatchNorm update counters, unused by FrozenBN"),
        Rule(rf"{prefix}conv1\.weight", lambda m: f"{BOTTOM_UP}stem.conv1.weight"),
        Rule(rf"{prefix}bn1\.{_BN}", lambda m: f"{BOTTOM_UP}stem.conv1.norm.{m[1]}"),
        Rule(rf"{prefix}{stage}conv([1-3])\.weight", lambda m: f"{block(m)}conv{m[3]}.weight"),
        Rule(rf"{prefix}{stage}bn([1-3])\.{_BN}", lambda m: f"{block(m)}conv{m[3]}.norm.{m[4]}"),
        Rule(rf"{prefix}{stage}downsample\.0\.weight", lambda m: f"{block(m)}shortcut.weight"),
        Rule(rf"{prefix}{stage}downsample\.1\.{_BN}", lambda m: f"{block(m)}shortcut.norm.{m[3]}"),
    ]


def convert_torchvision_checkpoint(checkpoint, cfg, source: str = "<checkpoint>", strict: bool = True):
    """
    A torchvision ResNet-50/101 or ResNeXt-101 ImageNet checkpoint (as loaded by ``torch.load``)
    -> the ``backbone.bottom_up.`` tensors of the model of ``cfg``, for ``MODEL.WEIGHTS``.

    Returns ``(state_dict, ConversionReport)``; raises :class:`ConversionError` (see
    :func:`apply_rules` for ``strict``; with ``strict``, also when ``cfg`` preprocesses images
    or places strides unlike torchvision's models).
    """
    state_dict, _ = state_dict_of(checkpoint, source, ("state_dict",))
    report = ConversionReport(source)
    differences = config_differences(cfg, TORCHVISION_CONFIG, "torchvision")
    enforce_config_match(differences, report, strict, "torchvision's models")
    shapes = OrderedDict((k, v.shape) for k, v in build_meta_model(cfg).state_dict().items() if k.startswith(BOTTOM_UP))
    rules = resnet_rules("") + [Rule(r"fc\.(weight|bias)", None, "ImageNet classifier")]
    return apply_rules(state_dict, rules, shapes, report, strict), report
