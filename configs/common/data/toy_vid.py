"""
The loaders of imagenet_vid.py on the generated toy dataset (toy_vid_train / toy_vid_val, see
temporal_roi_align.data.make_toy_vid), as in configs/toy/Base-Toy.yaml: shorter side 160 px,
BGR, batch 4, T=6 uniform supports at test, loading in the main process.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .imagenet_vid import dataloader

dataloader.train.dataset.names = ("toy_vid_train",)
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(160,), max_size=256, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "BGR"
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0

dataloader.test.dataset.names = "toy_vid_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=256, sample_style="choice")
]
dataloader.test.mapper.support_selector.num = 6
dataloader.test.num_workers = 0
