"""Export (temporal_roi_align.export, tools/export_model.py): the exported single-frame and TRoI
detectors give the eager model's detections, on the frame group they were traced on and on
another one of another size with more proposals; models whose trace would not hold are refused."""

import os
import re

import cv2
import pytest
import torch
from detectron2.structures import Boxes

from temporal_roi_align.export import (
    FORMATS,
    ExportedModel,
    ExportError,
    check_exportable,
    eager_outputs,
    export_model,
    frame_group_inputs,
)
from temporal_roi_align.modeling import TemporalROIPooler
from temporal_roi_align.predictor import VideoPredictor

from helpers import REPO, load_tool
from helpers.clips import clip_frames, write_clip
from helpers.configs import predictor_cfg

tool = load_tool("export_model")

# Where a trace keeps a Python value (Detectron2's code has many): the tests compare the results.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

# All RPN proposals that survive NMS (not a fixed top 64): their number changes with the frames.
TINY = {"MODEL.DEVICE": "cpu", "MODEL.RPN.POST_NMS_TOPK_TEST": 1000}


@pytest.fixture(scope="module", params=["single_frame", "troi"])
def toy_model(request):
    """A randomly initialised toy model, the frame group it is exported on (64x85 after
    resizing) and another one (frames of another aspect ratio: 64x114, more proposals)."""
    torch.manual_seed(0)
    predictor = VideoPredictor(predictor_cfg(request.param, **TINY), check_weights=False)
    model = predictor.model
    frames = clip_frames(count=8)[1]
    traced_on = frame_group_inputs(model, *predictor.frame_group(frames, 3))
    wider = [cv2.resize(f, (128, 72)) for f in frames]
    other = frame_group_inputs(model, *predictor.frame_group(wider, 6))
    return request.param, model, traced_on, other


def num_proposals(model, inputs):
    with torch.no_grad():
        return len(model.frame_outputs(inputs)[0].proposals)


def assert_same_detections(exported, eager):
    assert exported.image_size == eager.image_size
    assert len(exported) == len(eager) > 0
    torch.testing.assert_close(exported.pred_boxes.tensor, eager.pred_boxes.tensor, rtol=0, atol=1e-4)
    torch.testing.assert_close(exported.scores, eager.scores, rtol=0, atol=1e-4)
    assert torch.equal(exported.pred_classes, eager.pred_classes)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_exported_model_gives_the_eager_models_detections(toy_model, fmt, tmp_path):
    name, model, traced_on, other = toy_model
    assert len(traced_on[0].get("supports", [])) == (2 if name == "troi" else 0)
    # The other group has more proposals: a trace that kept their number would fail or be wrong.
    assert num_proposals(model, other) > num_proposals(model, traced_on)
    assert other[0]["image"].shape[-1] > traced_on[0]["image"].shape[-1]
    path = str(tmp_path / FORMATS[fmt])
    export_model(model, traced_on, fmt, path)
    assert not model.training
    exported = ExportedModel(path)
    for inputs in (traced_on, other):
        assert_same_detections(exported(inputs), eager_outputs(model, inputs))
    if name == "troi":
        with pytest.raises(ValueError, match="takes a target frame and 2 supports, got 1 supports"):
            exported([{**other[0], "supports": other[0]["supports"][:1]}])


class PoolTwoLevels(torch.nn.Module):
    def __init__(self, pooler):
        super().__init__()
        self.pooler = pooler

    def forward(self, boxes, map2, map3, supports2, supports3):
        return self.pooler([map2, map3], [Boxes(boxes)], [[supports2], [supports3]])


def test_traced_temporal_roi_pooler_holds_for_other_boxes_and_maps():
    """Traced with a few small boxes (all on the finer level), run with more boxes on both levels
    and maps of another size: the eager pooler's numbers."""
    torch.manual_seed(0)
    pooler = TemporalROIPooler((7, 7), (1 / 4, 1 / 8), 0, "ROIAlignV2", channels=8, topk=2, num_attention_blocks=2)
    pool = PoolTwoLevels(pooler.eval())

    def inputs(boxes, height, width):
        maps = [torch.randn(1, 8, height // s, width // s) for s in (4, 8)]
        supports = [torch.randn(3, 8, height // s, width // s) for s in (4, 8)]
        return (torch.tensor(boxes, dtype=torch.float32), *maps, *supports)

    small = inputs([[4, 4, 40, 30], [10, 20, 50, 70]], 96, 128)
    both = inputs([[4, 4, 40, 30], [0, 0, 180, 150], [30, 10, 90, 60], [5, 40, 200, 160]], 160, 224)
    with torch.no_grad():
        traced = torch.jit.trace(pool, small, check_trace=False)
        for x in (small, both):
            torch.testing.assert_close(traced(*x), pool(*x), rtol=1e-5, atol=1e-5)


def test_models_whose_trace_would_not_hold_are_refused():
    with pytest.raises(ExportError, match="Linear cannot be exported: only VideoRCNN models are supported"):
        check_exportable(torch.nn.Linear(1, 1))


def tool_args(tmp_path, config="single_frame", *extra):
    return [
        "--config-file",
        os.path.join(REPO, "configs", "toy", f"{config}.yaml"),
        "--output",
        str(tmp_path / "out"),
        "--allow-partial-weights",
        *extra,
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.SUPPORT.NUM_TEST",
        "2",
    ]


def test_tool_exports_and_compares_with_the_eager_model(tmp_path, capsys):
    write_clip(tmp_path / "in.mp4", 4)
    tool.main(tool_args(tmp_path, "troi", "--sample-video", str(tmp_path / "in.mp4"), "--format", "torchscript"))
    printed = capsys.readouterr().out
    assert "model.ts: inputs image, support_0, support_1 (float32 [3, H, W], BGR" in printed
    assert "outputs boxes, scores, classes at the input's resolution" in printed
    for frame in (2, 0):  # traced on the middle frame, checked on the first too
        assert f"\nframe {frame}: 20 detections, as the eager model; largest difference of a box" in printed
    assert {"model.ts", "model_ts_code.txt", "model_ts_IR.txt"} <= set(os.listdir(tmp_path / "out"))


def test_tool_traces_on_generated_frames_without_a_sample_video(tmp_path, capsys):
    tool.main(tool_args(tmp_path, "single_frame", "--format", "onnx"))
    printed = capsys.readouterr().out
    assert "model.onnx: inputs image (float32 [3, H, W], BGR" in printed
    # Three frames of noise at 64x85: traced on the middle one, checked on the first too.
    assert re.search(r"\nframe 1: \d+ detections, as the eager model; .*\nframe 0: \d+ detections, as", printed)
    assert os.listdir(tmp_path / "out") == ["model.onnx"]


def test_tool_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match=r"selsa.yaml: SELSA \(ROI_BOX_HEAD.NAME SelsaBoxHead\) cannot be exported"):
        tool.main(tool_args(tmp_path, "selsa"))
    with pytest.raises(SystemExit, match=r"--sample-video .*nowhere.mp4: no such file or folder"):
        tool.main(tool_args(tmp_path, "single_frame", "--sample-video", str(tmp_path / "nowhere.mp4")))
    with pytest.raises(SystemExit, match=r"--import no_such_module_xyz: no module 'no_such_module_xyz' on PYTHONPATH"):
        tool.main(tool_args(tmp_path, "single_frame", "--import", "no_such_module_xyz"))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match=r"--output .*a_file/out: cannot create the folder \(Not a directory\)"):
        tool.main(["--config-file", "any.yaml", "--output", str(tmp_path / "a_file" / "out")])
    with pytest.raises(SystemExit, match="nowhere.yaml: config file not found"):
        tool.main(["--config-file", str(tmp_path / "nowhere.yaml"), "--output", str(tmp_path)])
