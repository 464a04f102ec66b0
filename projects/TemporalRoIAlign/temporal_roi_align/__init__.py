"""Video object detectors on Detectron2: Temporal RoI Align, SELSA, SELSA+TRoI; video instance
segmentation: MaskTrack R-CNN, MaskTrack R-CNN + TRoI.

Importing this package registers its models (VideoRCNN, VideoROIHeads, SelsaBoxHead, the
channel-reduced ResNet backbone, MaskTrackRCNN, MaskTrackROIHeads, MaskTrackHead) and datasets
with Detectron2's registries.
"""

from . import data, modeling
from .config import add_video_config

__all__ = ["add_video_config"]
