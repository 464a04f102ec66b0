"""Config files shipped with the project (``configs/`` of the repository)."""

import os

__all__ = ["get_config_file"]

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def get_config_file(config_path: str) -> str:
    """Path of a shipped config, e.g. ``get_config_file("ImageNetVID/troi_R_101_DC5.yaml")``."""
    path = os.path.join(CONFIGS_DIR, config_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config shipped with temporal_roi_align")
    return path
