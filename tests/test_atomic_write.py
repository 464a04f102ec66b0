"""atomic_write: a file is replaced whole or not at all."""

import os
import stat

import pytest

from temporal_roi_align.utils import atomic_write


def test_writes_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    with atomic_write(str(path)) as f:
        f.write("{}")
    assert path.read_text() == "{}" and os.listdir(tmp_path) == ["out.json"]


def test_an_error_keeps_the_old_file(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("24 lines\n")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "24 lines\n" and os.listdir(tmp_path) == ["split.txt"]


def test_binary_mode_and_permissions(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with atomic_write(str(path), "wb") as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    fresh = tmp_path / "fresh.txt"
    with atomic_write(str(fresh)) as f:
        f.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing/out.txt: cannot write, folder .*missing does not exist"):
        with atomic_write(str(tmp_path / "missing" / "out.txt")):
            pass
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write(str(tmp_path / "a.txt"), "a"):
            pass
