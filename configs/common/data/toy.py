"""
The toy-size loaders of toy_vid.py and toy_vis.py: a dataloader config of the paper's recipe
pointed at a generated toy dataset, frames resized to a shorter side of ``short_edge`` px (at
most 256 px long), BGR, batch 4, T=6 uniform supports at test, loading in the main process.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L


def to_toy_dataset(dataloader, dataset: str, short_edge: int):
    """Set ``dataloader`` (its ``train`` and ``test``) to the toy dataset ``dataset`` (the names
    ``<dataset>_train`` and ``<dataset>_val``) at toy size."""
    dataloader.train.dataset.names = (f"{dataset}_train",)
    dataloader.train.mapper.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=(short_edge,), max_size=256, sample_style="choice"),
        L(T.RandomFlip)(horizontal=True),
    ]
    dataloader.train.mapper.image_format = "BGR"
    dataloader.train.total_batch_size = 4
    dataloader.train.num_workers = 0

    dataloader.test.dataset.names = f"{dataset}_val"
    dataloader.test.mapper.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=short_edge, max_size=256, sample_style="choice")
    ]
    dataloader.test.mapper.support_selector.num = 6
    dataloader.test.num_workers = 0
