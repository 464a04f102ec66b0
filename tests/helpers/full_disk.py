"""A disk that fills up: writes through atomic_write fail with ENOSPC after ``room`` bytes."""

import errno
import os

from temporal_roi_align.utils import atomic


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written, as on a full disk."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, room=1000):
    """Make atomic_write's files fail with ENOSPC after ``room`` bytes."""
    fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *args, **kwargs: FullDisk(fdopen(*args, **kwargs), room))
