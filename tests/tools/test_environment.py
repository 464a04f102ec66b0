"""The set-up: detectron2 imports fully, the fallback _C names missing ops, the installer's patch."""

import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO, load_script

INSTALL = os.path.join(REPO, "tools", "install")


def test_detectron2_and_the_package_import():
    code = (
        "import detectron2.layers, detectron2.evaluation, detectron2.engine, detectron2.model_zoo, temporal_roi_align"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_fallback_names_the_missing_op_and_the_remedy():
    fallback = load_script(os.path.join(INSTALL, "detectron2_C_fallback.py"), "fallback_C")
    with pytest.raises(fallback.MissingCompiledOpError, match=r"detectron2\._C\.box_iou_rotated .*compiled op") as e:
        fallback.box_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5))
    assert "INSTALL.md" in str(e.value) and "use_fast_impl=False" in str(e.value)
    assert fallback.has_cuda() is False
    assert not hasattr(fallback, "__wrapped__")


def test_fallback_registers_the_torch_ops_of_detectron2():
    # Detectron2 after 0.6 calls its rotated-box ops as torch.ops.detectron2.<name> (0.6: nms_rotated).
    import detectron2._C as C

    if not hasattr(C, "MissingCompiledOpError"):
        pytest.skip("a compiled detectron2 is installed: its ops are real")
    fallback = load_script(os.path.join(INSTALL, "detectron2_C_fallback.py"), "fallback_C")
    boxes = torch.zeros(1, 5)
    calls = {
        "nms_rotated": (boxes, torch.ones(1), 0.5),
        "box_iou_rotated": (boxes, boxes),
        "roi_align_rotated_forward": (torch.zeros(1, 1, 4, 4), torch.zeros(1, 6), 1.0, 2, 2, 0),
        "roi_align_rotated_backward": (torch.zeros(1, 1, 2, 2), torch.zeros(1, 6), 1.0, 2, 2, 1, 1, 4, 4, 0),
    }
    assert set(calls) == set(fallback._TORCH_OPS)
    for name, args in calls.items():
        with pytest.raises(
            NotImplementedError, match=rf"torch\.ops\.detectron2\.{name} is a compiled op .*INSTALL\.md"
        ):
            getattr(torch.ops.detectron2, name)(*args)
    load_script(os.path.join(INSTALL, "detectron2_C_fallback.py"), "fallback_C_again")  # imported twice: no error


def test_a_python_only_detectron2_raises_the_fallback_error_for_rotated_ops():
    import detectron2
    import detectron2._C as C

    if not hasattr(C, "MissingCompiledOpError"):
        pytest.skip("a compiled detectron2 is installed")
    from detectron2.layers import nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    # detectron2 0.6 calls detectron2._C.box_iou_rotated, later versions torch.ops.detectron2.
    with pytest.raises(NotImplementedError, match="box_iou_rotated"):
        pairwise_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5))
    if "_TORCH_OPS" not in vars(C):  # (its module __getattr__ answers any name)
        pytest.skip(f"detectron2 {detectron2.__version__} was installed with a fallback _C that predates torch.ops")
    with pytest.raises(NotImplementedError, match="nms_rotated"):
        nms_rotated(torch.zeros(1, 5), torch.ones(1), 0.5)


def test_installer_empties_the_extension_list_and_adds_the_fallback(tmp_path):
    installer = load_script(os.path.join(INSTALL, "install_detectron2.py"), "install_detectron2")
    (tmp_path / "detectron2").mkdir()
    (tmp_path / "setup.py").write_text(
        'setup(\n    install_requires=["black==21.4b2",],\n    ext_modules=get_extensions(),\n)\n'
    )
    installer.patch_sources(str(tmp_path))
    patched = (tmp_path / "setup.py").read_text()
    assert "ext_modules=[]," in patched and "get_extensions()" not in patched and '"black",' in patched
    assert (tmp_path / "detectron2" / "_C.py").read_text().startswith('"""Stand-in for ``detectron2._C``')


def test_installer_updates_an_older_fallback_only(tmp_path):
    installer = load_script(os.path.join(INSTALL, "install_detectron2.py"), "install_detectron2")
    current = open(os.path.join(INSTALL, "detectron2_C_fallback.py")).read()
    (tmp_path / "_C.py").write_text('"""Stand-in for ``detectron2._C`` in a Python-only detectron2 install."""\n')
    assert installer.refresh_fallback(str(tmp_path)) and (tmp_path / "_C.py").read_text() == current
    assert not installer.refresh_fallback(str(tmp_path))  # up to date
    (tmp_path / "_C.py").write_text("# someone else's module\n")
    assert (
        not installer.refresh_fallback(str(tmp_path))
        and (tmp_path / "_C.py").read_text() == "# someone else's module\n"
    )
    assert not installer.refresh_fallback(str(tmp_path / "compiled"))  # no _C.py: a compiled _C


def test_installer_refuses_an_unexpected_setup_py(tmp_path):
    installer = load_script(os.path.join(INSTALL, "install_detectron2.py"), "install_detectron2")
    (tmp_path / "detectron2").mkdir()
    (tmp_path / "setup.py").write_text("setup(ext_modules=build())\n")
    with pytest.raises(SystemExit, match="cannot empty its extension list"):
        installer.patch_sources(str(tmp_path))


def test_add_video_config_and_registries():
    from detectron2.config import get_cfg
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY

    from temporal_roi_align import add_video_config

    cfg = get_cfg()
    add_video_config(cfg)
    assert cfg.MODEL.TEMPORAL_ROI_ALIGN.TOPK == 4 and cfg.MODEL.TEMPORAL_ROI_ALIGN.NUM_ATTENTION_BLOCKS == 4
    assert cfg.INPUT.SUPPORT.NUM_TRAIN == 2 and cfg.INPUT.SUPPORT.NUM_TEST == 14
    assert "VideoRCNN" in META_ARCH_REGISTRY and "VideoROIHeads" in ROI_HEADS_REGISTRY
    assert "SelsaBoxHead" in ROI_BOX_HEAD_REGISTRY and "build_channel_reduced_resnet_backbone" in BACKBONE_REGISTRY


def fake_distribution(site, name, version, top_level, files):
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def test_two_installs_of_detectron2_are_named_with_the_one_that_imports(tmp_path):
    installer = load_script(os.path.join(INSTALL, "install_detectron2.py"), "install_detectron2")
    site = tmp_path / "site-packages"
    fake_distribution(site, "pb1-detectron2", "0.6", "detectron2\n", ["detectron2/__init__.py", "detectron2/_C.py"])
    fake_distribution(site, "fvcore", "0.1.5", "fvcore\n", ["fvcore/__init__.py"])
    found = installer.detectron2_distributions([str(site)])
    assert [(name, version) for name, version, _ in found] == [("pb1-detectron2", "0.6")]
    assert installer.duplicates_message(found, str(site / "detectron2" / "__init__.py")) is None
    # Detectron2 main installed in editable mode (no top_level.txt here: told by its name).
    fake_distribution(site, "detectron2", "0.6", None, ["__editable__.detectron2-0.6.pth"])
    found = installer.detectron2_distributions([str(site)])
    assert [name for name, _, _ in found] == ["detectron2", "pb1-detectron2"]
    message = installer.duplicates_message(found, str(site / "detectron2" / "__init__.py"))
    assert message.startswith("2 installed distributions provide detectron2 (detectron2 0.6 and pb1-detectron2 0.6)")
    assert f"`import detectron2` finds pb1-detectron2's, {site / 'detectron2'}" in message
    assert "`pip uninstall -y pb1-detectron2`" in message
    message = installer.duplicates_message(found, str(tmp_path / "src" / "detectron2" / "__init__.py"))
    assert "finds an editable or unlisted install's" in message


def test_env_sh_checks_for_two_installs_every_time():
    with open(os.path.join(REPO, "tools", "env.sh")) as f:
        lines = f.read().splitlines()
    setup_ends = lines.index(next(line for line in lines if line.startswith("( _tra_setup )")))
    assert any('install_detectron2.py" --check-duplicates' in line for line in lines[setup_ends:])
    proc = subprocess.run([sys.executable, os.path.join(INSTALL, "install_detectron2.py"), "--check-duplicates"])
    assert proc.returncode == 0
