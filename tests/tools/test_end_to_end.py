"""train_net.py, 2-process CPU training, VideoPredictor and demo_video.py on tiny real data."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from temporal_roi_align.data import select_test_supports
from temporal_roi_align.engine import VideoTrainer, launch, setup_cfg
from temporal_roi_align.engine.launch import threads_per_process
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.postprocessing import seq_nms
from temporal_roi_align.predictor import VideoPredictor

from helpers import REPO
from helpers.clips import clip_frames
from helpers.configs import TINY_TRAINING
from helpers.training import train_two_ranks

pytestmark = pytest.mark.slow

TINY = [*TINY_TRAINING, "INPUT.SUPPORT.NUM_TEST", 3, "SOLVER.BASE_LR", 0.005]


def run_tool(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_net_trains_evaluates_and_resumes(vid_toy_datasets_env, tmp_path):
    env = {"DETECTRON2_DATASETS": vid_toy_datasets_env}
    opts = [
        "OUTPUT_DIR",
        str(tmp_path),
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        *[str(v) for v in TINY],
    ]
    log = run_tool("tools/train_net.py", "--config-file", "configs/toy/troi.yaml", *opts, env_extra=env)
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert "CUDA is not available: running on the CPU" in log
    with open(tmp_path / "inference" / "toy_vid_val" / "vid_results.json") as f:
        assert "AP50" in f.read()
    # --resume continues from the last checkpoint (iteration 4) instead of starting over.
    log = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/toy/troi.yaml",
        "--resume",
        *opts[:2],
        "SOLVER.MAX_ITER",
        "6",
        *opts[4:],
        env_extra=env,
    )
    assert "Starting training from iteration 4" in log
    log = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/toy/troi.yaml",
        "--eval-only",
        *opts,
        "MODEL.WEIGHTS",
        str(tmp_path / "model_final.pth"),
        env_extra=env,
    )
    assert "AP50" in log


def test_train_net_reports_a_missing_config_file():
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", "configs/nope.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "configs/nope.yaml: config file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_cpu_processes_train_in_sync(vid_toy_datasets_env, tmp_path, monkeypatch):
    # Without OMP_NUM_THREADS each process gets its share of the cores.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = str(tmp_path / "ranks.pth")
    opts = ["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", 3, "TEST.EVAL_PERIOD", 0, *TINY]
    # No evaluation at the end of training: DATASETS.TEST is emptied.
    opts += ["DATASETS.TEST", ()]
    launch(train_two_ranks, 2, dist_url="auto", args=(get_config_file("toy/troi.yaml"), opts, result))
    out = torch.load(result)
    assert out["world_size"] == 2
    assert out["threads"] == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2
    rank0, rank1 = out["params"]
    torch.testing.assert_close(rank0, rank1, rtol=0, atol=0)
    initial = setup_cfg(get_config_file("toy/troi.yaml"), opts)
    torch.manual_seed(0)
    assert rank0.numel() == sum(p.numel() for p in VideoTrainer.build_model(initial).parameters())


def test_threads_per_process_share_the_cores_unless_omp_num_threads_is_set():
    assert threads_per_process(2, environ={}, cores=16) == 8
    assert threads_per_process(3, environ={}, cores=16) == 5
    assert threads_per_process(4, environ={}, cores=2) == 1
    assert threads_per_process(2, environ={"OMP_NUM_THREADS": "3"}, cores=16) is None


def predictor(variant="troi", *opts):
    torch.manual_seed(0)
    cfg = setup_cfg(
        get_config_file(f"toy/{variant}.yaml"),
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.MIN_SIZE_TEST", 64, *opts],
    )
    return VideoPredictor(cfg, check_weights=False)


def test_offline_prediction_runs_the_backbone_about_once_per_frame():
    _, frames = clip_frames(count=8)
    p = predictor("troi", "INPUT.SUPPORT.NUM_TEST", 4)
    calls = []
    p.model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    outputs = [x["instances"] for x in p.predict_video(frames)]
    assert len(outputs) == 8 and sum(calls) == 8
    for frame, instances in zip(frames, outputs):
        assert instances.image_size == frame.shape[:2]
        assert len(instances) > 0

    p.model.feature_cache.capacity = 0
    recomputed = [x["instances"] for x in p.predict_video(frames)]
    assert sum(calls) == 8 + 8 * 5
    for a, b in zip(outputs, recomputed):
        torch.testing.assert_close(a.scores, b.scores)


def test_online_prediction_uses_past_frames_only():
    assert select_test_supports(0, range(6), 3, "past", stride=2) == [0, 0, 0]
    assert select_test_supports(5, range(6), 3, "past", stride=2) == [3, 1, 0]
    _, frames = clip_frames(count=5)
    p = predictor("troi", "INPUT.SUPPORT.NUM_TEST", 2)
    online = [x["instances"].scores for x in p.predict_stream(iter(frames))]
    # Frame 2's result cannot depend on frames 3 and 4.
    changed = frames[:3] + [np.zeros_like(frames[0])] * 2
    online_changed = [x["instances"].scores for x in p.predict_stream(iter(changed))]
    for a, b in zip(online[:3], online_changed[:3]):
        torch.testing.assert_close(a, b)


def test_half_precision_cache_stays_close():
    _, frames = clip_frames(count=4)
    full = [x["instances"].scores for x in predictor("troi", "INPUT.SUPPORT.NUM_TEST", 3).predict_video(frames)]
    half = [
        x["instances"].scores
        for x in predictor("troi", "INPUT.SUPPORT.NUM_TEST", 3, "VIDEO.CACHE_DTYPE", "bfloat16").predict_video(frames)
    ]
    for a, b in zip(full, half):
        assert a.shape == b.shape or abs(len(a) - len(b)) <= 2
        k = min(len(a), len(b), 5)
        torch.testing.assert_close(a[:k], b[:k], atol=0.05, rtol=0.05)


def test_offline_prediction_applies_seq_nms_to_the_whole_video():
    _, frames = clip_frames(count=5)
    plain = [x["instances"] for x in predictor("troi", "INPUT.SUPPORT.NUM_TEST", 2).predict_video(frames)]
    p = predictor("troi", "INPUT.SUPPORT.NUM_TEST", 2, "VIDEO.POSTPROCESS", "seq_nms", "VIDEO.SEQ_NMS.RESCORE", "max")
    processed = [x["instances"] for x in p.predict_video(frames)]
    for a, b in zip(processed, seq_nms(plain, rescore="max")):
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert sum(map(len, processed)) < sum(map(len, plain))
    with pytest.raises(ValueError, match="needs the whole video; online prediction"):
        next(p.predict_stream(iter(frames)))
