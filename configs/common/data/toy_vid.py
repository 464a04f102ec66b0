"""
The loaders of imagenet_vid.py on the generated toy dataset (toy_vid_train / toy_vid_val, see
temporal_roi_align.data.make_toy_vid), as in configs/toy/Base-Toy.yaml: shorter side 160 px,
BGR, batch 4, T=6 uniform supports at test, loading in the main process (see toy.py).
"""

from .imagenet_vid import dataloader
from .toy import to_toy_dataset

to_toy_dataset(dataloader, "toy_vid", short_edge=160)
