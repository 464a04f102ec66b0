"""Writes that never leave a half-written file behind."""

import contextlib
import os
import tempfile

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs):
    """``open(path, mode)`` for writing, made atomic: the data go to a temporary file in the same
    folder, which is flushed, fsync'ed and renamed over ``path`` only when the block ends without
    an exception. Readers see the old file or the whole new one, never a part; an interrupted
    write leaves ``path`` as it was. ``mode`` is "w" or "wb"."""
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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _permissions(path: str) -> int:
    """The mode bits of an existing ``path``, else those a new file gets under the umask
    (mkstemp's files are private)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
