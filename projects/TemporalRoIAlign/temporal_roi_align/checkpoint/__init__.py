"""Conversion of third-party checkpoints to this project's models (docs/converting_checkpoints.md):
the video toolbox's ImageNet VID detectors and YouTube-VIS MaskTrack R-CNN models, and
torchvision's ImageNet ResNets."""
from .common import ConversionError, ConversionReport, load_checkpoint, save_checkpoint
from .masktrack import TRACK_HEAD_PREFIX, convert_masktrack_checkpoint, masktrack_config
from .resnet import convert_torchvision_checkpoint
from .toolbox import TOOLBOX_VID_CLASSES, convert_toolbox_checkpoint, toolbox_base_anchors, toolbox_config
from .transforms import CV2ResizeTransform, ToolboxResizeShortestEdge

__all__ = [
    "ConversionError",
    "ConversionReport",
    "CV2ResizeTransform",
    "TOOLBOX_VID_CLASSES",
    "TRACK_HEAD_PREFIX",
    "ToolboxResizeShortestEdge",
    "convert_masktrack_checkpoint",
    "convert_toolbox_checkpoint",
    "convert_torchvision_checkpoint",
    "load_checkpoint",
    "masktrack_config",
    "save_checkpoint",
    "toolbox_base_anchors",
    "toolbox_config",
]
