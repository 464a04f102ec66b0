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

    # Training only: a frame group whose target or support frame cannot be read (missing,
    # truncated, not an image, of another size) is skipped and another one drawn, with a warning
    # and a running count in the log, instead of stopping the run. Evaluation always stops on one.
    cfg.DATALOADER.SKIP_BAD_FRAMES = False
