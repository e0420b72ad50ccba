"""Crash-safe file replacement: a reader sees the old file or the new one, never a torn mix.

A write goes to a temporary file in the target's directory (so the rename stays on one
file system), is fsynced, renamed over the target with ``os.replace`` (atomic on POSIX and
Windows), and the directory is fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with what ``write`` puts in a temporary file next to it.

    The temporary file (``.<name>.<random>.tmp``, mode 0600 as ``mkstemp`` makes it)
    is removed when ``write`` or the rename fails, and the exception propagates.

    Args:
        path: the file to create or replace; its directory must exist.
        write: writes the complete new content to the path it is given.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` in ``encoding`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))
