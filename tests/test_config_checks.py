"""check_config (through setup_cfg): values that cannot work are refused before the run, naming
the key, the value and the rule; the allowed values of each choice key are listed once
(config.CHOICES), the range of each numeric key too (config_checks.RANGES, LAZY_RANGES); a former
name is accepted with one warning; the shipped configs all pass."""

import ast
import glob
import json
import logging
import math
import os
import re
import subprocess
import sys
import warnings
from functools import reduce

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_backbone
from omegaconf import OmegaConf

from temporal_roi_align.checkpoint.common import config_differences
from temporal_roi_align.config import CHOICES, RENAMED_CHOICES, add_video_config
from temporal_roi_align.config_checks import (
    LAZY_RANGES,
    RANGES,
    ConfigError,
    check_config,
    check_lazy_config,
    range_errors,
    smallest_feature_map,
)
from temporal_roi_align.data import build_video_test_loader
from temporal_roi_align.data.datasets import register_coco_video_instances
from temporal_roi_align.data.transforms import MMTrackResizeShortestEdge, build_test_augmentation
from temporal_roi_align.engine import VideoTrainer, setup_cfg
from temporal_roi_align.model_zoo import get_config_file

from helpers import REPO, load_tool

TOY = get_config_file("toy/troi.yaml")


@pytest.mark.parametrize(
    "opts, message",
    [
        (["SOLVER.CHECKPOINT_PERIOD", 0], r"SOLVER\.CHECKPOINT_PERIOD 0: must be >= 1"),  # was ZeroDivisionError
        (["SOLVER.MAX_ITER", -1], r"SOLVER\.MAX_ITER -1: must be >= 1"),
        (["SOLVER.MAX_ITER", 0], r"SOLVER\.MAX_ITER 0: must be >= 1"),  # was a ValueError of the LR schedule
        (["SOLVER.STEPS", (0, 100)], r"SOLVER\.STEPS \(0, 100\): must be increasing iterations >= 1"),
        (
            ["SOLVER.WARMUP_ITERS", 301],
            r"SOLVER\.WARMUP_ITERS 301: must be at most MAX_ITER 300 \(the LR would never reach",
        ),
        (["SOLVER.WARMUP_FACTOR", 1.5], r"SOLVER\.WARMUP_FACTOR 1\.5: must be in \[0, 1\]"),
        (
            ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 1.5],
            r"SCORE_THRESH_TEST 1\.5: must be in \[0, 1\] \(detections scoring less",
        ),
        (["MODEL.RPN.NMS_THRESH", -0.1], r"MODEL\.RPN\.NMS_THRESH -0\.1: must be in \[0, 1\]"),
        (
            ["MODEL.ROI_HEADS.IOU_THRESHOLDS", [0.6, 0.4], "MODEL.ROI_HEADS.IOU_LABELS", [0, -1, 1]],
            r"IOU_THRESHOLDS \[0\.6, 0\.4\]: must be increasing",
        ),
        (["MODEL.RPN.IOU_LABELS", [0, 1]], r"MODEL\.RPN\.IOU_LABELS \[0, 1\]: must be 3 labels"),
        (["INPUT.MIN_SIZE_TRAIN", ()], r"INPUT\.MIN_SIZE_TRAIN \(\): must be a list of numbers, each >= 1"),
        (["MODEL.TAM.KERNEL_SIZE", 4], r"MODEL\.TAM\.KERNEL_SIZE 4: must be an odd number >= 1"),
        (["VIDEO.SEQ_NMS.NMS_IOU", 3.0], r"NMS_IOU 3\.0: must be in \[0, 1\]"),
        (["SOLVER.IMS_PER_BATCH", 0], r"SOLVER\.IMS_PER_BATCH 0: must be >= 1"),
        (["SOLVER.STEPS", (200, 100)], r"SOLVER\.STEPS \(200, 100\): must be increasing"),
        (["SOLVER.BASE_LR", float("nan")], r"SOLVER\.BASE_LR nan: must be a finite number >= 0"),
        (["TEST.EVAL_PERIOD", -5], r"TEST\.EVAL_PERIOD -5: must be >= 0"),
        (
            ["MODEL.ROI_HEADS.NUM_CLASSES", 5],
            r"NUM_CLASSES 5: must be the number of classes of dataset 'toy_vid_train', 3",
        ),
        (["INPUT.SUPPORT.TRAIN_FRAME_RANGE", 0], r"TRAIN_FRAME_RANGE 0: must be -1 \(anywhere in the video\) or >= 1"),
        (["INPUT.SUPPORT.TEST_MODE", "random"], r"TEST_MODE 'random': must be one of \('uniform'"),
        (["INPUT.SUPPORT.NUM_TEST", -1], r"NUM_TEST -1: must be >= 0"),
        (["INPUT.RESIZE_STYLE", "mmcv2"], r"RESIZE_STYLE 'mmcv2': must be one of \('detectron2', 'mmtrack'\)"),
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


def bad_value(rule, default):
    """A value outside ``rule`` shaped as ``default`` (a number or a list of them)."""
    number = rule.high + 1 if math.isfinite(rule.high) else (rule.low if rule.low_open else rule.low - 1)
    if isinstance(default, (list, tuple)):
        return type(default)(bad_value(rule, d) for d in default[:1])
    return float(number) if isinstance(default, float) else int(number)


def test_every_range_key_exists_with_an_allowed_default():
    cfg = setup_cfg(TOY)
    for key, (rule, _) in RANGES.items():
        assert not range_errors({key: (rule, "")}, lambda k: value_of(cfg, k)), key
    # Each lazy key is in a whole lazy config: none is checked for nothing.
    lazy = [
        LazyConfig.load(os.path.join(REPO, "configs", f)) for f in ("ablations/troi_toy.py", "YouTubeVIS/table8_toy.py")
    ]
    for key in LAZY_RANGES:
        assert any(OmegaConf.select(c, key, default=None) is not None for c in lazy), key


@pytest.mark.parametrize("key", sorted(RANGES))
def test_each_range_key_refuses_a_value_outside(key):
    cfg = setup_cfg(TOY)
    cfg.defrost()
    *parents, name = key.split(".")
    node = reduce(getattr, parents, cfg)
    setattr(node, name, bad_value(RANGES[key][0], getattr(node, name)))
    with pytest.raises(ConfigError, match=rf"\n  - {re.escape(key)} .*: must be "):
        check_config(cfg)


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


def test_every_lazy_config_loads():
    """Every LazyConfig file loads; those outside common/ (the parts) are whole runs."""
    files = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True))
    assert len(files) > 20
    for path in files:
        cfg = LazyConfig.load(path)
        if os.sep + "common" + os.sep not in path:
            assert {"model", "dataloader", "optimizer", "train"} <= set(cfg), path
            check_lazy_config(cfg, path)


def value_of(cfg, key):
    return reduce(getattr, key.split("."), cfg)


def test_every_choice_key_exists_with_an_allowed_default():
    cfg = get_cfg()
    add_video_config(cfg)
    for key, choices in CHOICES.items():
        assert len(set(choices)) == len(choices) >= 2, key
        assert value_of(cfg, key) in choices, key
    for key, renames in RENAMED_CHOICES.items():
        for former, current in renames.items():
            assert former not in CHOICES[key] and current in CHOICES[key], key


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_each_choice_key_refuses_another_value(key):
    with pytest.raises(ConfigError) as e:
        setup_cfg(TOY, [key, "no_such_value"])
    assert f"{key} 'no_such_value': must be one of {CHOICES[key]}" in str(e.value)


def string_literals(path):
    """``(line, strings)`` of each tuple, list, set and dict-keys literal of a file but ``__all__``."""
    tree = ast.parse(open(path).read(), path)
    exports = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    }
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and id(node) not in exports:
            elements = node.keys if isinstance(node, ast.Dict) else node.elts
            yield node.lineno, {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def test_no_copy_of_an_allowed_value_list():
    """No literal of the package outside config.py holds all the allowed values of a choice key:
    the code that needs them reads config.CHOICES."""
    package = os.path.join(REPO, "projects", "TemporalRoIAlign", "temporal_roi_align")
    copies = []
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        name = os.path.relpath(path, package)
        if name == "config.py" or name.startswith("model_zoo"):
            continue
        for line, strings in string_literals(path):
            copies += [f"{name}:{line} copies {key}" for key, choices in CHOICES.items() if set(choices) <= strings]
    assert not copies, copies


def former_name_warnings(caught):
    return [
        str(w.message) for w in caught if issubclass(w.category, FutureWarning) and "RESIZE_STYLE" in str(w.message)
    ]


def test_former_resize_style_mmcv_is_accepted_everywhere_with_one_warning():
    """ "mmcv", the former name of "mmtrack": setup_cfg renames it (so the saved config and the
    converters' comparison with mmtrack's settings see "mmtrack"); a config set up without it
    passes check_config and resizes as "mmtrack". One FutureWarning per process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        cfg = setup_cfg(TOY, ["INPUT.RESIZE_STYLE", "mmcv"])
        plain = get_cfg()
        add_video_config(plain)
        plain.INPUT.RESIZE_STYLE = "mmcv"
        check_config(plain)
        augmentations = [build_test_augmentation(c) for c in (cfg, plain, plain)]
    assert former_name_warnings(caught) == [
        "INPUT.RESIZE_STYLE 'mmcv' is deprecated: it is now called 'mmtrack' (the same behaviour); "
        "set INPUT.RESIZE_STYLE 'mmtrack' in the config"
    ]
    assert cfg.INPUT.RESIZE_STYLE == "mmtrack"
    assert config_differences(cfg, [("INPUT.RESIZE_STYLE", "mmtrack")], "mmtrack") == []
    # mmtrack's resize: one factor min(1333 / 1280, 800 / 720), sides int(side * factor + 0.5).
    image = np.zeros((720, 1280, 3), dtype=np.uint8)
    factor = min(plain.INPUT.MAX_SIZE_TEST / 1280, plain.INPUT.MIN_SIZE_TEST / 720)
    expected = (int(720 * factor + 0.5), int(1280 * factor + 0.5))
    for augmentation in augmentations[1:]:
        (resize,) = augmentation
        assert isinstance(resize, MMTrackResizeShortestEdge)
        assert resize.get_transform(image).apply_image(image).shape[:2] == expected


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
    assert f"ConfigError: {TOY}: invalid config:\n  - SOLVER.CHECKPOINT_PERIOD 0: must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_steps_after_the_schedule_are_only_warned(caplog):
    """A short run of a long config (MAX_ITER 2, the config's steps) is legitimate, as in Detectron2."""
    with caplog.at_level(logging.WARNING, logger="temporal_roi_align"):
        cfg = setup_cfg(TOY, ["SOLVER.MAX_ITER", 200, "SOLVER.STEPS", (100, 400), "SOLVER.WARMUP_ITERS", 0])
    assert tuple(cfg.SOLVER.STEPS) == (100, 400)
    assert "SOLVER.STEPS (100, 400): [400] at or after MAX_ITER 200 never apply" in caplog.text


# ---- NUM_CLASSES against datasets registered without their classes (read from their JSON) -------------


def coco_video_dataset(tmp_path, name, num_categories):
    """A COCO-video JSON of one 2-frame video with ``num_categories`` classes, registered as
    ``name`` without its classes (they are known once the loader reads the JSON)."""
    path = tmp_path / f"{name}.json"
    images = [
        {"id": i, "video_id": 1, "frame_id": i, "file_name": f"v/{i}.jpg", "height": 64, "width": 80} for i in (0, 1)
    ]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20]} for i in (0, 1)]
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(num_categories)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_video_instances(name, {}, str(path), str(tmp_path))
    return name


@pytest.fixture
def json_datasets(tmp_path):
    """``(train, val)`` names: 4 classes in the training JSON, 3 in the validation one."""
    names = coco_video_dataset(tmp_path, "nc_train", 4), coco_video_dataset(tmp_path, "nc_val", 3)
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def num_classes_cfg(tmp_path, train, test, num_classes):
    return setup_cfg(  # passes: the classes are not known before a loader reads the JSON
        TOY,
        ["DATASETS.TRAIN", (train,), "DATASETS.TEST", (test,), "MODEL.ROI_HEADS.NUM_CLASSES", num_classes]
        + ["OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.WARMUP_ITERS", 0],
    )


def test_num_classes_is_checked_when_the_training_loader_reads_the_json(json_datasets, tmp_path):
    train, val = json_datasets
    with pytest.raises(
        ConfigError, match=r"NUM_CLASSES 3: must be the number of classes of dataset 'nc_train', 4 "
    ) as e:
        VideoTrainer(num_classes_cfg(tmp_path, train, val, 3))
    assert "class 3 would be taken for the background" in str(e.value)


def test_num_classes_is_checked_against_the_test_set_before_training(json_datasets, tmp_path):
    train, val = json_datasets
    # The training set has 4 classes, the test set 3: refused before training, not at the first evaluation.
    with pytest.raises(ConfigError, match=r"NUM_CLASSES 4: must be the number of classes of dataset 'nc_val', 3 ") as e:
        VideoTrainer(num_classes_cfg(tmp_path, train, val, 4))
    assert "the model would learn classes that no annotation has" in str(e.value)
    # Once read, the classes are known: setup_cfg refuses the config.
    with pytest.raises(ConfigError, match="dataset 'nc_val', 3"):
        num_classes_cfg(tmp_path, val, val, 4)
    # Registered again (classes unknown): the test loader checks them (--eval-only).
    coco_video_dataset(tmp_path, val, 3)
    cfg = num_classes_cfg(tmp_path, val, val, 4)
    with pytest.raises(ConfigError, match="dataset 'nc_val', 3"):
        build_video_test_loader(cfg, val)
    cfg = num_classes_cfg(tmp_path, val, val, 3)
    assert len(build_video_test_loader(cfg, val).dataset) == 2


def test_lazy_num_classes_is_checked_against_its_datasets(json_datasets):
    train, val = json_datasets
    lazy = load_tool("lazyconfig_train_net")
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "ablations", "troi_toy.py"))
    cfg.dataloader.train.dataset.names = [train]
    cfg.dataloader.test.dataset.names = val
    with pytest.raises(ConfigError, match=r"model\.roi_heads\.num_classes 3: .* dataset 'nc_train', 4 "):
        lazy.check_class_counts(cfg, eval_only=False)
    lazy.check_class_counts(cfg, eval_only=True)  # the test set alone has 3
