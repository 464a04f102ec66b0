"""
The compiled operator of Most Similar RoI Align (``csrc/``: C++ with OpenMP, and CUDA where
``nvcc`` and a GPU exist): optional. ``tools/env.sh`` builds it once per change of its sources
(``python tools/build_ops.py``) into a folder of the virtual
environment; at run time it is loaded from there when it was built from the current sources
for the running torch, and otherwise the PyTorch path runs and one log line says why.
``TRA_NO_COMPILED_OPS=1`` hides a built library (the PyTorch path, as without a compiler).
``python tools/build_ops.py --status`` prints which path runs (:func:`status`).

The ops (``torch.ops.temporal_roi_align.*``, float32 and float64, no gradient):

- ``gram_top_k(gram, locations, weights, offsets, cell_norms, k)``: for each cell ``i`` the
  ``k`` largest dot products ``sum_j weights[j] * gram[locations[j], p]`` over its entries
  ``offsets[i] <= j < offsets[i + 1]`` (the Gram path's sparse product, ``P G``), computed a
  block of columns at a time with a running top-k (no ``[cells, P]`` rows are stored); returns
  ``(scores, indices)``, ``[cells, k]``, the scores divided by ``cell_norms``, largest first.
- ``rows_top_k(rows, k)``: ``rows.topk(k, dim=1)`` (largest first) by the same running top-k.

Eq. 3-4 (softmax and weighted sums) stay ``F.embedding_bag``, which does not materialise the
gathered vectors and was as fast as a compiled loop; with gradients, the chosen scores are
recomputed in PyTorch, so no op needs a backward.

Among equal values the lowest column wins, where ``torch.topk`` may choose any.
"""

import contextlib
import hashlib
import logging
import os
import sys
from typing import Optional, Tuple

import torch

__all__ = ["available", "build", "gram_top_k", "hidden", "rows_top_k", "status"]

logger = logging.getLogger(__name__)

NAME = "temporal_roi_align_ops"
HIDE_VARIABLE = "TRA_NO_COMPILED_OPS"
CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
CPU_SOURCES = ("most_similar.cpp",)
CUDA_SOURCES = ("most_similar_cuda.cu",)
LDFLAGS = ["-fopenmp"]

# (loaded, reason) of loading the library: None until the first query.
_loaded: Optional[Tuple[bool, str]] = None
_logged = set()


def _with_cuda() -> bool:
    """Whether a build here compiles the CUDA kernels: torch has CUDA, a GPU and nvcc exist."""
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.version.cuda is not None and torch.cuda.is_available() and CUDA_HOME is not None


def _cflags(with_cuda: bool):
    """Compiler flags: AVX2 and FMA (x86-64-v3) where torch finds them on this CPU."""
    flags = ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags.append("-march=x86-64-v3")
    return flags + (["-DTRA_WITH_CUDA"] if with_cuda else [])


def build_directory(with_cuda: bool) -> str:
    """The folder of the library built from the current sources for this torch, Python and CPU:
    under the virtual environment (``sys.prefix``; ``~/.cache`` outside one), named by a hash of
    all of them (so a library built for another CPU or torch is never loaded)."""
    digest = hashlib.sha256()
    for name in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ()):
        with open(os.path.join(CSRC, name), "rb") as f:
            digest.update(f.read())
    key = [torch.__version__, sys.version, *_cflags(with_cuda), *LDFLAGS]
    digest.update("\n".join(key).encode())
    if sys.prefix != sys.base_prefix:
        root = os.path.join(sys.prefix, "temporal_roi_align_ops")
    else:
        root = os.path.join(os.path.expanduser("~"), ".cache", "temporal_roi_align_ops")
    return os.path.join(root, digest.hexdigest()[:16])


def _library_path(directory: str) -> str:
    return os.path.join(directory, NAME + ".so")


def build(verbose: bool = False) -> str:
    """Compiles the library for the current sources (the CUDA kernels too where :func:`_with_cuda`),
    unless already built; returns its path. Raises (RuntimeError, OSError) when it cannot."""
    from torch.utils.cpp_extension import load

    with_cuda = _with_cuda()
    directory = build_directory(with_cuda)
    path = _library_path(directory)
    if os.path.exists(path):
        return path
    os.makedirs(directory, exist_ok=True)
    sources = [os.path.join(CSRC, name) for name in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
    load(
        NAME,
        sources,
        extra_cflags=_cflags(with_cuda),
        extra_cuda_cflags=["-O3"],
        extra_ldflags=LDFLAGS,
        build_directory=directory,
        is_python_module=False,
        verbose=verbose,
    )
    return path


def _load() -> Tuple[bool, str]:
    path = _library_path(build_directory(_with_cuda()))
    if not os.path.exists(path):
        return False, (
            f"not built for these sources ({path} missing: tools/build_ops.py builds it, as "
            "tools/env.sh does where a C++ compiler exists)"
        )
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as e:
        return False, f"{path} does not load: {e}"
    devices = "CPU and CUDA" if torch.ops.temporal_roi_align.compiled_with_cuda() else "CPU"
    return True, f"loaded from {path} ({devices})"


def _query() -> Tuple[bool, str]:
    """(used, why); the library is loaded on the first query, the variable read at every one.
    Each different answer is logged once."""
    global _loaded
    hide = os.environ.get(HIDE_VARIABLE, "")
    if hide not in ("", "0"):
        state = (False, f"hidden by {HIDE_VARIABLE}={hide}")
    else:
        if _loaded is None:
            _loaded = _load()
        state = _loaded
    if state not in _logged:
        _logged.add(state)
        if state[0]:
            logger.info("Most Similar RoI Align: compiled operator %s", state[1])
        else:
            logger.info("Most Similar RoI Align: PyTorch path (compiled operator %s)", state[1])
    return state


def available(device: torch.device) -> bool:
    """Whether the compiled operator runs on ``device`` (its CUDA kernels are built only with a GPU)."""
    loaded, _ = _query()
    if not loaded:
        return False
    if device.type == "cpu":
        return True
    return device.type == "cuda" and torch.ops.temporal_roi_align.compiled_with_cuda()


@contextlib.contextmanager
def hidden():
    """The PyTorch path within the block, as without the compiled operator (sets
    ``TRA_NO_COMPILED_OPS=1`` meanwhile; for comparisons in one process)."""
    former = os.environ.get(HIDE_VARIABLE)
    os.environ[HIDE_VARIABLE] = "1"
    try:
        yield
    finally:
        if former is None:
            del os.environ[HIDE_VARIABLE]
        else:
            os.environ[HIDE_VARIABLE] = former


def status() -> str:
    """One line: whether the compiled operator is used, and why (or why not)."""
    loaded, reason = _query()
    return ("compiled operator: " if loaded else "PyTorch path: compiled operator ") + reason


def gram_top_k(gram, locations, weights, offsets, cell_norms, k: int):
    return torch.ops.temporal_roi_align.gram_top_k(gram, locations, weights, offsets, cell_norms, k)


def rows_top_k(rows, k: int):
    return torch.ops.temporal_roi_align.rows_top_k(rows, k)
