"""VideoTrainer's choices made from the dataset's metadata."""

import pytest
from detectron2.data import MetadataCatalog

from temporal_roi_align.data import is_degraded
from temporal_roi_align.engine import VideoTrainer, setup_cfg
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
