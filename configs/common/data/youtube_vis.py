"""
YouTube-VIS 2019 loaders of MaskTrack R-CNN (mmtrack's recipe): each training target frame with
one reference frame drawn within +-100 frames of it (VISDatasetMapper) and its support frames
(none for MaskTrack R-CNN, 2 drawn at random for MaskTrack R-CNN + TRoI), frames resized to fit
640 x 360 and flipped at random; 8 frames per iteration. Test: every frame of each val video in
order, T support frames spread over the video, scored by the YouTube-VIS evaluation server
(YTVISEvaluator writes results.json and submission.zip).
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import get_detection_dataset_dicts
from omegaconf import OmegaConf

from temporal_roi_align.data import (
    SupportSelector,
    VideoDatasetMapper,
    VISDatasetMapper,
    build_video_test_loader,
    build_video_train_loader,
    index_frame_annotations,
)
from temporal_roi_align.evaluation import YTVISEvaluator

dataloader = OmegaConf.create()

dataloader.train = L(build_video_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names=("ytvis_2019_train",)),
    mapper=L(VISDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(360,), max_size=640, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=True,
        instance_mask_format="bitmask",
        support_selector=L(SupportSelector)(mode="random", num=2, frame_range=-1),
        reference_selector=L(SupportSelector)(mode="random", num=1, frame_range=100),
        # The training frames' annotations by (video, frame), for the reference frames.
        frame_index=L(index_frame_annotations)(dataset_names="${...dataset.names}"),
    ),
    total_batch_size=8,
    num_workers=4,
)

dataloader.test = L(build_video_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="ytvis_2019_val", filter_empty=False),
    mapper=L(VideoDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=360, max_size=640, sample_style="choice")],
        image_format="${...train.mapper.image_format}",
        use_instance_mask=True,
        instance_mask_format="bitmask",
        support_selector=L(SupportSelector)(mode="uniform", num=14),
    ),
    num_workers=4,
)

dataloader.evaluator = L(YTVISEvaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${train.output_dir}/inference/${.dataset_name}",  # as the yaml configs
)
