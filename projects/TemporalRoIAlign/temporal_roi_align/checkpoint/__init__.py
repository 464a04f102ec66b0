"""Conversion of third-party checkpoints to this project's models (docs/converting_checkpoints.md):
mmtracking's (mmtrack's) ImageNet VID detectors and YouTube-VIS MaskTrack R-CNN models, and
torchvision's ImageNet ResNets; and the checkpointer of training and evaluation."""

from .checkpointer import CheckpointError, VideoCheckpointer, checkpoint_problem
from .common import ConversionError, ConversionReport, load_checkpoint, save_checkpoint
from .masktrack import TRACK_HEAD_PREFIX, convert_masktrack_checkpoint, masktrack_config
from .mmtrack import MMTRACK_VID_CLASSES, convert_mmtrack_checkpoint, mmtrack_base_anchors, mmtrack_config
from .resnet import convert_torchvision_checkpoint

__all__ = [
    "CheckpointError",
    "ConversionError",
    "ConversionReport",
    "MMTRACK_VID_CLASSES",
    "TRACK_HEAD_PREFIX",
    "VideoCheckpointer",
    "checkpoint_problem",
    "convert_masktrack_checkpoint",
    "convert_mmtrack_checkpoint",
    "convert_torchvision_checkpoint",
    "load_checkpoint",
    "masktrack_config",
    "mmtrack_base_anchors",
    "mmtrack_config",
    "save_checkpoint",
]
