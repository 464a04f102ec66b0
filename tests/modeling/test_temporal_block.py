"""MODEL.TAM: the TAM block on a frame group's maps, in the detector."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file
from temporal_roi_align.modeling import SupportFrames
from temporal_roi_align.modeling.temporal_block import TemporalAdaptiveBlock

from helpers.frame_groups import group

TAM = [
    "MODEL.TAM.ENABLED",
    True,
    "INPUT.SUPPORT.TRAIN_MODE",
    "stride",
    "INPUT.SUPPORT.TEST_MODE",
    "stride",
    "INPUT.SUPPORT.NUM_TRAIN",
    2,
    "INPUT.SUPPORT.NUM_TEST",
    2,
    "MODEL.ROI_HEADS.NUM_CLASSES",
    3,
]


def test_block_is_the_residual_tam_of_each_time_ordered_group():
    torch.manual_seed(0)
    block = TemporalAdaptiveBlock(["f"], channels=8, num_supports=4, kernel_size=3).eval()
    target = torch.randn(2, 8, 5, 6)
    supports = SupportFrames([{"f": torch.randn(4, 8, 5, 6)} for _ in range(2)])
    out_features, out_supports = block({"f": target}, supports)
    for i in range(2):
        before, after = supports.features[i]["f"][:2], supports.features[i]["f"][2:]
        ordered = torch.cat([before, target[i : i + 1], after])  # frames t-2, t-1, t, t+1, t+2
        expected = ordered + block.tams["f"](ordered)
        torch.testing.assert_close(out_features["f"][i], expected[2])
        torch.testing.assert_close(out_supports.features[i]["f"], torch.cat([expected[:2], expected[3:]]))
    with pytest.raises(ValueError, match="groups have 4 supports per target"):
        block({"f": target}, SupportFrames([{"f": torch.randn(3, 8, 5, 6)} for _ in range(2)]))


@pytest.mark.parametrize("variant", ["single_frame", "troi"])
def test_detector_with_tam_trains_and_infers(variant):
    torch.manual_seed(0)
    model = build_model(setup_cfg(get_config_file(f"toy/{variant}.yaml"), ["MODEL.DEVICE", "cpu", *TAM]))
    assert model.needs_supports and model.temporal_block is not None
    model.train()
    with EventStorage():
        losses = model([group("a", 3, [2, 4], True), group("b", 3, [2, 4], True)])
    sum(losses.values()).backward()
    assert model.temporal_block.tams["res4_reduced"].global_branch[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        instances = model([group("a", 3, [2, 4])])[0]["instances"]
    assert torch.isfinite(instances.scores).all()


def test_tam_needs_a_fixed_group():
    with pytest.raises(ValueError, match="MODEL.TAM needs the same fixed group of frames"):
        build_model(setup_cfg(get_config_file("toy/troi.yaml"), ["MODEL.TAM.ENABLED", True]))
    with pytest.raises(ValueError, match="MODEL.TAM is implemented for VideoRCNN"):
        build_model(setup_cfg(get_config_file("toy/fgfa.yaml"), TAM))
