"""Evaluation of detections post-processed over whole videos (e.g. Seq-NMS)."""

from typing import Callable, List

from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Instances

__all__ = ["VideoPostprocessingEvaluator"]


class VideoPostprocessingEvaluator(DatasetEvaluator):
    """
    Feeds another evaluator the detections of each whole video after ``postprocess`` (a function
    of one video's per-frame ``Instances``, in temporal order, e.g. Seq-NMS).

    The frames of a video must arrive together and in order, as the video test loader's
    :class:`VideoInferenceSampler` gives them (one video is never split between processes):
    a video is complete when a frame of another video arrives, or at :meth:`evaluate`. Frames
    of a video seen again after another video are an error.
    """

    def __init__(self, evaluator: DatasetEvaluator, postprocess: Callable[[List[Instances]], List[Instances]]):
        self.evaluator = evaluator
        self.postprocess = postprocess

    def reset(self):
        self.evaluator.reset()
        self._video, self._frames, self._done = None, [], set()

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if inp["video_id"] != self._video:
                self._flush()
                if inp["video_id"] in self._done:
                    raise ValueError(
                        f"frames of video {inp['video_id']!r} arrived after another video's: video "
                        "post-processing needs each video's frames together (use the video test loader)"
                    )
                self._video = inp["video_id"]
            self._frames.append((inp, out))

    def evaluate(self):
        self._flush()
        return self.evaluator.evaluate()

    def _flush(self):
        if not self._frames:
            return
        frames = sorted(self._frames, key=lambda pair: pair[0]["frame_id"])
        processed = self.postprocess([out["instances"] for _, out in frames])
        for (inp, out), instances in zip(frames, processed):
            self.evaluator.process([inp], [{**out, "instances": instances}])
        self._done.add(self._video)
        self._frames = []
