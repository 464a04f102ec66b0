"""
The loaders of imagenet_vid.py on the generated toy dataset (toy_vid_train / toy_vid_val, see
temporal_roi_align.data.make_toy_vid), as in configs/toy/Base-Toy.yaml: shorter side 160 px,
BGR, batch 4, T=6 uniform supports at test, loading in the main process (see toy.py), and
AP50-degraded, the mAP@0.5 on the degraded frames (the dataset's frame_subsets), as
tools/train_net.py reports it.
"""

from detectron2.config import LazyCall as L

from temporal_roi_align.evaluation import dataset_frame_subsets

from .imagenet_vid import dataloader
from .toy import to_toy_dataset

to_toy_dataset(dataloader, "toy_vid", short_edge=160)
dataloader.evaluator.subsets = L(dataset_frame_subsets)(dataset_name="${..dataset_name}")
