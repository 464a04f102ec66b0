import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.join("projects", "TemporalRoIAlign")
CONFIGS_LINK = os.path.join(ROOT, PACKAGE_ROOT, "temporal_roi_align", "model_zoo", "configs")


def link_configs():
    """Ship configs/ inside the package as temporal_roi_align/model_zoo/configs (as detectron2 does)."""
    if not os.path.lexists(CONFIGS_LINK):
        os.symlink(os.path.relpath(os.path.join(ROOT, "configs"), os.path.dirname(CONFIGS_LINK)), CONFIGS_LINK)


def config_files():
    configs = os.path.join(ROOT, "configs")
    return [
        os.path.relpath(os.path.join(d, f), os.path.join(ROOT, PACKAGE_ROOT, "temporal_roi_align", "model_zoo"))
        for d, _, files in os.walk(configs)
        for f in files
        if f.endswith((".yaml", ".py"))
    ]


link_configs()
setup(
    name="temporal_roi_align",
    version="0.1.0",
    description="Temporal RoI Align, SELSA, FGFA/DFF and MaskTrack R-CNN video models on Detectron2",
    package_dir={"": PACKAGE_ROOT},
    packages=find_packages(PACKAGE_ROOT),
    package_data={
        "temporal_roi_align.model_zoo": config_files(),
        # The compiled operator's sources, built at run time's first set-up (tools/build_ops.py).
        "temporal_roi_align.layers": ["csrc/*.cpp", "csrc/*.cu"],
    },
    python_requires=">=3.9",
    install_requires=["torch", "torchvision", "pycocotools", "opencv-python-headless", "tqdm"],
)
