"""The lazy FGFA and DFF models (configs/common/models/{fgfa,dff}_dc5.py) are the yaml ones."""

import os

import pytest
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from test_lazy_configs import ROOT, assert_same_model

from temporal_roi_align.engine import setup_cfg


@pytest.mark.parametrize(
    "lazy, yaml_file",
    [
        ("common/models/fgfa_dc5.py", "ImageNetVID/fgfa_R_50_DC5.yaml"),
        ("common/models/dff_dc5.py", "ImageNetVID/dff_R_50_DC5.yaml"),
    ],
)
def test_lazy_model_is_the_yaml_model(lazy, yaml_file):
    lazy_model = instantiate(LazyConfig.load(os.path.join(ROOT, "configs", lazy)).model)
    yaml_model = build_model(setup_cfg(os.path.join(ROOT, "configs", yaml_file), ["MODEL.DEVICE", "cpu"]))
    assert type(lazy_model) is type(yaml_model)
    assert_same_model(lazy_model, yaml_model)
