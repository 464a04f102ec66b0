"""The README's main job, on a 2-iteration schedule: it trains, evaluates, tabulates and writes a video."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_runs_end_to_end(tmp_path):
    out = tmp_path / "quickstart"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "tools/quickstart.py", "--base-iters", "2", "--finetune-iters", "2", "--bootstrap", "20",
         "--seq-nms", "--output", str(out),
         "INPUT.MIN_SIZE_TEST", "64", "INPUT.SUPPORT.NUM_TEST", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in ("| Single-frame (ROIAlign)", "| Temporal RoI Align ", "| Temporal RoI Align + Seq-NMS",
                "| Temporal RoI Align - single-frame"):
        assert row in proc.stdout, proc.stdout[-3000:]
    assert f"annotated video: {out / 'troi_val_video.mp4'}" in proc.stdout
    summary = json.loads((out / "results.json").read_text())
    assert summary["bootstrap_samples"] == 20 and set(summary["models"]) == {"single_frame", "troi", "troi_seq_nms"}
    troi = summary["models"]["troi"]
    assert {"AP50", "AP50-ci95", "AP50-degraded", "AP50-degraded-ci95", "train_seconds", "minus_single_frame"} <= set(troi)
    low, high = troi["AP50-ci95"]
    assert low <= troi["AP50"] <= high
    assert os.path.getsize(out / "troi_val_video.mp4") > 1000
    assert os.path.isfile(tmp_path / "datasets" / "toy_vid" / "toy_vid.json")
