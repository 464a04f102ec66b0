"""LazyConfigs (configs/common, configs/ablations), tools/lazyconfig_train_net.py and tools/run_ablation.py."""

import glob
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from temporal_roi_align.data import VideoDatasetMapper
from temporal_roi_align.engine import VideoTrainer, setup_cfg

from helpers import REPO, load_tool
from helpers.lazy_configs import assert_same_model, plain

ABLATIONS = [
    "support_frames_T",
    "stride_S",
    "uniform_T",
    "aggregation",
    "topk_K",
    "attention_blocks_N",
]
PAPER_BASE = os.path.join(REPO, "configs", "ablations", "troi_R_101_DC5.py")
TOY_BASE = os.path.join(REPO, "configs", "ablations", "troi_toy.py")
# Tiny training and test settings for the runs on the conftest toy dataset (64x80 frames).
TINY = [
    "train.max_iter=3",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.support_selector.num=2",
]


def ablation_file(name):
    return os.path.join(REPO, "configs", "ablations", f"{name}.py")


run_ablation = load_tool("run_ablation")


def run_tool(args, datasets):
    # One thread: the CPU is shared, and oversubscribed OpenMP threads make these runs 5x slower.
    env = dict(os.environ, DETECTRON2_DATASETS=datasets, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


# ---- the ablation files -------------------------------------------------------------------------------


def test_every_ablation_file_is_tested():
    files = {
        os.path.splitext(os.path.basename(f))[0] for f in glob.glob(os.path.join(REPO, "configs", "ablations", "*.py"))
    }
    assert files == set(ABLATIONS) | {"troi_R_101_DC5", "troi_toy"}


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_file_loads_with_its_grid_and_paper_numbers(name):
    cfg = LazyConfig.load(ablation_file(name))
    assert set(cfg) == {"model", "dataloader", "optimizer", "lr_multiplier", "train"}
    grid, paper = run_ablation.load_grid(ablation_file(name))
    assert len(grid) >= 3 and paper
    assert all(40 < value < 100 for value in paper.values())
    for _, overrides in grid:  # every point applies to the paper-size config
        point = run_ablation.point_config(ablation_file(name), overrides)
        for override in overrides:
            key, value = override.split("=")
            assert OmegaConf.select(point, key) == yaml.safe_load(value)


# Target frame 200 of a 500-frame video: 13 supports S=10 apart stay inside it.
TARGET, VIDEO_FRAMES = 200, range(500)


def support_stride(built):
    frames = built.test_mapper.support_selector(TARGET, VIDEO_FRAMES)
    stride, before = frames[-1] - frames[-2], len(frames) // 2
    offsets = [*range(-before, 0), *range(1, len(frames) - before + 1)]
    assert frames == [TARGET + k * stride for k in offsets], frames
    return stride


# Override key -> what it changed in the built model and mappers.
BUILT = {
    "model.roi_heads.box_pooler.topk": lambda b: b.model.roi_heads.box_pooler.topk,
    "model.roi_heads.box_pooler.num_attention_blocks": lambda b: b.model.roi_heads.box_pooler.aggregation.num_blocks,
    "dataloader.train.mapper.support_selector.num": lambda b: b.train_mapper.support_selector.num,
    "dataloader.test.mapper.support_selector.num": lambda b: len(b.test_mapper.support_selector(TARGET, VIDEO_FRAMES)),
    "dataloader.test.mapper.support_selector.stride": support_stride,
}


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_grid_point_builds_what_it_overrides(name):
    grid, _ = run_ablation.load_grid(ablation_file(name))
    keys = sorted({o.split("=")[0] for _, overrides in grid for o in overrides})
    assert set(keys) <= set(BUILT), f"add how to check {set(keys) - set(BUILT)} to BUILT"
    ablation_test_mapper = LazyConfig.load(ablation_file(name)).dataloader.test.mapper
    signatures = {}
    for point, overrides in grid:
        cfg = run_ablation.point_config(ablation_file(name), overrides, toy=True)
        built = SimpleNamespace(
            model=instantiate(cfg.model),
            train_mapper=instantiate(cfg.dataloader.train.mapper),
            test_mapper=instantiate(cfg.dataloader.test.mapper),
        )
        assert built.model.roi_heads.box_pooler.channels == 128, "the toy model"
        assert built.test_mapper.support_selector.mode == ablation_test_mapper.support_selector.mode, (
            "the ablation's setting, on the toy"
        )
        for override in overrides:
            key, value = override.split("=")
            assert BUILT[key](built) == yaml.safe_load(value), f"{point}: {override}"
        pooler = built.model.roi_heads.box_pooler
        if pooler.aggregation.num_blocks == 0:
            assert not list(pooler.parameters()), "averaging has no parameters"
        signatures[point] = tuple(BUILT[k](built) for k in keys)
    assert len(set(signatures.values())) == len(grid), signatures


def test_toy_rebase_keeps_the_ablation_setting_and_rejects_what_it_cannot_move():
    cfg = run_ablation.point_config(
        ablation_file("stride_S"), ["dataloader.test.mapper.support_selector.stride=3"], toy=True
    )
    assert (cfg.dataloader.test.mapper.support_selector.mode, cfg.dataloader.test.mapper.support_selector.num) == (
        "stride",
        26,
    )
    assert cfg.dataloader.test.dataset.names == "toy_vid_val" and cfg.model.roi_heads.num_classes == 3
    assert cfg.train.max_iter == 300

    ablation = LazyConfig.load(PAPER_BASE)
    del ablation.model.roi_heads.box_pooler.topk
    with pytest.raises(ValueError, match=r"removes keys of its base: \['model.roi_heads.box_pooler.topk'\]"):
        run_ablation.rebase(ablation, LazyConfig.load(PAPER_BASE), LazyConfig.load(TOY_BASE))
    ablation = LazyConfig.load(PAPER_BASE)
    ablation.model.roi_heads.mask_head = {"conv_dims": [256]}
    with pytest.raises(ValueError, match="cannot move model.roi_heads.mask_head.conv_dims"):
        run_ablation.rebase(ablation, LazyConfig.load(PAPER_BASE), LazyConfig.load(TOY_BASE))


# ---- the lazy configs against the yaml configs ---------------------------------------------------------


@pytest.mark.parametrize(
    "lazy, yaml_file",
    [
        ("common/models/video_rcnn_dc5.py", "ImageNetVID/troi_R_101_DC5.yaml"),
        ("common/models/video_rcnn_toy.py", "toy/troi.yaml"),
        ("common/models/fgfa_dc5.py", "ImageNetVID/fgfa_R_50_DC5.yaml"),
        ("common/models/dff_dc5.py", "ImageNetVID/dff_R_50_DC5.yaml"),
    ],
)
def test_lazy_model_is_the_yaml_model(lazy, yaml_file):
    lazy_model = instantiate(LazyConfig.load(os.path.join(REPO, "configs", lazy)).model)
    assert_same_model(lazy_model, build_model(setup_cfg(os.path.join(REPO, "configs", yaml_file))))


@pytest.mark.parametrize(
    "toy, yaml_file",
    [(False, "ImageNetVID/single_frame_R_101_DC5.yaml"), (True, "toy/single_frame.yaml")],
)
def test_single_frame_point_is_the_single_frame_yaml_model(toy, yaml_file):
    grid = dict(run_ablation.load_grid(ablation_file("aggregation"))[0])
    cfg = run_ablation.point_config(ablation_file("aggregation"), grid["single_frame"], toy=toy)
    yaml_cfg = setup_cfg(os.path.join(REPO, "configs", yaml_file))
    ours = {k: v.shape for k, v in instantiate(cfg.model).state_dict().items()}
    assert ours == {k: v.shape for k, v in build_model(yaml_cfg).state_dict().items()}
    for is_train, mapper in (
        (True, cfg.dataloader.train.mapper),
        (False, cfg.dataloader.test.mapper),
    ):
        assert (
            instantiate(mapper).support_selector.num == VideoDatasetMapper(yaml_cfg, is_train).support_selector.num == 0
        )


@pytest.mark.parametrize(
    "lazy, yaml_file",
    [(PAPER_BASE, "ImageNetVID/troi_R_101_DC5.yaml"), (TOY_BASE, "toy/troi.yaml")],
)
def test_lazy_data_and_solver_are_the_yaml_ones(lazy, yaml_file):
    cfg = LazyConfig.load(lazy)
    yaml_cfg = setup_cfg(os.path.join(REPO, "configs", yaml_file))
    for is_train, loader in ((True, cfg.dataloader.train), (False, cfg.dataloader.test)):
        assert plain(instantiate(loader.mapper), levels=4) == plain(VideoDatasetMapper(yaml_cfg, is_train), levels=4)
        assert loader.num_workers == yaml_cfg.DATALOADER.NUM_WORKERS
    assert tuple(cfg.dataloader.train.dataset.names) == yaml_cfg.DATASETS.TRAIN
    assert (cfg.dataloader.test.dataset.names,) == yaml_cfg.DATASETS.TEST
    assert cfg.dataloader.train.total_batch_size == yaml_cfg.SOLVER.IMS_PER_BATCH
    assert cfg.train.seed == yaml_cfg.SEED
    # The same evaluation: e.g. the toy's AP50-degraded, the mAP@0.5 on its degraded frames.
    evaluator = instantiate(cfg.dataloader.evaluator)
    assert evaluator._subsets == VideoTrainer.build_evaluator(yaml_cfg, yaml_cfg.DATASETS.TEST[0])._subsets
    assert bool(evaluator._subsets) == (lazy == TOY_BASE)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
        yaml_cfg.SOLVER.BASE_LR,
        yaml_cfg.SOLVER.MOMENTUM,
        yaml_cfg.SOLVER.WEIGHT_DECAY,
    )
    # Warmup then /10 once, as SOLVER.STEPS / WARMUP_ITERS (the yaml's MAX_ITER is rounded differently).
    multiplier, max_iter = instantiate(cfg.lr_multiplier), cfg.train.max_iter
    (step,) = yaml_cfg.SOLVER.STEPS
    values = [multiplier(i / max_iter) for i in (0, yaml_cfg.SOLVER.WARMUP_ITERS, step - 1, step, max_iter - 1)]
    assert values == pytest.approx([0.001, 1.0, 1.0, 0.1, 0.1])


def test_paper_schedule_is_six_epochs_with_a_drop_after_four():
    cfg = LazyConfig.load(PAPER_BASE)
    epoch = 6875  # ~110k images of FGFA's split at batch 16
    assert cfg.train.max_iter == 6 * epoch and cfg.dataloader.train.total_batch_size == 16
    multiplier = instantiate(cfg.lr_multiplier)
    assert multiplier((4 * epoch - 1) / cfg.train.max_iter) == 1.0
    assert multiplier(4 * epoch / cfg.train.max_iter) == pytest.approx(0.1)


# ---- the tools ------------------------------------------------------------------------------------------


def test_lazyconfig_train_net_trains_and_evaluates_on_the_cpu(vid_toy_datasets_env, tmp_path):
    args = ["tools/lazyconfig_train_net.py", "--config-file", "configs/ablations/troi_toy.py"]
    log = run_tool([*args, f"train.output_dir={tmp_path}", *TINY], vid_toy_datasets_env)
    assert "CUDA is not available: running on the CPU" in log
    assert "Starting training from iteration 0" in log and os.path.isfile(tmp_path / "model_final.pth")
    assert "copypaste: AP50,AP,AP75" in log  # the evaluation after the last iteration
    assert os.path.isfile(tmp_path / "inference" / "toy_vid_val" / "vid_results.json")
    # The package's logger is set up: the evaluator's table (and warnings) reach the console and log.txt.
    for text in (log, (tmp_path / "log.txt").read_text()):
        assert "Per-category bbox AP50 (COCO-style)" in text and "AP50-degraded" in text


def test_run_ablation_trains_once_for_test_only_points_and_reuses_results(
    vid_toy_datasets_env, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see run_tool
    args = [
        ablation_file("stride_S"),
        "--toy",
        "--only",
        "S=1",
        "--only",
        "S=3",
        "--output-dir",
        str(tmp_path),
        *TINY,
    ]
    run_ablation.main(args)
    log = capfd.readouterr().out
    assert "(1/2) S=1: training and evaluating" in log
    assert f"(2/2) S=3: evaluating {tmp_path / 'S=1' / 'model_final.pth'}" in log  # through --eval-only
    assert not os.path.exists(tmp_path / "S=3" / "model_final.pth")
    for point, stride in (("S=1", 1), ("S=3", 3)):
        saved = LazyConfig.load(str(tmp_path / point / "config.yaml"))
        assert saved.dataloader.test.mapper.support_selector.mode == "stride" and saved.model.roi_heads.num_classes == 3
        assert saved.dataloader.test.mapper.support_selector.stride == stride
        assert os.path.isfile(tmp_path / point / "inference" / "vid_results.json")
    rows = {line.split()[0]: line.split()[1:4] for line in log.splitlines() if line.startswith(("S=1 ", "S=3 "))}
    assert rows["S=1"][1:] == ["78.0", f"{float(rows['S=1'][0]) - 78.0:.1f}"] and rows["S=3"][1:] == ["-", "-"]

    run_ablation.main(args)  # everything is there: nothing runs again
    log = capfd.readouterr().out
    assert log.count("not run again") == 2 and "Command line arguments" not in log


def test_run_ablation_reports_bad_input_before_running(capsys):
    main = run_ablation.main
    with pytest.raises(SystemExit, match=r"--only \['K=9'\]: not in the GRID"):
        main([ablation_file("topk_K"), "--only", "K=9"])
    with pytest.raises(
        SystemExit, match=r"point K=1: ConfigError: .*\n  - model.roi_heads.box_pooler.top_k=2: the config"
    ):
        main([ablation_file("topk_K"), "model.roi_heads.box_pooler.top_k=2", "--dry-run"])
    with pytest.raises(SystemExit, match="defines no GRID"):
        main([TOY_BASE])
    # A key the config leaves at its default is fine: it is an argument of the pooler.
    main(
        [
            ablation_file("topk_K"),
            "--only",
            "K=2",
            "--dry-run",
            "model.roi_heads.box_pooler.chunk_size=512",
        ]
    )
    printed = capsys.readouterr().out
    assert (
        "--resume" in printed
        and "model.roi_heads.box_pooler.topk=2 model.roi_heads.box_pooler.chunk_size=512" in printed
    )
