"""ImageNet VID evaluation cases: dataset dicts, detections as Instances, a VIDEvaluator run."""

import torch
from detectron2.structures import Boxes, BoxMode, Instances

from temporal_roi_align.evaluation import VIDEvaluator

XYXY = BoxMode.XYXY_ABS


def frame_dict(image_id, video_id, frame_id, anns, **fields):
    """A dataset dict; anns are (box XYXY, category_id, track_id); fields are added to it."""
    return {
        "file_name": f"{video_id}/{frame_id:06d}.JPEG",
        "image_id": image_id,
        "height": 100,
        "width": 300,
        "video_id": video_id,
        "frame_id": frame_id,
        "video_length": 20,
        "annotations": [{"bbox": list(box), "bbox_mode": XYXY, "category_id": c, "track_id": t} for box, c, t in anns],
        **fields,
    }


def instances(dets):
    """Instances from (box XYXY, score, class) tuples."""
    inst = Instances((100, 300))
    inst.pred_boxes = Boxes(torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([d[1] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[2] for d in dets], dtype=torch.int64)
    return inst


def run(name, predictions, **kwargs):
    """Evaluate {image_id: [(box, score, class), ...]}; every listed image is processed."""
    kwargs.setdefault("distributed", False)
    evaluator = VIDEvaluator(name, **kwargs)
    evaluator.reset()
    for image_id, dets in predictions.items():
        evaluator.process([{"image_id": image_id}], [{"instances": instances(dets)}])
    return evaluator.evaluate()
