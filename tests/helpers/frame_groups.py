"""Synthetic frame groups (target + supports, as the video mappers give them) of random frames."""

import torch
from detectron2.structures import Boxes, Instances


def frame(video, index, height=64, width=96):
    """Frame ``index`` of ``video``: random pixels, the same for the same video and index."""
    g = torch.Generator().manual_seed(sum(map(ord, video)) * 1000 + index)
    return {
        "image": torch.randint(0, 255, (3, height, width), generator=g, dtype=torch.uint8),
        "video_id": video,
        "frame_id": index,
    }


def group(video, target, supports, with_instances=False):
    """The frame group of ``target`` with the frames ``supports`` (and one box of class 1)."""
    x = frame(video, target)
    x.update(height=64, width=96, image_id=f"{video}/{target}")
    x["supports"] = [frame(video, s) for s in supports]
    if with_instances:
        inst = Instances((64, 96))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 50.0, 40.0]]))
        inst.gt_classes = torch.tensor([1])
        x["instances"] = inst
    return x
