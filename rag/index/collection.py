"""One collection's derived indexes (FAISS + tantivy), kept in step with the database.

Crash-safety protocol (also in ``docs/decisions.md``):

1. new document versions are written to the database as ``pending`` with their chunks and vectors;
2. their chunks are added to both indexes, and both are made durable (tantivy commit,
   FAISS written to a temporary file, fsynced and renamed);
3. one database transaction flips them to ``active`` and the versions they replace to ``deleted``.

Searches return only chunks of ``active`` documents, so a reader never sees a half-ingested or
deleted document, whatever the indexes hold. :meth:`CollectionIndex.reconcile`, run under the
writer lock before every write and when the service starts, removes what a killed writer left:
pending rows are purged and their chunks dropped from both indexes; chunks of active documents
missing from an index are put back from the database, which stores every vector.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.errors import RagError
from rag.index.dense import DenseIndex, IndexCorruptError
from rag.index.lexical import LexicalIndex
from rag.index.store import ACTIVE, DELETED, PENDING, CollectionInfo, Store

log = logging.getLogger(__name__)


class CollectionBusyError(RagError):
    """Another process holds the collection's writer lock."""


def collection_dir(settings: Settings, name: str) -> Path:
    """Where a collection's index files live."""
    return settings.data_dir / "collections" / name


@dataclass(frozen=True)
class ReconcileReport:
    """What reconciliation repaired."""

    pending_purged: int = 0
    dense_rebuilt: bool = False
    lexical_added: int = 0
    lexical_removed: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was repaired."""
        return bool(self.pending_purged or self.dense_rebuilt or self.lexical_added or self.lexical_removed)


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


class CollectionIndex:
    """The dense and lexical indexes of one collection, with the store that rules them.

    Args:
        settings: service settings.
        store: the database.
        info: the collection.
        model_id: embedding model id, checked against the FAISS manifest.
        dim: embedding dimension.
    """

    def __init__(self, settings: Settings, store: Store, info: CollectionInfo, model_id: str, dim: int) -> None:
        self.settings = settings
        self.store = store
        self.info = info
        self.directory = collection_dir(settings, info.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self.dim = dim
        self.lock = WriterLock(self.directory)
        self.lexical = LexicalIndex.open(self.directory / "lexical", settings.lexical)
        try:
            self.dense = DenseIndex.open(self.directory / "dense", settings.dense, model_id, dim)
        except IndexCorruptError as exc:
            log.warning("dense index of %s is damaged (%s); rebuilding it from the database", info.name, exc)
            shutil.rmtree(self.directory / "dense", ignore_errors=True)
            self.dense = DenseIndex.open(self.directory / "dense", settings.dense, model_id, dim)
            self._rebuild_dense((ACTIVE,))

    # writer side ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[CollectionIndex]:
        """Hold the collection's writer lock; the tantivy writer is released on exit.

        Raises:
            CollectionBusyError: another process is writing to this collection.
        """
        if not self.lock.acquire(blocking=False):
            raise CollectionBusyError(
                f"collection {self.info.name!r} is being written by another process; try again when it finishes"
            )
        try:
            # Another writer may have committed between opening and locking: start from its state.
            self.refresh()
            yield self
        finally:
            try:
                self.lexical.close()
            finally:
                self.lock.release()

    def reconcile(self) -> ReconcileReport:
        """Repair what a killed writer left behind. Call with the writer lock held."""
        cid = self.info.id
        self.store.interrupt_running_jobs(cid)
        pending_docs = self.store.docs_in_state(cid, PENDING)
        pending_chunks = self.store.chunk_ids_of_docs(pending_docs)
        required = self.store.chunk_ids(cid, (ACTIVE,))
        allowed = self.store.chunk_ids(cid, (ACTIVE, DELETED))

        dense_ids = self.dense.ids()
        dense_ok = bool(np.isin(required, dense_ids).all()) and bool(np.isin(dense_ids, allowed).all())
        if not dense_ok:
            self._rebuild_dense((ACTIVE, DELETED))

        lex_ids = self.lexical.ids()
        missing = np.setdiff1d(required, lex_ids, assume_unique=False)
        extra = np.setdiff1d(lex_ids, allowed, assume_unique=False)
        if len(extra):
            self.lexical.delete(extra.tolist())
        if len(missing):
            wanted = set(missing.tolist())
            for rows in self.store.iter_lexical(cid, (ACTIVE,)):
                self.lexical.add((cid_, _body(title, text)) for cid_, title, text in rows if cid_ in wanted)
        if len(extra) or len(missing):
            self.lexical.commit()
        if pending_docs:
            self.store.purge(pending_docs)
        report = ReconcileReport(len(pending_docs), not dense_ok, int(len(missing)), int(len(extra)))
        if report.changed:
            log.warning(
                "reconciled %s: purged %d pending documents (%d chunks), dense rebuilt: %s, lexical +%d -%d",
                self.info.name,
                report.pending_purged,
                len(pending_chunks),
                report.dense_rebuilt,
                report.lexical_added,
                report.lexical_removed,
            )
        return report

    def _rebuild_dense(self, states: tuple[str, ...]) -> None:
        ids_parts, vec_parts = [], []
        for ids, vecs in self.store.iter_vectors(self.info.id, states):
            ids_parts.append(ids)
            vec_parts.append(vecs)
        ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.int64)
        vecs = np.concatenate(vec_parts) if vec_parts else np.zeros((0, self.dim), dtype=np.float32)
        self.dense.rebuild(ids, vecs)
        self.dense.save()

    def add(self, chunk_ids: np.ndarray, vectors: np.ndarray, bodies: list[str]) -> None:
        """Add chunks to both indexes in memory; :meth:`persist` makes them durable."""
        self.dense.add(chunk_ids, vectors)
        self.lexical.add(zip((int(i) for i in chunk_ids), bodies))

    def persist(self) -> None:
        """Make both indexes durable (tantivy commit, atomic FAISS write)."""
        self.lexical.commit()
        self.dense.save()

    def remove_lexical(self, chunk_ids: np.ndarray) -> None:
        """Drop chunks from tantivy at once (dense keeps them as tombstones until compaction)."""
        if len(chunk_ids):
            self.lexical.delete([int(i) for i in chunk_ids])
            self.lexical.commit()

    def compact(self) -> dict[str, int]:
        """Remove tombstoned chunks from both indexes and the database. Call with the lock held.

        Each step is safe to interrupt: deleted documents stay filtered until their rows are purged.
        """
        cid = self.info.id
        deleted_docs = self.store.docs_in_state(cid, DELETED)
        deleted_chunks = self.store.chunk_ids_of_docs(deleted_docs)
        before = self.dense.ntotal
        self._rebuild_dense((ACTIVE,))
        if len(deleted_chunks):
            self.lexical.delete(deleted_chunks.tolist())
            self.lexical.commit()
        self.store.purge(deleted_docs)
        return {
            "documents_purged": len(deleted_docs),
            "chunks_purged": int(len(deleted_chunks)),
            "vectors_before": int(before),
            "vectors_after": int(self.dense.ntotal),
        }

    # reader side ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Pick up another process's commits (cheap when nothing changed)."""
        self.dense.reload_if_changed()
        self.lexical.reload()

    def bytes_on_disk(self) -> int:
        """Size of the collection's index files."""
        total = 0
        for root, _dirs, files in os.walk(self.directory):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total


def _body(title: str, text: str) -> str:
    from rag.chunking import embedding_text

    return embedding_text(title, text)
