"""Conversion of third-party checkpoints to this project's models (docs/converting_checkpoints.md):
mmtracking's (mmtrack's) ImageNet VID detectors and torchvision's ImageNet ResNets."""
from .common import ConversionError, ConversionReport, load_checkpoint, save_checkpoint
from .mmtrack import MMTRACK_VID_CLASSES, convert_mmtrack_checkpoint, mmtrack_base_anchors, mmtrack_config
from .resnet import convert_torchvision_checkpoint

__all__ = [
    "ConversionError",
    "ConversionReport",
    "MMTRACK_VID_CLASSES",
    "convert_mmtrack_checkpoint",
    "convert_torchvision_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "mmtrack_base_anchors",
    "mmtrack_config",
]
