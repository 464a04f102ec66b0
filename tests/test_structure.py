"""The package's layering (data/ knows nothing of models or checkpoints) and the test suite's:
folders that mirror the package, tests that share code only through tests/helpers and fixtures."""

import ast
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "projects", "TemporalRoIAlign", "temporal_roi_align")
TESTS = os.path.join(REPO, "tests")
# Test folders that are not package folders: the repository's configs/ and tools/.
TEST_FOLDERS_OUTSIDE_THE_PACKAGE = {"configs", "tools"}


def imported_modules(path):
    """Absolute names of the package modules a file imports (relative imports resolved)."""
    module = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].replace(os.sep, ".")
    package = module.rsplit(".", 1)[0]  # the folder's package, also for __init__.py
    names = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_data_imports_nothing_from_modeling_or_checkpoint():
    offenders = []
    for folder, _, files in os.walk(os.path.join(PACKAGE, "data")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                for module in imported_modules(path):
                    if module.startswith(("temporal_roi_align.modeling", "temporal_roi_align.checkpoint")):
                        offenders.append(f"{os.path.relpath(path, PACKAGE)} imports {module}")
    assert not offenders, offenders


def test_the_import_scanner_sees_relative_imports():
    modules = imported_modules(os.path.join(PACKAGE, "checkpoint", "mmtrack.py"))
    assert "temporal_roi_align.data.datasets" in modules and "temporal_roi_align.checkpoint.common" in modules


def python_files(folder=TESTS):
    """Every .py file under ``folder``."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        yield from (os.path.join(root, name) for name in files if name.endswith(".py"))


def test_tests_import_no_other_test_module():
    """Shared code lives in tests/helpers and fixtures in conftest.py, not in a test module that
    others import (which ties them to its folder and its private names)."""
    offenders = [
        f"{os.path.relpath(path, TESTS)} imports {module}"
        for path in python_files()
        for module in imported_modules(path)
        if module.split(".")[0].startswith(("test_", "conftest"))
    ]
    assert not offenders, offenders


def test_test_folders_mirror_the_package():
    folders = {
        os.path.relpath(os.path.dirname(path), TESTS)
        for path in python_files()
        if os.path.basename(path).startswith("test_")
    }
    strays = [
        folder
        for folder in sorted(folders - {"."})
        if folder.split(os.sep)[0] not in TEST_FOLDERS_OUTSIDE_THE_PACKAGE
        and not os.path.isdir(os.path.join(PACKAGE, folder))
    ]
    assert not strays, f"test folders without a package folder of the same name: {strays}"
