"""
The loaders of youtube_vis.py on the generated toy VIS dataset (toy_vis_train / toy_vis_val, see
temporal_roi_align.data.make_toy_vis), as in configs/toy/masktrack_troi.yaml: frames resized to 160 px high,
BGR, batch 4, T=6 uniform supports at test, loading in the main process (see toy.py).
"""

from .toy import to_toy_dataset
from .youtube_vis import dataloader

to_toy_dataset(dataloader, "toy_vis", short_edge=160)
