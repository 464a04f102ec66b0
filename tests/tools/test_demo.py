"""tools/demo_video.py: inputs (file, folder, camera), outputs (video, folder, JSON lines), checks
made before any work, frames streamed rather than held, faults counted or named, never silent."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from temporal_roi_align.data import TOY_VIS_CATEGORIES
from temporal_roi_align.data.datasets import register_ytvis_instances
from temporal_roi_align.evaluation import evaluate_ytvis, video_predictions
from temporal_roi_align.utils.video_io import FolderFrames, VideoFileFrames, natural_sort_key

from helpers import REPO, load_tool
from helpers.clips import CLIP, clip_frames, write_clip

TINY = ["--allow-partial-weights", "--opts", "INPUT.MIN_SIZE_TEST", "64", "INPUT.SUPPORT.NUM_TEST", "2"]
demo = load_tool("demo_video")


def run(*args):
    return demo.main(["--config-file", os.path.join(REPO, "configs", "toy", "troi.yaml"), *args])


def frame_count(video):
    capture, count = cv2.VideoCapture(str(video)), 0
    while capture.grab():
        count += 1
    return count


def test_video_in_video_and_json_lines_out(tmp_path, capsys):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    run("--input", CLIP, "--output", str(out), "--json", str(js), "--max-frames", "4", *TINY)
    printed = capsys.readouterr().out
    assert "Wrote 4 annotated frames to" in printed
    assert re.search(r"\n\d of 4 frames had a detection above --confidence 0.5 \(highest score 0\.\d\d\)\n", printed)
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert set(records[0]) == {"frame", "boxes", "scores", "classes", "class_names"}
    names = ["domestic_cat", "horse", "motorcycle"]  # the toy_vid_val classes of configs/toy/troi.yaml
    assert all(n == names[c] for r in records for c, n in zip(r["classes"], r["class_names"]))
    assert not os.path.exists(tmp_path / "out.partial.mp4") and not os.path.exists(tmp_path / "out.partial.jsonl")


def test_says_when_no_detection_is_drawn(tmp_path, capsys):
    run("--input", CLIP, "--output", str(tmp_path / "o.mp4"), "--max-frames", "2", "--confidence", "0.9999", *TINY)
    assert re.search(
        r"\n0 of 2 frames had a detection above --confidence 0.9999 \(highest score 0\.\d\d\)\n",
        capsys.readouterr().out,
    )
    run(
        "--input",
        CLIP,
        "--output",
        str(tmp_path / "o.mp4"),
        "--max-frames",
        "2",
        *TINY,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "1.0",
    )
    assert (
        "0 of 2 frames had a detection above --confidence 0.5 (no detection at all above "
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST 1.0)" in capsys.readouterr().out
    )


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


def test_interrupted_run_leaves_earlier_outputs_and_keeps_its_work(tmp_path, monkeypatch, capsys):
    out, js = tmp_path / "o.mp4", tmp_path / "d.jsonl"
    run("--input", CLIP, "--output", str(out), "--json", str(js), "--max-frames", "3", *TINY)
    earlier = out.read_bytes(), js.read_text()
    real = demo.VideoPredictor

    class Interrupted(real):
        def iter_video(self, frames):
            results = super().iter_video(frames)
            yield next(results)
            yield next(results)
            raise KeyboardInterrupt

    monkeypatch.setattr(demo, "VideoPredictor", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("--input", CLIP, "--output", str(out), "--json", str(js), "--max-frames", "5", *TINY)
    assert (out.read_bytes(), js.read_text()) == earlier
    partial = tmp_path / "d.partial.jsonl"
    assert [json.loads(line)["frame"] for line in partial.read_text().splitlines()] == [0, 1]
    assert frame_count(tmp_path / "o.partial.mp4") == 2
    assert (
        f"Stopped after 2 frames; they are in {tmp_path / 'o.partial.mp4'} and {partial}, {out} and {js} left as "
        "they were" in capsys.readouterr().err
    )


def test_killed_run_leaves_earlier_outputs(tmp_path):
    """The process killed (SIGKILL) while it writes: the earlier outputs stay whole."""
    out, js = tmp_path / "o.mp4", tmp_path / "d.jsonl"
    out.write_bytes(b"an earlier video")
    js.write_text("an earlier run\n")
    command = [sys.executable, "tools/demo_video.py", "--config-file", "configs/toy/troi.yaml", "--input", CLIP]
    proc = subprocess.Popen(
        [*command, "--output", str(out), "--json", str(js), "--max-frames", "200", *TINY],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial, deadline = tmp_path / "d.partial.jsonl", time.monotonic() + 300
    try:
        while not (partial.exists() and partial.read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "the demo ended or wrote no frame in 300 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert out.read_bytes() == b"an earlier video" and js.read_text() == "an earlier run\n"


def test_unreadable_frame_stops_the_demo_with_its_name(tmp_path, capsys):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(clip_frames(count=3)[1]):
        cv2.imwrite(str(frames_dir / f"{i:06d}.jpg"), frame)
    (frames_dir / "000001.jpg").write_bytes(b"not an image")
    with pytest.raises(
        SystemExit, match=r"000001.jpg: cannot read image.*\nStopped after 1 frame; they are in .*o.partial.mp4"
    ):
        run("--input", str(frames_dir), "--output", str(tmp_path / "o.mp4"), "--online", *TINY)


def test_undecodable_frames_are_counted_and_left_out(tmp_path, capsys):
    """A video whose middle is damaged: the frames after it are still read, the lost ones said."""
    clip = tmp_path / "damaged.mp4"
    write_clip(clip, 12)
    data = bytearray(clip.read_bytes())
    data[len(data) // 3 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
    clip.write_bytes(bytes(data))
    frames = VideoFileFrames(str(clip))
    assert frames.undecodable and len(frames) + len(frames.undecodable) == frames.num_source_frames == 12
    assert frames.frame_ids[-1] == 11, "frames after the damage are read"
    sequential = [frames[i] for i in range(len(frames))]
    for index in (len(frames) - 1, 1, 4, 0):  # jumps back and forth find the same frames
        np.testing.assert_array_equal(VideoFileFrames(str(clip))[index], sequential[index])

    js = tmp_path / "d.jsonl"
    run("--input", str(clip), "--output", str(tmp_path / "o.mp4"), "--json", str(js), *TINY)
    printed = capsys.readouterr().out
    missing = len(frames.undecodable)
    assert f"Wrote {12 - missing} annotated frames" in printed
    assert re.search(rf"damaged.mp4: {missing} of 12 frames could not be decoded and are left out \(frames \d", printed)
    assert [json.loads(line)["frame"] for line in js.read_text().splitlines()] == list(frames.frame_ids)
    assert frame_count(tmp_path / "o.mp4") == 12 - missing


def test_folder_frames_in_natural_order_and_one_size(tmp_path, capsys):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i in range(1, 13):  # frame_1 .. frame_12, unpadded; frame_5 of another size
        size = (48, 40) if i == 5 else (96, 72)
        cv2.imwrite(str(frames_dir / f"frame_{i}.png"), np.full((size[1], size[0], 3), i * 10, np.uint8))
    frames = FolderFrames(str(frames_dir))
    assert [os.path.basename(f) for f in frames.files] == [f"frame_{i}.png" for i in range(1, 13)]
    assert [int(frames[i][0, 0, 0]) for i in range(12)] == [i * 10 for i in range(1, 13)]
    assert {frames[i].shape for i in range(12)} == {(72, 96, 3)}
    assert sorted(["a10", "a2", "a02", "b1"], key=natural_sort_key) == ["a02", "a2", "a10", "b1"]

    run("--input", str(frames_dir), "--output", str(tmp_path / "o.mp4"), *TINY)
    printed = capsys.readouterr().out
    assert frame_count(tmp_path / "o.mp4") == 12, "no frame dropped by the video writer"
    assert (
        f"1 of the 12 frames in {frames_dir} were resized to 96x72, the size of the first (e.g. frame_5.png)" in printed
    )


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


def test_instance_segmentation_model_writes_results_that_evaluate_ytvis_scores(
    vis_toy_root, tmp_path, capsys, monkeypatch, new_dataset_name
):
    """A custom dataset registered without its classes (they are in its JSON): the demo draws and
    writes their names, and its tracks carry the dataset's category ids (1-3, not 0-2)."""
    dataset = new_dataset_name("demo_custom_vis")
    gt_json = os.path.join(vis_toy_root, "valid.json")
    register_ytvis_instances(dataset, {}, gt_json, os.path.join(vis_toy_root, "valid", "JPEGImages"))
    drawn_with = []
    draw = demo.draw_instances
    monkeypatch.setattr(
        demo, "draw_instances", lambda f, i, m: drawn_with.append(m.get("thing_classes")) or draw(f, i, m)
    )
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
            "--video-id",
            "1",
            "--allow-partial-weights",
            "--opts",
            "INPUT.MIN_SIZE_TEST",
            "64",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "DATASETS.TEST",
            f"('{dataset}',)",
        ]
    )
    out = capsys.readouterr().out
    names = [n for _, n in TOY_VIS_CATEGORIES]
    assert drawn_with == [names] * 5
    records = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(records) == 5 and {"track_ids", "masks", "class_names"} <= set(records[0])
    assert all(n == names[c] for r in records for c, n in zip(r["classes"], r["class_names"]))
    path = tmp_path / "vis_videos.json"
    tracks = json.loads(path.read_text())
    assert f"Wrote {len(tracks)} tracks of video_id 1 in the YouTube-VIS results format to {path}" in out
    assert tracks and all(len(t["segmentations"]) == 5 and t["video_id"] == 1 for t in tracks)
    assert {t["category_id"] for t in tracks} <= {1, 2, 3}
    assert {t for r in records for t in r["track_ids"]} == set(range(len(tracks)))
    per_frame = [
        {
            "video_id": 1,
            "frame_id": r["frame"],
            "detections": list(zip(r["track_ids"], r["classes"], r["scores"], r["masks"])),
        }
        for r in records
    ]
    model_classes = [p["category_id"] for p in video_predictions(per_frame, {1: 5})[0]]
    assert [t["category_id"] for t in tracks] == [c + 1 for c in model_classes], "the dataset's ids: class + 1"
    metrics = evaluate_ytvis(gt_json, str(path))  # the other validation video counts as missed
    assert 0 <= metrics["AP"] <= 100
