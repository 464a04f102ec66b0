"""Writes that never leave a half-written file behind, and the clean-up of those a killed process
left."""

import contextlib
import errno
import os
import re
import shutil
import tempfile
from typing import Dict, Optional

__all__ = ["NO_SPACE", "atomic_write", "remove_leftover_temporaries"]

# The errors of a write that finds no room: a full disk, an exhausted quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# atomic_write's temporary files: "." + the file's name + mkstemp's 8 random characters + ".tmp".
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs):
    """``open(path, mode)`` for writing, made atomic: the data go to a temporary file in the same
    folder, which is flushed, fsync'ed and renamed over ``path`` only when the block ends without
    an exception. Readers see the old file or the whole new one, never a part; an interrupted
    write leaves ``path`` as it was. ``mode`` is "w" or "wb".

    A write that finds no room (:data:`NO_SPACE`), however the writer reports it (``torch.save``
    raises a ``RuntimeError`` of its zip writer), raises an ``OSError`` of that errno saying so,
    with ``path``, the space left and that ``path`` is unchanged. A process killed while writing
    leaves its temporary file: :func:`remove_leftover_temporaries` removes it."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: cannot write, folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _permissions(path))
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = _no_space_error(e)
        if full is None:
            raise
        kept = "the file there is unchanged" if os.path.exists(path) else "nothing was written"
        free = shutil.disk_usage(folder).free / 2**20
        raise OSError(
            full.errno, f"{os.strerror(full.errno)}: {path} could not be written ({free:.1f} MiB free there); {kept}"
        ) from e


def _no_space_error(error: BaseException) -> Optional[OSError]:
    """The OSError of :data:`NO_SPACE` that ``error`` is or comes from (its cause or context), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def remove_leftover_temporaries(folder: str) -> Dict[str, int]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` (not its subfolders): the
    leftovers of writes whose process was killed. Returns their paths and sizes in bytes. Only
    call it while no other process writes into ``folder``: its temporary files would go too."""
    removed = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if _TEMPORARY.fullmatch(name) and os.path.isfile(path):
            removed[path] = os.path.getsize(path)
            os.remove(path)
    return removed


def _permissions(path: str) -> int:
    """The mode bits of an existing ``path``, else those a new file gets under the umask
    (mkstemp's files are private)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
