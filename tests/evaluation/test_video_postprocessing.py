"""Video post-processing in the evaluation and its config."""

import pytest
import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, Instances

from temporal_roi_align.config import add_video_config
from temporal_roi_align.engine import VideoTrainer, setup_cfg
from temporal_roi_align.evaluation import VideoPostprocessingEvaluator, VIDEvaluator
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.postprocessing import build_video_postprocessor, seq_nms


class Recorder(DatasetEvaluator):
    def reset(self):
        self.seen = []

    def process(self, inputs, outputs):
        self.seen += [(i["video_id"], i["frame_id"], o["instances"]) for i, o in zip(inputs, outputs)]

    def evaluate(self):
        return {"frames": len(self.seen)}


def detections(score):
    instances = Instances((10, 10))
    instances.pred_boxes = Boxes(torch.tensor([[1.0, 1.0, 5.0, 5.0]]))
    instances.scores = torch.tensor([score])
    instances.pred_classes = torch.tensor([0])
    return instances


def test_each_whole_video_is_postprocessed_in_frame_order():
    calls = []

    def postprocess(frames):
        calls.append([round(float(f.scores[0]), 6) for f in frames])
        return [detections(1.0) for _ in frames]

    inner = Recorder()
    evaluator = VideoPostprocessingEvaluator(inner, postprocess)
    evaluator.reset()
    frames = [("a", 1, 0.2), ("a", 0, 0.1), ("b", 0, 0.3), ("b", 1, 0.4), ("b", 2, 0.5)]
    for video, frame, score in frames:
        evaluator.process([{"video_id": video, "frame_id": frame}], [{"instances": detections(score)}])
    assert calls == [[0.1, 0.2]] and len(inner.seen) == 2  # video a is complete, b is not yet
    assert evaluator.evaluate() == {"frames": 5}
    assert calls == [[0.1, 0.2], [0.3, 0.4, 0.5]]
    assert [(v, f) for v, f, _ in inner.seen] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert all(float(i.scores[0]) == 1.0 for _, _, i in inner.seen)


def test_a_video_split_by_another_is_an_error():
    evaluator = VideoPostprocessingEvaluator(Recorder(), lambda frames: frames)
    evaluator.reset()
    for video in ("a", "b", "a"):
        if video == "a" and evaluator._done:
            with pytest.raises(ValueError, match="frames of video 'a' arrived after another video's"):
                evaluator.process([{"video_id": video, "frame_id": 1}], [{"instances": detections(0.5)}])
        else:
            evaluator.process([{"video_id": video, "frame_id": 0}], [{"instances": detections(0.5)}])


def test_config_builds_seq_nms_or_nothing():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_video_config(cfg)
    assert build_video_postprocessor(cfg) is None
    cfg.VIDEO.POSTPROCESS = "seq_nms"
    cfg.VIDEO.SEQ_NMS.RESCORE = "max"
    postprocess = build_video_postprocessor(cfg)
    frames = [detections(0.2), detections(0.8)]
    ours = [float(f.scores[0]) for f in postprocess(frames)]
    assert ours == [float(f.scores[0]) for f in seq_nms(frames, rescore="max")] == pytest.approx([0.8, 0.8])
    for key, value, message in (
        ("POSTPROCESS", "tubelets", "VIDEO.POSTPROCESS must be one of"),
        ("SEQ_NMS.RESCORE", "sum", "VIDEO.SEQ_NMS.RESCORE must be one of"),
        ("SEQ_NMS.LINK_IOU", 1.5, r"VIDEO.SEQ_NMS.LINK_IOU must be in \[0, 1\]"),
    ):
        bad = cfg.clone()
        bad.merge_from_list([f"VIDEO.{key}", value])
        with pytest.raises(ValueError, match=message):
            build_video_postprocessor(bad)


def test_trainer_wraps_the_evaluator_when_postprocessing(tmp_path):
    cfg = setup_cfg(get_config_file("toy/troi.yaml"), ["OUTPUT_DIR", str(tmp_path), "VIDEO.POSTPROCESS", "seq_nms"])
    evaluator = VideoTrainer.build_evaluator(cfg, "toy_vid_val")
    assert isinstance(evaluator, VideoPostprocessingEvaluator) and isinstance(evaluator.evaluator, VIDEvaluator)
