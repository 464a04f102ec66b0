"""VideoTrainer: its choices made from the dataset's metadata, its metrics writer."""

from types import SimpleNamespace

import pytest
from detectron2.data import MetadataCatalog
from detectron2.engine import hooks
from detectron2.utils.events import EventWriter

from temporal_roi_align.data import is_degraded
from temporal_roi_align.engine import PeriodicWriter, VideoTrainer, setup_cfg
from temporal_roi_align.engine import trainer as trainer_module
from temporal_roi_align.evaluation import VIDEvaluator
from temporal_roi_align.model_zoo import get_config_file


def test_evaluator_follows_evaluator_type_and_frame_subsets(tmp_path):
    cfg = setup_cfg(get_config_file("toy/troi.yaml"), ["OUTPUT_DIR", str(tmp_path)])
    evaluator = VideoTrainer.build_evaluator(cfg, "toy_vid_val")
    assert isinstance(evaluator, VIDEvaluator)
    assert evaluator._subsets == {"degraded": is_degraded}
    assert not VideoTrainer.build_evaluator(cfg, "imagenet_vid_val")._subsets

    MetadataCatalog.get("engine_test_unknown_type").set(evaluator_type="lvis", thing_classes=["a"])
    with pytest.raises(NotImplementedError, match="engine_test_unknown_type.*'lvis'"):
        VideoTrainer.build_evaluator(cfg, "engine_test_unknown_type")


class RecordingWriter(EventWriter):
    def __init__(self, trainer):
        self.trainer, self.iterations = trainer, []

    def write(self):
        self.iterations.append(self.trainer.iter)


def test_metrics_are_written_every_period_iterations_or_seconds(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock[0])
    trainer = SimpleNamespace(iter=0, max_iter=100)
    writer = RecordingWriter(trainer)
    hook = PeriodicWriter([writer], period=20, seconds=20.0)
    hook.trainer = trainer
    hook.before_train()
    # Fast iterations (1 s): every 20 iterations; then slow ones (15 s): every 2nd, as 30 s >= 20 s.
    for iteration, seconds in [*((i, 1.0) for i in range(40)), *((i, 15.0) for i in range(40, 46))]:
        trainer.iter = iteration
        clock[0] += seconds
        hook.after_step()
    assert writer.iterations == [19, 39, 41, 43, 45]


def test_the_trainer_writes_with_the_timed_writer(vid_toy_datasets_env, tmp_path):
    cfg = setup_cfg(get_config_file("toy/troi.yaml"), ["OUTPUT_DIR", str(tmp_path)])
    writers = [h for h in VideoTrainer(cfg)._hooks if isinstance(h, hooks.PeriodicWriter)]
    assert [type(h) for h in writers] == [PeriodicWriter] and writers[0]._period == 20
