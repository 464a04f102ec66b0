"""Config keys of MaskTrack R-CNN's track head and online tracker (Yang, Fan, Xu, ICCV 2019).
The defaults are those of the public toolbox's YouTube-VIS models (mmtracking 0.14)."""
from detectron2.config import CfgNode as CN

__all__ = ["add_masktrack_config"]


def add_masktrack_config(cfg):
    """Add ``MODEL.ROI_TRACK_HEAD.*`` and ``MODEL.MASKTRACK_TRACKER.*`` to ``cfg``."""
    # Track head: RoIAlign on ROI_HEADS.IN_FEATURES (FPN level per box as for the box head),
    # FC layers with ReLU, match logits = dot products of embeddings (modeling/track_head.py).
    cfg.MODEL.ROI_TRACK_HEAD = CN()
    # Name of the head in ROI_TRACK_HEAD_REGISTRY.
    cfg.MODEL.ROI_TRACK_HEAD.NAME = "MaskTrackHead"
    # RoIAlign output size, samples per bin (0: adaptive, ceil(box size / output size)) and type.
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_SAMPLING_RATIO = 0
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_TYPE = "ROIAlignV2"
    # FC layers (each followed by ReLU, the last one too) and their width = embedding size.
    cfg.MODEL.ROI_TRACK_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_TRACK_HEAD.FC_DIM = 1024
    # Weight of the match cross-entropy in the total loss.
    cfg.MODEL.ROI_TRACK_HEAD.LOSS_WEIGHT = 1.0
    # Training RoIs per target image (proposals + ground truth boxes when
    # ROI_HEADS.PROPOSAL_APPEND_GT), the fraction of them that may be foreground, and the IoU
    # with a ground-truth box from which a RoI is foreground (below it: background).
    cfg.MODEL.ROI_TRACK_HEAD.BATCH_SIZE_PER_IMAGE = 128
    cfg.MODEL.ROI_TRACK_HEAD.POSITIVE_FRACTION = 0.25
    cfg.MODEL.ROI_TRACK_HEAD.IOU_THRESHOLD = 0.5

    # Online tracker (modeling/masktrack_tracker.py). Score of detection i for track j:
    # log_softmax(match logits)[i, j] + DET_SCORE_WEIGHT * log(score_i)
    # + IOU_WEIGHT * IoU(box_i, box_j) + CLASS_WEIGHT * [class_i == class_j];
    # the "new track" column has IoU 0 and counts as the same class.
    cfg.MODEL.MASKTRACK_TRACKER = CN()
    cfg.MODEL.MASKTRACK_TRACKER.DET_SCORE_WEIGHT = 1.0
    cfg.MODEL.MASKTRACK_TRACKER.IOU_WEIGHT = 2.0
    cfg.MODEL.MASKTRACK_TRACKER.CLASS_WEIGHT = 10.0
    # A track not matched in this many consecutive frames is forgotten.
    cfg.MODEL.MASKTRACK_TRACKER.NUM_FRAMES_RETAIN = 20
