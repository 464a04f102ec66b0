"""Detections drawn on video frames."""

import numpy as np
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_instances"]


def draw_instances(frame: np.ndarray, instances: Instances, metadata) -> np.ndarray:
    """The BGR ``frame`` with the detections drawn by Detectron2's Visualizer; the masks and
    track ids of video instance segmentation in one colour per track through the video."""
    visualizer = Visualizer(frame[:, :, ::-1], metadata)
    if not instances.has("pred_track_ids"):
        return visualizer.draw_instance_predictions(instances).get_image()[:, :, ::-1]
    palette = colormap(rgb=True, maximum=1)
    names = metadata.get("thing_classes", None)
    labels = [
        f"{names[c] if names else c} #{t} {s:.0%}"
        for c, t, s in zip(
            instances.pred_classes.tolist(), instances.pred_track_ids.tolist(), instances.scores.tolist()
        )
    ]
    drawn = visualizer.overlay_instances(
        boxes=instances.pred_boxes,
        masks=instances.pred_masks.numpy() if instances.has("pred_masks") else None,
        labels=labels,
        assigned_colors=[palette[t % len(palette)] for t in instances.pred_track_ids.tolist()],
        alpha=0.5,
    )
    return drawn.get_image()[:, :, ::-1]
