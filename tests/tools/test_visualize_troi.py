"""tools/visualize_troi.py draws what TRoI chose (the paper's Fig. 6) from a real clip."""

import os

import pytest
from PIL import Image

from helpers import REPO, load_tool
from helpers.clips import CLIP

tool = load_tool("visualize_troi")
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
