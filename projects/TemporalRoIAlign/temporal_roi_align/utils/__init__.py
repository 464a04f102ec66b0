"""Small utilities shared by the package and its tools."""

from .atomic import NO_SPACE, atomic_write, remove_leftover_temporaries

__all__ = ["NO_SPACE", "atomic_write", "remove_leftover_temporaries"]
