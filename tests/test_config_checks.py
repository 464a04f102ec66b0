"""check_config (through setup_cfg): values that cannot work are refused before the run, naming
the key, the value and the rule; the shipped configs all pass."""

import glob
import logging
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_backbone

from temporal_roi_align.config_checks import ConfigError, smallest_feature_map
from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = get_config_file("toy/troi.yaml")


@pytest.mark.parametrize(
    "opts, message",
    [
        (["SOLVER.CHECKPOINT_PERIOD", 0], r"SOLVER\.CHECKPOINT_PERIOD 0: must be >= 1"),  # was ZeroDivisionError
        (["SOLVER.MAX_ITER", -1], r"SOLVER\.MAX_ITER -1: must be >= 1"),
        (["SOLVER.MAX_ITER", 0], r"SOLVER\.MAX_ITER 0: must be >= 1"),  # was a ValueError of the LR schedule
        (["SOLVER.STEPS", (300,)], r"SOLVER\.STEPS \(300,\): must not hold MAX_ITER 300"),
        (["SOLVER.IMS_PER_BATCH", 0], r"SOLVER\.IMS_PER_BATCH 0: must be >= 1"),
        (["SOLVER.STEPS", (200, 100)], r"SOLVER\.STEPS \(200, 100\): must be increasing"),
        (["SOLVER.BASE_LR", float("nan")], r"SOLVER\.BASE_LR nan: must be a finite number"),
        (["TEST.EVAL_PERIOD", -5], r"TEST\.EVAL_PERIOD -5: must be >= 0"),
        (
            ["MODEL.ROI_HEADS.NUM_CLASSES", 5],
            r"NUM_CLASSES 5: must be the number of classes of dataset 'toy_vid_train', 3",
        ),
        (["INPUT.SUPPORT.TRAIN_FRAME_RANGE", 0], r"TRAIN_FRAME_RANGE 0: must be -1 \(anywhere in the video\) or >= 1"),
        (["INPUT.SUPPORT.TEST_MODE", "random"], r"TEST_MODE 'random': must be one of \('uniform'"),
        (["INPUT.SUPPORT.NUM_TEST", -1], r"NUM_TEST -1: must be >= 0"),
        (["INPUT.RESIZE_STYLE", "mmcv"], r"RESIZE_STYLE 'mmcv': must be one of"),
        (["MODEL.TEMPORAL_ROI_ALIGN.CHUNK_SIZE", 0], r"CHUNK_SIZE 0: must be >= 1"),
        # 160 px at stride 16: 10x10 = 100 locations (see the next test).
        (
            ["MODEL.TEMPORAL_ROI_ALIGN.TOPK", 101],
            r"TOPK 101: must be at most the 100 locations \(10x10\) of the "
            r"smallest support map: 'res4_reduced' \(stride 16\) of a square image resized to 160 px",
        ),
    ],
)
def test_invalid_values_are_refused_with_key_value_and_rule(opts, message):
    with pytest.raises(ConfigError, match=message):
        setup_cfg(TOY, opts)


def test_all_errors_are_listed_at_once():
    with pytest.raises(ConfigError) as e:
        setup_cfg(TOY, ["SOLVER.CHECKPOINT_PERIOD", 0, "SOLVER.MAX_ITER", -1])
    assert "CHECKPOINT_PERIOD" in str(e.value) and "MAX_ITER" in str(e.value)


def test_topk_bound_is_the_real_smallest_map():
    cfg = setup_cfg(TOY, ["MODEL.TEMPORAL_ROI_ALIGN.TOPK", 100, "INPUT.MIN_SIZE_TRAIN", (192, 160)])
    cells, side, feature, _, size = smallest_feature_map(cfg)
    assert (cells, size) == (100, 160)
    features = build_backbone(cfg)(torch.zeros(1, 3, size, size))[feature]
    assert features.shape[-2:] == (side, side)
    # A smaller training size bounds it too.
    with pytest.raises(ConfigError, match="TOPK 100: must be at most the 64 locations"):
        setup_cfg(TOY, ["MODEL.TEMPORAL_ROI_ALIGN.TOPK", 100, "INPUT.MIN_SIZE_TRAIN", (128,)])


def test_no_supports_for_a_video_model_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        setup_cfg(TOY, ["INPUT.SUPPORT.NUM_TEST", 0])
    assert "INPUT.SUPPORT.NUM_TEST is 0: this video model evaluates each frame without support frames" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        setup_cfg(get_config_file("toy/single_frame.yaml"), ["INPUT.SUPPORT.NUM_TEST", 0])
    assert "NUM_TEST is 0" not in caplog.text


def test_shipped_configs_pass():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    assert len(files) > 30
    for path in files:
        setup_cfg(path)


def test_train_net_prints_the_errors_without_a_traceback(tmp_path):
    command = [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        TOY,
        "SOLVER.CHECKPOINT_PERIOD",
        "0",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "ConfigError: invalid config:\n  - SOLVER.CHECKPOINT_PERIOD 0: must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
