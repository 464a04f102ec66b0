"""
The loaders of youtube_vis.py on the generated toy VIS dataset (toy_vis_train / toy_vis_val, see
temporal_roi_align.data.make_toy_vis), as in configs/toy/masktrack_troi.yaml: frames 128 px high,
BGR, batch 4, T=6 uniform supports at test, loading in the main process.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .youtube_vis import dataloader

dataloader.train.dataset.names = ("toy_vis_train",)
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128,), max_size=256, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "BGR"
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0

dataloader.test.dataset.names = "toy_vis_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=128, max_size=256, sample_style="choice")
]
dataloader.test.mapper.support_selector.num = 6
dataloader.test.num_workers = 0
