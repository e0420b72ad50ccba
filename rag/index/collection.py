"""What the writer and the reader of a collection share: where its files live, its lock, opening its indexes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import RagError

if TYPE_CHECKING:
    # FAISS and tantivy are imported when an index is opened, not with this module.
    from rag.index.dense import DenseIndex
    from rag.index.lexical import LexicalIndex
    from rag.security.crypto import DataCipher


class CollectionBusyError(RagError):
    """Another process holds the collection's writer lock."""


def collection_dir(settings: Settings, name: str) -> Path:
    """Where a collection's index files live."""
    return settings.data_dir / "collections" / name


def open_lexical(settings: Settings, directory: Path) -> LexicalIndex:
    """The collection's tantivy index (created empty when missing)."""
    from rag.index.lexical import LexicalIndex

    directory.mkdir(parents=True, exist_ok=True)
    return LexicalIndex.open(directory / "lexical", settings.lexical)


def open_dense_file(
    settings: Settings, directory: Path, model_id: str, dim: int, cipher: DataCipher | None = None
) -> DenseIndex:
    """The collection's FAISS index as stored, decrypted with ``cipher`` when encryption is on.

    Raises:
        IndexCorruptError: the file is damaged (the writer module rebuilds it from the database).
        IndexMismatchError: it was built with another model or dimension.
    """
    from rag.index.dense import DenseIndex

    directory.mkdir(parents=True, exist_ok=True)
    return DenseIndex.open(directory / "dense", settings.dense, model_id, dim, cipher=cipher)


def bytes_on_disk(directory: Path) -> int:
    """Size of the files under a collection's directory."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


class WriterLock:
    """An exclusive, process-wide lock on a collection, released when the process dies."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "write.lock"
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock back."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
