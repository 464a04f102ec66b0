"""MaskTrack R-CNN (+ TRoI) end to end on the toy VIS dataset: VideoTrainer training with the
YouTube-VIS evaluation, 2-process CPU training, --eval-only on a split without annotations,
and VideoPredictor."""

import json
import os
import subprocess
import sys
import zipfile

import cv2
import pytest
import torch

from temporal_roi_align.data.datasets import YTVIS_2019_CATEGORIES
from temporal_roi_align.engine import VideoTrainer, launch, setup_cfg
from temporal_roi_align.evaluation import YTVIS_METRICS, YTVISEvaluator
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.predictor import VideoPredictor

from helpers import REPO
from helpers.configs import TINY_TRAINING
from helpers.training import train_two_ranks

pytestmark = pytest.mark.slow

TINY = [*TINY_TRAINING, "INPUT.SUPPORT.NUM_TEST", 2, "SOLVER.BASE_LR", 0.005, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]


@pytest.mark.parametrize("variant", ["masktrack", "masktrack_troi"])
def test_two_iterations_then_the_youtube_vis_evaluation(variant, vis_toy_datasets_env, tmp_path):
    cfg = setup_cfg(get_config_file(f"toy/{variant}.yaml"), ["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", 2, *TINY])
    assert isinstance(VideoTrainer.build_evaluator(cfg, "toy_vis_val"), YTVISEvaluator)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    # EvalHook's scores of the evaluation after the last iteration.
    scores = {k for k in trainer.storage.latest() if k.startswith("segm/")}
    assert scores == {f"segm/{k}" for k in (*YTVIS_METRICS, "AP-domestic_cat", "AP-horse", "AP-motorcycle")}
    with open(tmp_path / "inference" / "toy_vis_val" / "results.json") as f:
        predictions = json.load(f)
    assert predictions and {p["video_id"] for p in predictions} == {1, 2}
    assert all(len(p["segmentations"]) == 5 and 1 <= p["category_id"] <= 3 for p in predictions)
    assert os.path.isfile(tmp_path / "model_final.pth")


def test_two_cpu_processes_train_masktrack_troi_in_sync(vis_toy_datasets_env, tmp_path):
    result = str(tmp_path / "ranks.pth")
    opts = ["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", 2, "DATASETS.TEST", (), *TINY]
    launch(train_two_ranks, 2, dist_url="auto", args=(get_config_file("toy/masktrack_troi.yaml"), opts, result))
    out = torch.load(result)
    assert out["world_size"] == 2
    rank0, rank1 = out["params"]
    torch.testing.assert_close(rank0, rank1, rtol=0, atol=0)
    torch.manual_seed(0)
    initial = VideoTrainer.build_model(setup_cfg(get_config_file("toy/masktrack_troi.yaml"), opts))
    assert rank0.numel() == sum(p.numel() for p in initial.parameters())


def unlabeled_ytvis_2019_val(vis_toy_root, datasets):
    """ytvis_2019/valid.json without annotations (as the real one), on the toy val frames."""
    with open(os.path.join(vis_toy_root, "valid.json")) as f:
        data = json.load(f)
    data["categories"] = [{"id": i, "name": n} for i, n in YTVIS_2019_CATEGORIES]
    del data["annotations"]
    os.makedirs(datasets / "ytvis_2019" / "valid")
    (datasets / "ytvis_2019" / "valid.json").write_text(json.dumps(data))
    os.symlink(os.path.join(vis_toy_root, "valid", "JPEGImages"), datasets / "ytvis_2019" / "valid" / "JPEGImages")


def test_eval_only_on_a_split_without_annotations_points_to_the_submission(vis_toy_root, tmp_path):
    datasets, output = tmp_path / "datasets", tmp_path / "output"
    unlabeled_ytvis_2019_val(vis_toy_root, datasets)
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets), OMP_NUM_THREADS="1")
    opts = [
        "OUTPUT_DIR",
        str(output),
        "DATASETS.TRAIN",
        "()",
        "DATASETS.TEST",
        '("ytvis_2019_val",)',
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "40",
        *[str(v) for v in TINY],
    ]
    # A model as initialised (no weights to download here): --allow-partial-weights.
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            "configs/toy/masktrack.yaml",
            "--eval-only",
            "--allow-partial-weights",
            *opts,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    folder = output / "inference" / "ytvis_2019_val"
    assert f"'ytvis_2019_val': no scores computed here (no annotations); the predictions are in {folder}" in log
    assert "copypaste: 0.0" not in log
    with zipfile.ZipFile(folder / "submission.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == json.loads((folder / "results.json").read_text())


def test_video_predictor_gives_tracked_masks(vis_toy_root):
    videos = [
        [
            cv2.imread(os.path.join(vis_toy_root, "valid", "JPEGImages", f"toy_val_{v:04d}", f"{t:05d}.jpg"))
            for t in range(4)
        ]
        for v in (0, 1)
    ]
    torch.manual_seed(0)
    cfg = setup_cfg(get_config_file("toy/masktrack_troi.yaml"), [*TINY])
    predictor = VideoPredictor(cfg, check_weights=False)
    for frames in videos:
        outputs = [x["instances"] for x in predictor.predict_video(frames)]
        assert len(outputs) == 4
        for frame, instances in zip(frames, outputs):
            assert instances.pred_masks.shape == (len(instances), *frame.shape[:2]) and len(instances) > 0
            assert instances.pred_track_ids.tolist() and len(set(instances.pred_track_ids.tolist())) == len(instances)
        # Each video starts its own tracks (VideoPredictor gives every video its own video_id).
        assert outputs[0].pred_track_ids.tolist() == list(range(len(outputs[0])))
