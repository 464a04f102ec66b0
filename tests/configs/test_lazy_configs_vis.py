"""The lazy configs of MaskTrack R-CNN (+ TRoI): Table 8's grids (configs/YouTubeVIS/table8_*.py)
against the yaml configs, and a tiny lazy training on the toy VIS dataset."""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from temporal_roi_align.data import VideoDatasetMapper, VISDatasetMapper
from temporal_roi_align.engine import VideoTrainer, setup_cfg

from helpers import REPO, load_tool
from helpers.lazy_configs import assert_same_model, plain

TABLE8 = {
    name: os.path.join(REPO, "configs", "YouTubeVIS", f"table8_{name}.py") for name in ("R_50_FPN", "X_101_FPN", "toy")
}
# table8 file -> (yaml of its MaskTrack R-CNN + TRoI model, yaml of the "masktrack" point)
run_ablation = load_tool("run_ablation")
YAMLS = {
    "R_50_FPN": ("YouTubeVIS/masktrack_troi_R_50_FPN_ytvis2019.yaml", "YouTubeVIS/masktrack_R_50_FPN_ytvis2019.yaml"),
    "X_101_FPN": (
        "YouTubeVIS/masktrack_troi_X_101_FPN_ytvis2019.yaml",
        "YouTubeVIS/masktrack_X_101_FPN_ytvis2019.yaml",
    ),
    "toy": ("toy/masktrack_troi.yaml", "toy/masktrack.yaml"),
}
PAPER = {
    "R_50_FPN": {"masktrack": (30.3, 51.1, 32.6), "masktrack_troi": (33.5, 57.0, 36.6)},
    "X_101_FPN": {"masktrack": (34.9, 58.8, 36.5), "masktrack_troi": (38.0, 63.3, 40.3)},
}


def yaml_cfg(name, *opts):
    return setup_cfg(os.path.join(REPO, "configs", name), ["MODEL.DEVICE", "cpu", *opts])


@pytest.mark.parametrize("name", sorted(PAPER))
def test_grids_carry_the_papers_numbers(name):
    grid, _ = run_ablation.load_grid(TABLE8[name])
    assert [point for point, _ in grid] == ["masktrack", "masktrack_troi"]
    paper = LazyConfig.load(TABLE8[name], "PAPER_MASK_AP")
    assert {k: (v["AP"], v["AP50"], v["AP75"]) for k, v in paper.items()} == PAPER[name]
    for _, overrides in grid:  # every override names a key of the config
        run_ablation.point_config(TABLE8[name], overrides)


@pytest.mark.parametrize("name", sorted(TABLE8))
def test_both_points_are_the_yaml_models(name):
    troi_yaml, masktrack_yaml = YAMLS[name]
    grid = dict(run_ablation.load_grid(TABLE8[name])[0])
    cfg = LazyConfig.load(TABLE8[name])
    assert_same_model(instantiate(cfg.model), build_model(yaml_cfg(troi_yaml)))
    point = run_ablation.point_config(TABLE8[name], grid["masktrack"])
    lazy = {k: v.shape for k, v in instantiate(point.model).state_dict().items()}
    assert lazy == {k: v.shape for k, v in build_model(yaml_cfg(masktrack_yaml)).state_dict().items()}
    for key in ("train", "test"):
        assert instantiate(point.dataloader[key].mapper.support_selector).num == 0


def test_toy_data_and_solver_are_the_yaml_ones(vis_toy_datasets_env):
    cfg = LazyConfig.load(TABLE8["toy"])
    yaml = yaml_cfg("toy/masktrack_troi.yaml")
    assert plain(instantiate(cfg.dataloader.train.mapper), levels=4) == plain(VISDatasetMapper(yaml, True), levels=4)
    assert plain(instantiate(cfg.dataloader.test.mapper), levels=4) == plain(VideoDatasetMapper(yaml, False), levels=4)
    assert tuple(cfg.dataloader.train.dataset.names) == yaml.DATASETS.TRAIN
    assert (cfg.dataloader.test.dataset.names,) == yaml.DATASETS.TEST
    assert cfg.dataloader.train.total_batch_size == yaml.SOLVER.IMS_PER_BATCH
    assert (cfg.optimizer.lr, cfg.train.max_iter, cfg.train.seed) == (
        yaml.SOLVER.BASE_LR,
        yaml.SOLVER.MAX_ITER,
        yaml.SEED,
    )
    # The same clipped SGD: one step on large gradients moves the parameters alike.
    steps = []
    for build in (lambda m: VideoTrainer.build_optimizer(yaml, m), lambda m: instantiate(cfg.optimizer)):
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GroupNorm(1, 3))
        cfg.optimizer.params.model = module
        optimizer = build(module)
        (module(torch.randn(2, 4)) * 1000).square().sum().backward()
        optimizer.step()
        steps.append([p.detach().clone() for p in module.parameters()])
    for a, b in zip(*steps):
        torch.testing.assert_close(a, b)
    assert steps[0][0].abs().max() < 10, "the step is clipped"
    multiplier = instantiate(cfg.lr_multiplier)
    (step,) = yaml.SOLVER.STEPS
    values = [multiplier(i / cfg.train.max_iter) for i in (0, yaml.SOLVER.WARMUP_ITERS, step - 1, step)]
    assert values == pytest.approx([yaml.SOLVER.WARMUP_FACTOR, 1.0, 1.0, 0.1])


def test_paper_size_data_and_schedule_are_the_yaml_ones(vis_toy_datasets_env):
    cfg = LazyConfig.load(TABLE8["R_50_FPN"])
    yaml = yaml_cfg("YouTubeVIS/masktrack_troi_R_50_FPN_ytvis2019.yaml")
    # The reference frames' index needs the training dicts: both read the toy's here.
    cfg.dataloader.train.dataset.names = ("toy_vis_train",)
    yaml.defrost()
    yaml.DATASETS.TRAIN = ("toy_vis_train",)
    assert plain(instantiate(cfg.dataloader.train.mapper), levels=4) == plain(VISDatasetMapper(yaml, True), levels=4)
    assert plain(instantiate(cfg.dataloader.test.mapper), levels=4) == plain(VideoDatasetMapper(yaml, False), levels=4)
    assert (cfg.dataloader.test.dataset.names,) == yaml.DATASETS.TEST == ("ytvis_2019_val",)
    assert cfg.dataloader.train.total_batch_size == yaml.SOLVER.IMS_PER_BATCH == 8
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.00125, 0.9, 1e-4)
    assert cfg.train.max_iter == yaml.SOLVER.MAX_ITER
    multiplier, epoch = instantiate(cfg.lr_multiplier), cfg.train.max_iter // 12
    assert (8 * epoch, 11 * epoch) == yaml.SOLVER.STEPS
    values = [multiplier(i / cfg.train.max_iter) for i in (0, 500, 8 * epoch - 1, 8 * epoch, 11 * epoch)]
    assert values == pytest.approx([1 / 3, 1.0, 1.0, 0.1, 0.01])
    assert yaml.SOLVER.WARMUP_ITERS == 500 and yaml.SOLVER.WARMUP_FACTOR == pytest.approx(1 / 3)


def test_lazyconfig_train_net_trains_and_evaluates_the_toy_grid_point(vis_toy_datasets_env, tmp_path):
    grid = dict(run_ablation.load_grid(TABLE8["toy"])[0])
    tiny = [
        "train.max_iter=2",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
    ]
    env = dict(os.environ, DETECTRON2_DATASETS=vis_toy_datasets_env, OMP_NUM_THREADS="1")
    args = [
        sys.executable,
        "tools/lazyconfig_train_net.py",
        "--config-file",
        TABLE8["toy"],
        f"train.output_dir={tmp_path}",
        *tiny,
        *grid["masktrack"],
    ]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "copypaste: Task: segm" in log and os.path.isfile(tmp_path / "model_final.pth")
    assert os.path.isfile(tmp_path / "inference" / "toy_vis_val" / "results.json")
    assert OmegaConf.select(LazyConfig.load(TABLE8["toy"]), "model.roi_heads.box_pooler.topk") == 4
