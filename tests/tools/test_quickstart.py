"""The README's main job, on a 2-iteration schedule: both halves train, evaluate with bootstrap
intervals, tabulate and write a video; quickstart_seeds re-scores the detectors on other toy sets."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


def run(*args, env):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
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
    vis_keys = {"AP", "AP-ci95", "AP50", "frame_AP-degraded", "frame_AP-clean-ci95", "minus_masktrack"}
    assert set(summary["vis"]["models"]["masktrack_troi"]) >= vis_keys
    assert "| MaskTrack R-CNN + TRoI - MaskTrack R-CNN" in stdout and "per-frame mask AP degraded frames" in stdout
    for heading in ("vid: training Temporal RoI Align, 3 of 3", "vis: training the base model, 1 of 3"):
        assert f"===== {heading}" in stdout
    assert "vis: the base starts from" in stdout  # the detection half's base model
    # Detectron2 dumps each model it builds; once per architecture here (4, not 6).
    assert stdout.count("Model:\n") == 4
    assert os.path.isfile(tmp_path / "datasets" / "toy_vid" / "toy_vid.json")

    seeds_args = ["--seeds", "5", "--output", str(out), "--bootstrap", "20", "--vis-bootstrap", "3"]
    stdout = run("tools/quickstart_seeds.py", *seeds_args, env=env)
    assert "toy dataset seed 5, vid: 16 held-out videos" in stdout and "| Temporal RoI Align - single-frame" in stdout
    assert "toy dataset seed 5, vis: 16 held-out videos" in stdout and "| MaskTrack R-CNN + TRoI - " in stdout
    seeds = json.loads((out / "seeds" / "results.json").read_text())
    assert set(seeds["5"]["vid"]["models"]) == {"single_frame", "troi"}
    assert set(seeds["5"]["vis"]["models"]) == {"masktrack", "masktrack_troi"}
    assert "frame_AP-degraded" in seeds["5"]["vis"]["models"]["masktrack_troi"]["minus_masktrack"]


def test_vis_base_starts_from_the_detection_base(tmp_path, monkeypatch):
    """--task vis without a detection half first trains the detection base the VIS base starts
    from, then reuses it."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import quickstart

    trained = []
    monkeypatch.setattr(quickstart, "ensure_toy_vid", lambda **kwargs: None)
    monkeypatch.setattr(quickstart, "config", lambda name, out, opts, iters=1, weights="": (name, out, iters))
    monkeypatch.setattr(quickstart, "train", lambda cfg: trained.append(cfg))
    args = quickstart.parse_args(["--task", "vis", "--output", str(tmp_path), "--base-iters", "7"])
    weights = quickstart.base_weights("vis", args)
    assert weights == os.path.join(str(tmp_path), "vid", "base", "model_final.pth")
    assert trained == [("single_frame", os.path.join(str(tmp_path), "vid", "base"), 7)]
    os.makedirs(os.path.dirname(weights))
    open(weights, "w").close()
    assert quickstart.base_weights("vis", args) == weights and len(trained) == 1
    assert quickstart.base_weights("vid", args) == ""


def test_vis_models_fine_tune_with_the_base_backbone_frozen(tmp_path, monkeypatch):
    """The VIS models train from the base with its whole backbone frozen; the bases and the
    detection models train everything; the command line's overrides come last."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import quickstart

    trained = {}
    monkeypatch.setattr(quickstart, "base_weights", lambda task, args: "")
    monkeypatch.setattr(quickstart, "train", lambda cfg: trained.setdefault(cfg.OUTPUT_DIR, cfg) and (1.0, None))

    def frozen(task, *opts):
        trained.clear()
        args = quickstart.parse_args(["--output", str(tmp_path), *opts])
        models = list(quickstart.VIS_MODELS if task == "vis" else ["single_frame", "troi"])
        quickstart.train_task(task, models, args)
        return {
            os.path.basename(out): (cfg.MODEL.BACKBONE.FREEZE_AT, cfg.MODEL.CHANNEL_REDUCTION.FREEZE)
            for out, cfg in trained.items()
        }

    assert frozen("vis") == {"base": (0, False), "masktrack": (5, True), "masktrack_troi": (5, True)}
    assert frozen("vid") == {"base": (0, False), "single_frame": (0, False), "troi": (0, False)}
    assert frozen("vis", "MODEL.BACKBONE.FREEZE_AT", "0")["masktrack_troi"] == (0, True)
