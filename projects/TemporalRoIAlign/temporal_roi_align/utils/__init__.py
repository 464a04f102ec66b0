"""Small utilities shared by the package and its tools."""

from .atomic import atomic_write

__all__ = ["atomic_write"]
