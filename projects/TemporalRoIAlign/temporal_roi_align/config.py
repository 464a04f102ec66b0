"""The config keys of the video models: :func:`add_video_config` adds them, one helper per method
(as Mask2Former splits its image and video keys); :data:`CHOICES` holds the allowed values of
the keys that name a choice, for :func:`~.config_checks.check_config` and the code that reads them."""

import warnings
from functools import reduce

from detectron2.config import CfgNode as CN

__all__ = ["CHOICES", "RENAMED_CHOICES", "add_video_config", "current_choice", "rename_former_choices"]

# The allowed values of each key that names a choice (their meaning: the key's comment below):
# check_config refuses any other, and the code that reads a key takes its allowed values from here.
CHOICES = {
    "MODEL.TEMPORAL_ROI_ALIGN.EMBED": ("shared", "grouped"),
    "MODEL.TEMPORAL_ROI_ALIGN.SIMILARITY": ("auto", "direct", "gram", "compiled"),
    "MODEL.SELSA.REFERENCE_MODE": ("mmtrack", "all_frames"),
    "MODEL.FLOW_NET.WARP_CONVENTION": ("toolbox", "exact"),
    "INPUT.SUPPORT.TRAIN_MODE": ("random", "bilateral", "random_with_target", "stride"),
    "INPUT.SUPPORT.TEST_MODE": ("uniform", "stride", "uniform_with_target", "past", "key_frame"),
    "INPUT.TRAIN_MAPPER": ("VideoDatasetMapper", "VISDatasetMapper"),
    "INPUT.RESIZE_STYLE": ("detectron2", "mmtrack"),
    "VIDEO.CACHE_DTYPE": ("float32", "float16", "bfloat16"),
    "VIDEO.POSTPROCESS": ("none", "seq_nms"),
    "VIDEO.SEQ_NMS.RESCORE": ("avg", "max"),
}

# Former names of allowed values, still accepted with a FutureWarning: key -> {former: current}.
RENAMED_CHOICES = {"INPUT.RESIZE_STYLE": {"mmcv": "mmtrack"}}


def current_choice(key: str, value):
    """``value`` of the choice ``key`` under its current name: a former name (:data:`RENAMED_CHOICES`)
    is replaced, with a FutureWarning."""
    current = RENAMED_CHOICES.get(key, {}).get(value)
    if current is None:
        return value
    warnings.warn(
        f"{key} {value!r} is deprecated: it is now called {current!r} (the same behaviour); "
        f"set {key} {current!r} in the config",
        FutureWarning,
        stacklevel=1,  # one place, so Python's default filter shows it once per process
    )
    return current


def rename_former_choices(cfg) -> None:
    """Replace each former name of an allowed value in ``cfg`` (not frozen) by its current one."""
    for key in RENAMED_CHOICES:
        *parents, name = key.split(".")
        node = reduce(getattr, parents, cfg)
        setattr(node, name, current_choice(key, getattr(node, name)))


def add_video_config(cfg):
    """Add the config keys of the video detectors (in the style of ``add_pointrend_config``)."""
    _add_troi_config(cfg)
    _add_selsa_config(cfg)
    _add_flow_config(cfg)
    _add_masktrack_config(cfg)
    _add_tam_config(cfg)
    _add_video_input_config(cfg)


def _add_troi_config(cfg):
    """Temporal RoI Align (Gong et al., AAAI 2021). K=4, N=4 are the paper's defaults."""
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
    # How Eq. 2's similarities are computed, with the same result: "direct" (every RoI cell with
    # every support location), "gram" (through the target map's Gram matrix with each support
    # and ROIAlign's sampling weights: fewer FLOPs when RoI cells outnumber map locations),
    # "compiled" (the compiled operator, either way; an error where it is not built), or "auto"
    # (the compiled operator where built, else the cheaper PyTorch path by a measured cost rule;
    # docs/temporal_roi_align.md).
    cfg.MODEL.TEMPORAL_ROI_ALIGN.SIMILARITY = "auto"
    # With ENABLED and MODEL.MASK_ON, the mask head's RoI features come from Temporal RoI Align
    # too (its own pooler, same K, N, EMBED and support frames as the box head's).
    cfg.MODEL.TEMPORAL_ROI_ALIGN.MASK_POOLER = False


def _add_selsa_config(cfg):
    """SELSA (Wu et al., ICCV 2019): attention over the proposals of all frames in the box head."""
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


def _add_flow_config(cfg):
    """DFF (Zhu et al., CVPR 2017) and FGFA (ICCV 2017): the flow network and FGFA's weights."""
    # FlowNetSimple, the flow network of DFF and FGFA, as mmtrack runs it (modeling.FlowNetSimple;
    # its defaults are mmtrack's FlowNetSimple's).
    cfg.MODEL.FLOW_NET = CN()
    # Resize factor of the image pair before the network (mmtrack's img_scale_factor).
    cfg.MODEL.FLOW_NET.INPUT_SCALE = 0.5
    # The network's own normalisation of 0-255 RGB pixels, pixels / STD - MEAN (mmtrack's
    # flow_img_norm_std / flow_img_norm_mean).
    cfg.MODEL.FLOW_NET.PIXEL_MEAN = [0.411, 0.432, 0.450]
    cfg.MODEL.FLOW_NET.PIXEL_STD = [255.0, 255.0, 255.0]
    # Multiplies the predicted flow, besides the upsampling factor 4 / INPUT_SCALE (mmtrack's
    # flow_scale_factor).
    cfg.MODEL.FLOW_NET.FLOW_SCALE = 5.0
    # Divides the channels of every layer: 1 is the published FlowNetS; the toy configs use a
    # narrower one to train on the CPU.
    cfg.MODEL.FLOW_NET.WIDTH_DIVISOR = 1
    # layers.flow_warp's grid normalisation: "exact" (zero flow = identity, as the original MXNet
    # DFF/FGFA code), or "toolbox" (mmtrack's x / W, up to one pixel off; its checkpoints need it).
    cfg.MODEL.FLOW_NET.WARP_CONVENTION = "exact"

    # FGFA's adaptive weights (FgfaAggregator, Eq. 2-3): the embedding network.
    cfg.MODEL.FGFA = CN()
    # Convs of the embedding (mmtrack's FGFA configs: 1; the paper: a three-layer network).
    cfg.MODEL.FGFA.NUM_EMBED_CONVS = 1
    cfg.MODEL.FGFA.EMBED_KERNEL_SIZE = 3
    # Training aggregates the warped supports only (False, mmtrack's FGFA), or also the target's
    # own features (True: every frame of the paper's Eq. 1 sum, as FGFA aggregates at test).
    cfg.MODEL.FGFA.TRAIN_WITH_TARGET = False


def _add_masktrack_config(cfg):
    """MaskTrack R-CNN (Yang, Fan, Xu, ICCV 2019): the track head, its reference frame and the
    online tracker (modeling/track_head.py, modeling/masktrack_tracker.py, modeling/masktrack.py).
    Defaults are those of mmtrack's YouTube-VIS models."""
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

    # VISDatasetMapper (INPUT.TRAIN_MAPPER): the reference frame is drawn at random within
    # +-REFERENCE_FRAME_RANGE frames of the target, never the target itself (mmtrack's YouTube-VIS
    # sampling: 100).
    cfg.INPUT.REFERENCE_FRAME_RANGE = 100

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


def _add_tam_config(cfg):
    """TAM (Liu et al., ICCV 2021) as a residual temporal block on the RoI heads' input maps of the
    frame group (the target and its supports in time order), before RoI pooling; with or without
    TRoI. The group is the "stride" rule's (INPUT.SUPPORT.TRAIN_MODE and TEST_MODE "stride",
    NUM_TRAIN == NUM_TEST): TAM's global branch has a fixed number of frames."""
    cfg.MODEL.TAM = CN()
    cfg.MODEL.TAM.ENABLED = False
    # K: length of TAM's video-adaptive temporal kernel (3 in the paper).
    cfg.MODEL.TAM.KERNEL_SIZE = 3


def _add_video_input_config(cfg):
    """What the video models share: the DC5 backbone's channel reduction, the support frames, the
    training mapper, whole-video inference, the test resize and unreadable training frames."""
    # conv5 -> 3x3 conv to OUT_CHANNELS before RoI pooling, as in the public DC5 configs.
    cfg.MODEL.CHANNEL_REDUCTION = CN()
    cfg.MODEL.CHANNEL_REDUCTION.IN_FEATURE = "res5"
    cfg.MODEL.CHANNEL_REDUCTION.OUT_CHANNELS = 512
    # Freeze the 3x3 conv (with MODEL.BACKBONE.FREEZE_AT 5: the whole backbone). The toy VIS
    # fine-tuning does: fine-tuning conv4 through TRoI cost the masks their precision
    # (docs/video_instance_segmentation.md).
    cfg.MODEL.CHANNEL_REDUCTION.FREEZE = False

    # Support frames of each target frame.
    cfg.INPUT.SUPPORT = CN()
    # Training: NUM_TRAIN frames drawn at random from the same video, within +-TRAIN_FRAME_RANGE
    # of the target (-1: anywhere in the video).
    cfg.INPUT.SUPPORT.NUM_TRAIN = 2
    cfg.INPUT.SUPPORT.TRAIN_FRAME_RANGE = -1
    # How they are drawn (data.support_frames): "random" (the paper's TRoI and SELSA), "bilateral"
    # (FGFA: half before, half after the target, mmtrack's "bilateral_uniform"), or
    # "random_with_target" (DFF: the target itself among the candidates, mmtrack's "uniform"
    # with filter_key_img=False), or "stride" (the test rule's fixed group, for MODEL.TAM).
    cfg.INPUT.SUPPORT.TRAIN_MODE = "random"
    # Test (data.support_frames): "uniform" spreads NUM_TEST frames over the whole video (the
    # paper's default, T=14); "stride" takes NUM_TEST frames around the target, TEST_STRIDE apart,
    # copying the first/last frame past the video's ends; "past" (online) the NUM_TEST frames
    # before the target, TEST_STRIDE apart; "uniform_with_target" mmtrack's rule (see below);
    # "key_frame" (DFF, NUM_TEST 1) the latest key frame (VIDEO.KEY_FRAME_INTERVAL).
    cfg.INPUT.SUPPORT.TEST_MODE = "uniform"
    cfg.INPUT.SUPPORT.NUM_TEST = 14
    cfg.INPUT.SUPPORT.TEST_STRIDE = 1

    # Training mapper of build_video_train_loader: "VideoDatasetMapper" (target + supports) or
    # "VISDatasetMapper" (target + the reference frame of MaskTrack R-CNN's track head + supports).
    cfg.INPUT.TRAIN_MAPPER = "VideoDatasetMapper"

    # Whole-video inference (VideoRCNN's feature cache, used by evaluation and VideoPredictor).
    cfg.VIDEO = CN()
    # Most frames whose features the model keeps at once.
    cfg.VIDEO.CACHE_FRAMES = 64
    # "float32", "float16" or "bfloat16": precision of cached features.
    cfg.VIDEO.CACHE_DTYPE = "float32"
    # DFF: frames 0, K, 2K, ... of a video are key frames (the backbone runs on them only; the
    # others warp their key frame's features). 10 in the DFF paper's and mmtrack's tests.
    cfg.VIDEO.KEY_FRAME_INTERVAL = 10
    # Post-processing of each whole video's detections (VideoPredictor.predict_video, the
    # evaluation, the demo): "none", or "seq_nms" (Seq-NMS, Han et al. 2016; the heavy
    # post-processing behind the best rows of the TRoI paper's Table 6). It needs the whole
    # video, so online inference (VideoPredictor.predict_stream) cannot use it.
    cfg.VIDEO.POSTPROCESS = "none"
    # Seq-NMS, as FGFA's implementation: boxes of adjacent frames with IoU >= LINK_IOU are
    # linked; boxes with IoU >= NMS_IOU with a chosen sequence's box in its frame are dropped;
    # a sequence's boxes get its "avg" or "max" score.
    cfg.VIDEO.SEQ_NMS = CN()
    cfg.VIDEO.SEQ_NMS.LINK_IOU = 0.5
    cfg.VIDEO.SEQ_NMS.NMS_IOU = 0.3
    cfg.VIDEO.SEQ_NMS.RESCORE = "avg"

    # ---- Checkpoints converted from mmtracking 0.x (mmtrack): what its test pipeline does that
    # the keys above cannot express. See docs/converting_checkpoints.md and
    # configs/ImageNetVID/converted/. ----
    # "detectron2": ResizeShortestEdge (PIL bilinear, antialiased; rounds after scaling twice).
    # "mmtrack": data.transforms.MMTrackResizeShortestEdge (one factor min(MAX_SIZE / long side,
    # MIN_SIZE / short side), sides int(side * factor + 0.5), OpenCV INTER_LINEAR on uint8).
    # The former name "mmcv" of "mmtrack" is still accepted, with a warning (RENAMED_CHOICES).
    cfg.INPUT.RESIZE_STYLE = "detectron2"
    # INPUT.SUPPORT.TEST_MODE "uniform_with_target" means mmtrack's test supports: the
    # NUM_TEST frames round(i * (L - 1) / (NUM_TEST - 1)), i = 0..NUM_TEST-1, of the
    # video's L frames (the target not skipped; half to even), then the target frame itself.

    # Training only: a frame group whose target or support frame cannot be read (missing,
    # truncated, not an image, of another size) is skipped and another one drawn, with a warning
    # and a running count in the log, instead of stopping the run. Evaluation always stops on one.
    cfg.DATALOADER.SKIP_BAD_FRAMES = False
