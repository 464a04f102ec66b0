"""What the tests share: helper modules by subject (toy configs, frame groups, dataset files on
disk, evaluation cases, the toolbox's reference computations, ...) and, here, the repository's
root and its tools. Fixtures are in the conftest.py files."""

import importlib.util
import os
from types import ModuleType
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script(path: str, name: Optional[str] = None) -> ModuleType:
    """The Python script at ``path`` as a module ``name`` (by default, its file's name)."""
    spec = importlib.util.spec_from_file_location(name or os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name: str) -> ModuleType:
    """The script tools/<name>.py as a module (the tools are scripts, not a package)."""
    return load_script(os.path.join(REPO, "tools", f"{name}.py"))
