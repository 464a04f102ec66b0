"""
ImageNet VID loaders of the paper: trained on FGFA's split (VID frames + DET images of the 30
classes, about 1:1), each target frame with 2 supports drawn at random from its video; tested
on VID val with T=14 supports spread uniformly over the whole video. Shorter side 600 px.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import get_detection_dataset_dicts
from omegaconf import OmegaConf

from temporal_roi_align.data import (
    SupportSelector,
    VideoDatasetMapper,
    build_video_test_loader,
    build_video_train_loader,
)
from temporal_roi_align.evaluation import VIDEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_video_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names=("imagenet_vid_train_15frames", "imagenet_det_train_30classes")),
    mapper=L(VideoDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(600,), max_size=1000, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        # 2 supports drawn at random anywhere in the video (frame_range -1).
        support_selector=L(SupportSelector)(mode="random", num=2, frame_range=-1),
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_video_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="imagenet_vid_val", filter_empty=False),
    mapper=L(VideoDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice")],
        image_format="${...train.mapper.image_format}",
        # T supports: "uniform" over the whole video, or "stride": T/2 before and T/2 after the
        # target, S = stride frames apart, copying the first/last frame past the ends.
        support_selector=L(SupportSelector)(mode="uniform", num=14, stride=1),
    ),
    num_workers=4,
)

dataloader.evaluator = L(VIDEvaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${train.output_dir}/inference/${.dataset_name}",  # as the yaml configs
)
