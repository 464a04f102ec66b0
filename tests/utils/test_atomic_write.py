"""atomic_write: a file is replaced whole or not at all; a full disk says so; the leftovers of
killed writes are found."""

import errno
import os
import re
import stat
import subprocess
import sys

import pytest
import torch

from temporal_roi_align.utils import atomic, atomic_write, remove_leftover_temporaries

from helpers.full_disk import fill_disk


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


def test_a_full_disk_says_so_and_keeps_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(10)}, str(path))
    before = path.read_bytes()
    fill_disk(monkeypatch)
    # torch.save reports the failed write as "RuntimeError: [enforce fail at inline_container.cc]".
    for target in (path, tmp_path / "new.pth"):
        with pytest.raises(OSError) as e:
            with atomic_write(str(target), "wb") as f:
                torch.save({"w": torch.ones(10000)}, f)
        assert e.value.errno == errno.ENOSPC
        assert re.fullmatch(
            rf"No space left on device: {re.escape(str(target))} could not be written \([\d.]+ MiB free there\); "
            + ("the file there is unchanged" if target == path else "nothing was written"),
            e.value.strerror,
        )
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pth"]


def test_leftovers_of_killed_writes_are_removed(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"old")
    killed = (
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('atomic', {atomic.__file__!r})\n"
        "atomic = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(atomic)\n"
        "with atomic.atomic_write(sys.argv[1], 'wb') as f:\n"
        "    f.write(b'x' * 5000)\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", killed, str(tmp_path / "model_final.pth")])
    assert proc.returncode == -9
    (leftover,) = [n for n in os.listdir(tmp_path) if n != "model_final.pth"]
    kept = [".lock", "notes.tmp", ".model_final.pth.tmp", "model_0000009.pth"]
    for name in kept:
        (tmp_path / name).write_text("keep")
    assert remove_leftover_temporaries(str(tmp_path)) == {str(tmp_path / leftover): 5000}
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, "model_final.pth"])
    assert (tmp_path / "model_final.pth").read_bytes() == b"old"
