"""The package's layering: data/ knows nothing of models or checkpoints."""

import ast
import os

PACKAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "projects", "TemporalRoIAlign", "temporal_roi_align"
)


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
