"""Video object detectors on Detectron2: Temporal RoI Align, SELSA, SELSA + TRoI, FGFA and DFF;
video instance segmentation: MaskTrack R-CNN, MaskTrack R-CNN + TRoI.

Importing this package registers its models (VideoRCNN, FgfaRCNN, DffRCNN, MaskTrackRCNN,
VideoROIHeads, MaskTrackROIHeads, SelsaBoxHead, MaskTrackHead, the channel-reduced ResNet
backbone) and datasets with Detectron2's registries. The layout: the repository's README.
"""

from . import data, modeling
from .config import add_video_config

__all__ = ["add_video_config"]
