import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from temporal_roi_align.engine import setup_cfg
from temporal_roi_align.model_zoo import get_config_file


def test_dc5_backbone_has_stride_16_conv5_reduced_to_512_channels():
    cfg = setup_cfg(get_config_file("Base-VID-DC5.yaml"), ["MODEL.RESNETS.DEPTH", 50])
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    shapes = backbone.output_shape()
    assert shapes["res4"].stride == 16 and shapes["res5"].stride == 16
    assert shapes["res5_reduced"].channels == 512 and shapes["res4"].channels == 1024
    # conv5's 3x3 convs are dilated by 2 instead of striding.
    assert backbone.bottom_up.res5[0].conv2.dilation == (2, 2)
    assert backbone.bottom_up.res5[0].conv2.stride == (1, 1)
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 65, 97))
    assert out["res5_reduced"].shape == (1, 512, 5, 7)
    assert (out["res5_reduced"] >= 0).all()


def test_freezing_the_channel_reduction_and_the_whole_backbone():
    def trainable(*opts):
        backbone = build_backbone(setup_cfg(get_config_file("toy/masktrack.yaml"), list(opts)), ShapeSpec(channels=3))
        return {
            n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("bottom_up") else "")
            for n, p in backbone.named_parameters()
            if p.requires_grad
        }

    everything = {"bottom_up.stem", "bottom_up.res2", "bottom_up.res3", "bottom_up.res4", "reduce"}
    assert trainable() == everything
    assert trainable("MODEL.CHANNEL_REDUCTION.FREEZE", True) == everything - {"reduce"}
    assert trainable("MODEL.BACKBONE.FREEZE_AT", 5) == {"reduce"}
    assert trainable("MODEL.BACKBONE.FREEZE_AT", 5, "MODEL.CHANNEL_REDUCTION.FREEZE", True) == set()
