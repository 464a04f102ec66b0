"""Video object detectors on Detectron2: Temporal RoI Align, SELSA, SELSA+TRoI.

Importing this package registers its models (VideoRCNN, VideoROIHeads, SelsaBoxHead, the
channel-reduced ResNet backbone) and datasets with Detectron2's registries.
"""
from . import data, modeling
from .config import add_video_config

__all__ = ["add_video_config"]
