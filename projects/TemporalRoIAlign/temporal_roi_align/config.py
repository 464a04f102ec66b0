from detectron2.config import CfgNode as CN


def add_video_config(cfg):
    """Add the config keys of the video detectors (in the style of ``add_pointrend_config``)."""
    # Temporal RoI Align (Gong et al., AAAI 2021). K=4, N=4 are the paper's defaults.
    cfg.MODEL.TEMPORAL_ROI_ALIGN = CN()
    cfg.MODEL.TEMPORAL_ROI_ALIGN.ENABLED = False
    # K: most similar locations per RoI cell and support frame (Eq. 2-4).
    cfg.MODEL.TEMPORAL_ROI_ALIGN.TOPK = 4
    # N: temporal attention blocks of TAFA (Eq. 5-8); 0 averages target and supports instead.
    cfg.MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS = 4
    # "shared": one 3x3 conv embeds all channels; "grouped": one 3x3 conv per attention block.
    cfg.MODEL.TEMPORAL_ROI_ALIGN.EMBED = "shared"
    # RoI cells whose similarities are computed at once; bounds the operator's extra memory.
    cfg.MODEL.TEMPORAL_ROI_ALIGN.CHUNK_SIZE = 2048
    # With ENABLED and MODEL.MASK_ON, the mask head's RoI features come from Temporal RoI Align
    # too (its own pooler, same K, N, EMBED and support frames as the box head's).
    cfg.MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER = False

    # SELSA (Wu et al., ICCV 2019): attention over the proposals of all frames in the box head.
    cfg.MODEL.SELSA = CN()
    cfg.MODEL.SELSA.NUM_ATTENTION_GROUPS = 16
    # SELSA modules in the FC box head, one after each of the first NUM_MODULES FC layers.
    cfg.MODEL.SELSA.NUM_MODULES = 2
    # Which proposals attend to which (SelsaBoxHead): "mmtrack" (mmtracking's SELSA, with which
    # the paper's SELSA and SELSA+TRoI numbers were produced): target proposals attend to the
    # support frames' proposals, which pass the FCs without aggregation; "all_frames" (the
    # original SELSA code): the proposals of all frames attend to each other at every module.
    cfg.MODEL.SELSA.REFERENCE_MODE = "mmtrack"
    # Proposals of each support frame that take part in the attention.
    cfg.MODEL.SELSA.SUPPORT_PROPOSALS_TRAIN = 256
    cfg.MODEL.SELSA.SUPPORT_PROPOSALS_TEST = 300

    # MaskTrack R-CNN (Yang, Fan, Xu, ICCV 2019): the track head and the online tracker
    # (modeling/track_head.py, modeling/masktrack_tracker.py, modeling/masktrack.py). Defaults are
    # those of mmtrack's YouTube-VIS models.
    cfg.MODEL.ROI_TRACK_HEAD = CN()
    # Name of the head in ROI_TRACK_HEAD_REGISTRY: RoIAlign on ROI_HEADS.IN_FEATURES (the FPN
    # level of each box as for the box head), FC layers with ReLU, dot-product match logits.
    cfg.MODEL.ROI_TRACK_HEAD.NAME = "MaskTrackHead"
    # RoIAlign output size of the track head.
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_RESOLUTION = 7
    # Samples per RoIAlign bin (0: adaptive, ceil(box size / output size)).
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_SAMPLING_RATIO = 0
    # RoIAlign type of the track head (ROIAlignV2: aligned, as mmtrack's).
    cfg.MODEL.ROI_TRACK_HEAD.POOLER_TYPE = "ROIAlignV2"
    # FC layers of the track head, each followed by ReLU (the last one too).
    cfg.MODEL.ROI_TRACK_HEAD.NUM_FC = 2
    # Width of those FC layers = the embedding size.
    cfg.MODEL.ROI_TRACK_HEAD.FC_DIM = 1024
    # Weight of the match cross-entropy in the total loss.
    cfg.MODEL.ROI_TRACK_HEAD.LOSS_WEIGHT = 1.0
    # Training RoIs of the track head per target image (RPN proposals + ground-truth boxes when
    # ROI_HEADS.PROPOSAL_APPEND_GT), sampled apart from the box head's.
    cfg.MODEL.ROI_TRACK_HEAD.BATCH_SIZE_PER_IMAGE = 128
    # Largest fraction of those RoIs that are foreground.
    cfg.MODEL.ROI_TRACK_HEAD.POSITIVE_FRACTION = 0.25
    # IoU with a ground-truth box from which a RoI is foreground (below it: background).
    cfg.MODEL.ROI_TRACK_HEAD.IOU_THRESHOLD = 0.5

    # MaskTrack R-CNN's online tracker. Score of detection i for track j:
    # log_softmax(match logits)[i, j] + DET_SCORE_WEIGHT * log(score_i)
    # + IOU_WEIGHT * IoU(box_i, box_j) + CLASS_WEIGHT * [class_i == class_j];
    # the "new track" column has IoU 0 and counts as the same class.
    cfg.MODEL.MASKTRACK_TRACKER = CN()
    # Weight of the log detection score.
    cfg.MODEL.MASKTRACK_TRACKER.DET_SCORE_WEIGHT = 1.0
    # Weight of the IoU with the track's last box.
    cfg.MODEL.MASKTRACK_TRACKER.IOU_WEIGHT = 2.0
    # Bonus for the track's last class.
    cfg.MODEL.MASKTRACK_TRACKER.CLASS_WEIGHT = 10.0
    # A track not matched in this many consecutive frames is forgotten.
    cfg.MODEL.MASKTRACK_TRACKER.NUM_FRAMES_RETAIN = 20

    # conv5 -> 3x3 conv to OUT_CHANNELS before RoI pooling, as in the public DC5 configs.
    cfg.MODEL.CHANNEL_REDUCTION = CN()
    cfg.MODEL.CHANNEL_REDUCTION.IN_FEATURE = "res5"
    cfg.MODEL.CHANNEL_REDUCTION.OUT_CHANNELS = 512

    # Support frames of each target frame.
    cfg.INPUT.SUPPORT = CN()
    # Training: NUM_TRAIN frames drawn at random from the same video, within +-TRAIN_FRAME_RANGE
    # of the target (-1: anywhere in the video).
    cfg.INPUT.SUPPORT.NUM_TRAIN = 2
    cfg.INPUT.SUPPORT.TRAIN_FRAME_RANGE = -1
    # Test (data.support_frames): "uniform" spreads NUM_TEST frames over the whole video (the
    # paper's default, T=14); "stride" takes NUM_TEST frames around the target, TEST_STRIDE apart,
    # copying the first/last frame past the video's ends; "past" (online) the NUM_TEST frames
    # before the target, TEST_STRIDE apart; "uniform_with_target" mmtrack's rule (see below).
    cfg.INPUT.SUPPORT.TEST_MODE = "uniform"
    cfg.INPUT.SUPPORT.NUM_TEST = 14
    cfg.INPUT.SUPPORT.TEST_STRIDE = 1

    # Training mapper of build_video_train_loader: "VideoDatasetMapper" (target + supports) or
    # "VISDatasetMapper" (target + the reference frame of MaskTrack R-CNN's track head + supports).
    cfg.INPUT.TRAIN_MAPPER = "VideoDatasetMapper"
    # VISDatasetMapper: the reference frame is drawn at random within +-REFERENCE_FRAME_RANGE
    # frames of the target, never the target itself (mmtrack's YouTube-VIS sampling: 100).
    cfg.INPUT.REFERENCE_FRAME_RANGE = 100

    # Whole-video inference (VideoRCNN's feature cache, used by evaluation and VideoPredictor).
    cfg.VIDEO = CN()
    # Most frames whose features the model keeps at once.
    cfg.VIDEO.CACHE_FRAMES = 64
    # "float32", "float16" or "bfloat16": precision of cached features.
    cfg.VIDEO.CACHE_DTYPE = "float32"

    # ---- Checkpoints converted from mmtracking 0.x (mmtrack): what its test pipeline does that
    # the keys above cannot express. See docs/converting_checkpoints.md and
    # configs/ImageNetVID/converted/. ----
    # "detectron2": ResizeShortestEdge (PIL bilinear, antialiased; rounds after scaling twice).
    # "mmtrack": data.transforms.MMTrackResizeShortestEdge (one factor min(MAX_SIZE / long side,
    # MIN_SIZE / short side), sides int(side * factor + 0.5), OpenCV INTER_LINEAR on uint8).
    cfg.INPUT.RESIZE_STYLE = "detectron2"
    # INPUT.SUPPORT.TEST_MODE "uniform_with_target" means mmtrack's test supports: the
    # NUM_TEST frames round(i * (L - 1) / (NUM_TEST - 1)), i = 0..NUM_TEST-1, of the
    # video's L frames (the target not skipped; half to even), then the target frame itself.
