"""The README's main job, on a 2-iteration schedule: both halves train, evaluate with bootstrap
intervals, tabulate and write a video; quickstart_seeds re-scores the detectors on other toy sets."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, env):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_quickstart_runs_end_to_end(tmp_path):
    out = tmp_path / "quickstart"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    stdout = run(
        "tools/quickstart.py",
        "--base-iters",
        "2",
        "--finetune-iters",
        "2",
        "--bootstrap",
        "20",
        "--vis-bootstrap",
        "3",
        "--seq-nms",
        "--output",
        str(out),
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.SUPPORT.NUM_TEST",
        "2",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "8",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
        env=env,
    )
    for row in (
        "| Single-frame (ROIAlign)",
        "| Temporal RoI Align ",
        "| Temporal RoI Align + Seq-NMS",
        "| Temporal RoI Align - single-frame",
        "| MaskTrack R-CNN ",
        "| MaskTrack R-CNN + TRoI - MaskTrack R-CNN",
    ):
        assert row in stdout, stdout[-3000:]
    for video in (out / "vid" / "troi_val_video.mp4", out / "vis" / "masktrack_troi_val_video.mp4"):
        assert f"annotated video: {video}" in stdout and os.path.getsize(video) > 1000
    summary = json.loads((out / "results.json").read_text())
    assert summary["vid"]["bootstrap_samples"] == 20
    assert set(summary["vid"]["models"]) == {"single_frame", "troi", "troi_seq_nms"}
    troi = summary["vid"]["models"]["troi"]
    assert {"AP50", "AP50-ci95", "AP50-degraded", "AP50-degraded-ci95", "train_seconds", "minus_single_frame"} <= set(
        troi
    )
    low, high = troi["AP50-ci95"]
    assert low <= troi["AP50"] <= high
    assert set(summary["vis"]["models"]["masktrack_troi"]) >= {"AP", "AP-ci95", "AP50", "minus_masktrack"}
    assert os.path.isfile(tmp_path / "datasets" / "toy_vid" / "toy_vid.json")

    stdout = run("tools/quickstart_seeds.py", "--seeds", "5", "--output", str(out), "--bootstrap", "20", env=env)
    assert "toy dataset seed 5: 16 held-out videos" in stdout and "| Temporal RoI Align - single-frame" in stdout
    seeds = json.loads((out / "seeds" / "results.json").read_text())
    assert set(seeds["5"]["models"]) == {"single_frame", "troi"}
