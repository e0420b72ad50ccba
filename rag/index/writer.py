"""The one writer of a collection: stage, index, persist, activate.

Crash-safety protocol (also in ``docs/decisions.md``):

1. new document versions are written to the database as ``pending`` with their chunks and vectors;
2. their chunks are added to both indexes, and both are made durable (tantivy commit,
   FAISS written to a temporary file, fsynced and renamed);
3. one database transaction flips them to ``active`` and the versions they replace to ``deleted``.

Searches return only chunks of ``active`` documents, so a reader never sees a half-ingested or
deleted document, whatever the indexes hold. :meth:`CollectionWriter.reconcile`, run when the
writer opens (and so before every write) and when the service starts, removes what a killed
writer left: pending rows are purged and their chunks dropped from both indexes; chunks of active
documents missing from an index are put back from the database, which stores every vector.

Nothing else writes index files or activates documents (``tests/test_layout.py`` checks it): the
ingestion pipeline, the benchmark and any distributed sink hand their batches to this class.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from rag.chunking import embedding_text
from rag.config import Settings
from rag.index.collection import CollectionBusyError, WriterLock, collection_dir, open_dense_file, open_lexical
from rag.index.shards import ShardPlace, shard_of, shard_places
from rag.index.store import ACTIVE, DELETED, PENDING, ActiveDoc, CollectionInfo, StagedDoc, Store
from rag.types import ChunkDraft, Document

if TYPE_CHECKING:
    # FAISS is imported when an index is opened, not when this module is: commands that only
    # read the database import it without paying for FAISS.
    from rag.index.dense import DenseIndex
    from rag.index.lexical import LexicalIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentVersion:
    """One new version of a document, chunked and embedded, ready to be written.

    Attributes:
        document: the document.
        sha256: content hash recorded for change detection.
        chunks: its chunks, in order.
        vectors: one float32 L2-normalised vector per chunk, shape ``(len(chunks), dim)``.
        replaces: id of the active version this one replaces, or None for a new document.
        bodies: the text BM25 indexes per chunk (default: the title and the chunk text, as embedded).
    """

    document: Document
    sha256: str
    chunks: Sequence[ChunkDraft]
    vectors: np.ndarray
    replaces: int | None = None
    bodies: Sequence[str] | None = None

    def indexed_texts(self) -> list[str]:
        """What BM25 indexes for each chunk."""
        if self.bodies is not None:
            return list(self.bodies)
        return [embedding_text(self.document.title, c.text) for c in self.chunks]


@dataclass
class WriteReport:
    """What one call of the writer did, with seconds spent per part.

    Attributes:
        documents_added: new documents staged.
        documents_updated: new versions of existing documents staged.
        chunk_ids: database ids of the chunks written, in order.
        committed: whether this call made staged documents searchable.
        persist_s: wall time of committing (making both indexes durable and activating); those
            seconds are also counted in ``db_s``, ``dense_s`` and ``lexical_s`` by part.
    """

    documents_added: int = 0
    documents_updated: int = 0
    chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    committed: bool = False
    db_s: float = 0.0
    dense_s: float = 0.0
    lexical_s: float = 0.0
    persist_s: float = 0.0

    @property
    def chunks_added(self) -> int:
        """Number of chunks written."""
        return int(len(self.chunk_ids))

    def merge(self, other: WriteReport) -> None:
        """Add another report's counts and times to this one."""
        self.documents_added += other.documents_added
        self.documents_updated += other.documents_updated
        self.chunk_ids = np.concatenate([self.chunk_ids, other.chunk_ids])
        self.committed = self.committed or other.committed
        self.db_s += other.db_s
        self.dense_s += other.dense_s
        self.lexical_s += other.lexical_s
        self.persist_s += other.persist_s


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


class _Clock:
    """Adds the seconds of a block to one field of a :class:`WriteReport`."""

    def __init__(self, report: WriteReport, part: str) -> None:
        self.report, self.part = report, part

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        setattr(self.report, self.part, getattr(self.report, self.part) + time.perf_counter() - self.t0)


@dataclass
class ShardIndexes:
    """The two indexes of one shard of a collection, and what is staged for them."""

    place: ShardPlace
    lexical: LexicalIndex
    dense: DenseIndex
    staged: list[StagedDoc] = field(default_factory=list)


class CollectionWriter:
    """Writes one collection: holds its writer lock, stages, indexes, persists and activates.

    Use it as a context manager. Entering takes the collection's lock (another process writing
    raises :class:`CollectionBusyError`), picks up the last writer's state and reconciles; leaving
    normally commits what is still staged. Leaving by an exception commits nothing: the staged
    documents stay pending and the next writer purges them.

    A sharded collection (:mod:`rag.index.shards`) has one pair of indexes per shard; each
    document goes to its shard's, and a commit makes every shard's indexes durable before the
    one transaction that activates the documents of all of them.

    Args:
        settings: service settings (index kinds, commit interval).
        store: the database.
        info: the collection.
        model_id: embedding model id, checked against the FAISS manifest.
        dim: embedding dimension.

    Example:
        >>> with CollectionWriter(settings, store, info, embedder.model_id, embedder.dim) as writer:  # doctest: +SKIP
        ...     existing = writer.existing([v.document.external_id for v in versions])
        ...     writer.write(versions, job_id=job)
    """

    def __init__(self, settings: Settings, store: Store, info: CollectionInfo, model_id: str, dim: int) -> None:
        self.settings = settings
        self.store = store
        self.info = info
        self.directory = collection_dir(settings, info.name)
        self.model_id = model_id
        self.dim = dim
        self.lock = WriterLock(self.directory)
        self.shards: list[ShardIndexes] = []
        try:
            for place in shard_places(settings, info):
                lexical = open_lexical(settings, place.directory)
                self.shards.append(ShardIndexes(place, lexical, open_dense(settings, store, info, place, model_id, dim)))
        except BaseException:
            self._close_indexes()
            raise
        self.reconciled = ReconcileReport()
        self._last_commit = time.perf_counter()

    @property
    def lexical(self) -> LexicalIndex:
        """The tantivy index of the first shard (the only one of an unsharded collection)."""
        return self.shards[0].lexical

    @property
    def dense(self) -> DenseIndex:
        """The FAISS index of the first shard (the only one of an unsharded collection)."""
        return self.shards[0].dense

    # lifetime ------------------------------------------------------------------------------

    def __enter__(self) -> CollectionWriter:
        if not self.lock.acquire(blocking=False):
            self._close_indexes()
            raise CollectionBusyError(
                f"collection {self.info.name!r} is being written by another process; try again when it finishes"
            )
        try:
            # Another writer may have committed between opening and locking: start from its state.
            for part in self.shards:
                part.dense.reload_if_changed()
                part.lexical.reload()
            self.reconciled = self.reconcile()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._close()

    def _close_indexes(self) -> None:
        errors = []
        for part in self.shards:
            try:
                part.lexical.close()
            except Exception as exc:  # close every shard, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def _close(self) -> None:
        try:
            self._close_indexes()
        finally:
            self.lock.release()

    # writing -------------------------------------------------------------------------------

    def existing(self, external_ids: Sequence[str]) -> dict[str, ActiveDoc]:
        """The active version of each of these documents that has one (id and content hash)."""
        return self.store.active_docs(self.info.id, external_ids)

    def shard_of(self, external_id: str) -> int:
        """The shard a document belongs to."""
        return shard_of(external_id, len(self.shards))

    def write(self, versions: Sequence[DocumentVersion], *, job_id: int | None = None) -> WriteReport:
        """Stage documents and add their chunks to their shard's indexes in memory.

        They become searchable at the next commit: this call commits by itself once
        ``ingest.commit_interval_s`` has passed since the last one, so small corpora are searchable
        quickly and large ones are not slowed by a FAISS write per batch.

        Args:
            versions: the documents to write (none of them already staged in this writer).
            job_id: the ingestion job they belong to, if any.

        Returns:
            Counts and seconds per part, ``committed`` when this call committed.
        """
        report = WriteReport()
        if versions:
            for part, staged, texts, vectors in self._stage(versions, job_id, report):
                with _Clock(report, "dense_s"):
                    part.dense.add(np.asarray([c for d in staged for c in d.chunk_ids], np.int64), vectors)
                with _Clock(report, "lexical_s"):
                    part.lexical.add(zip((c for d in staged for c in d.chunk_ids), texts))
                part.staged += staged
        if time.perf_counter() - self._last_commit > self.settings.ingest.commit_interval_s:
            report.merge(self.commit())
        return report

    def load(self, versions: Sequence[DocumentVersion]) -> WriteReport:
        """Bulk-load an empty collection: stage everything, build the dense indexes in one go, commit.

        One rebuild lets ``auto`` pick the index kind from the final count and trains IVF-PQ once,
        which benchmarks of 100k+ chunks need.

        Raises:
            ValueError: the collection already holds chunks.
        """
        if sum(p.dense.ntotal for p in self.shards) or len(self.store.chunk_ids(self.info.id, (ACTIVE, PENDING, DELETED))):
            raise ValueError(f"collection {self.info.name!r} is not empty; load() fills empty collections only")
        report = WriteReport()
        for part, staged, texts, vectors in self._stage(versions, None, report):
            ids = np.asarray([c for d in staged for c in d.chunk_ids], np.int64)
            with _Clock(report, "dense_s"):
                part.dense.rebuild(ids, vectors)
            with _Clock(report, "lexical_s"):
                part.lexical.add(zip(ids.tolist(), texts))
            part.staged += staged
        report.merge(self.commit())
        return report

    def _stage(
        self, versions: Sequence[DocumentVersion], job_id: int | None, report: WriteReport, rows_per_tx: int = 500
    ) -> list[tuple[ShardIndexes, list[StagedDoc], list[str], np.ndarray]]:
        """Write the versions as pending, in order, and split what each shard indexes."""
        shard_nums = [self.shard_of(v.document.external_id) for v in versions]
        staged: list[StagedDoc] = []
        with _Clock(report, "db_s"):
            for start in range(0, len(versions), rows_per_tx):
                part = versions[start : start + rows_per_tx]
                items = [(v.document, v.sha256, v.chunks, v.vectors, v.replaces) for v in part]
                staged += self.store.stage(self.info.id, job_id, items, shards=shard_nums[start : start + rows_per_tx])
        report.chunk_ids = np.asarray([cid for s in staged for cid in s.chunk_ids], dtype=np.int64)
        for v in versions:
            if v.replaces is None:
                report.documents_added += 1
            else:
                report.documents_updated += 1
        out = []
        for k, part in enumerate(self.shards):
            mine = [i for i, n in enumerate(shard_nums) if n == k]
            if not mine:
                continue
            texts = [t for i in mine for t in versions[i].indexed_texts()]
            vectors = np.concatenate([versions[i].vectors for i in mine])
            out.append((part, [staged[i] for i in mine], texts, vectors))
        return out

    def commit(self) -> WriteReport:
        """Make every shard's indexes durable, then activate what is staged in one transaction."""
        report = WriteReport()
        t0 = self._last_commit = time.perf_counter()
        staged = [d for part in self.shards for d in part.staged]
        if not staged:
            return report
        for part in self.shards:
            if not part.staged:
                continue
            with _Clock(report, "lexical_s"):
                part.lexical.commit()
            with _Clock(report, "dense_s"):
                part.dense.save()
        with _Clock(report, "db_s"):
            self.store.activate(staged)
        replaced = [s.replaces for s in staged if s.replaces is not None]
        for part in self.shards:
            part.staged = []
        if replaced:
            with _Clock(report, "lexical_s"):
                self._remove_lexical(self.store.chunk_ids_of_docs(replaced))
        report.committed = True
        report.persist_s = time.perf_counter() - t0
        return report

    # deleting and compacting ---------------------------------------------------------------

    def delete(self, *, external_id: str | None = None, source_prefix: str | None = None) -> int:
        """Delete one document or every document under a source prefix.

        The database tombstones them in one transaction (they vanish from search at once), tantivy
        drops their chunks, and FAISS keeps their vectors as tombstones until :meth:`compact`.

        Returns:
            Number of documents deleted.
        """
        return self._tombstone(external_id=external_id, source_prefix=source_prefix)

    def delete_many(self, external_ids: Sequence[str]) -> int:
        """Delete the active documents with these external ids, in one transaction (as :meth:`delete`).

        ``rag ingest --sync`` removes the documents whose files are gone with it.

        Returns:
            Number of documents deleted.
        """
        if not external_ids:
            return 0
        return self._tombstone(external_ids=external_ids)

    def _tombstone(self, **which: object) -> int:
        before = set(self.store.docs_in_state(self.info.id, DELETED))
        n = self.store.tombstone(self.info.id, **which)
        new = [d for d in self.store.docs_in_state(self.info.id, DELETED) if d not in before]
        self._remove_lexical(self.store.chunk_ids_of_docs(new))
        return n

    def compact(self) -> dict[str, int]:
        """Remove tombstoned chunks from every shard's indexes and from the database.

        Each step is safe to interrupt: deleted documents stay filtered until their rows are purged.
        """
        cid = self.info.id
        deleted_docs = self.store.docs_in_state(cid, DELETED)
        deleted_chunks = self.store.chunk_ids_of_docs(deleted_docs)
        before = sum(p.dense.ntotal for p in self.shards)
        for part in self.shards:
            rebuild_dense(self.store, self.info, part.dense, (ACTIVE,), part.place.shard)
        self._remove_lexical(deleted_chunks)
        self.store.purge(deleted_docs)
        return {
            "documents_purged": len(deleted_docs),
            "chunks_purged": int(len(deleted_chunks)),
            "vectors_before": int(before),
            "vectors_after": int(sum(p.dense.ntotal for p in self.shards)),
        }

    def _remove_lexical(self, chunk_ids: np.ndarray) -> None:
        if not len(chunk_ids):
            return
        if len(self.shards) == 1:
            by_shard = {0: [int(i) for i in chunk_ids]}
        else:
            by_shard = self.store.shard_chunk_ids(chunk_ids)
        for shard, ids in by_shard.items():
            self.shards[shard].lexical.delete(ids)
            self.shards[shard].lexical.commit()

    # repair --------------------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Repair what a killed writer left behind, shard by shard (the writer's lock is held)."""
        cid = self.info.id
        self.store.interrupt_running_jobs(cid)
        pending_docs = self.store.docs_in_state(cid, PENDING)
        pending_chunks = self.store.chunk_ids_of_docs(pending_docs)
        rebuilt, added, removed = False, 0, 0
        for part in self.shards:
            shard = part.place.shard
            required = self.store.chunk_ids(cid, (ACTIVE,), shard)
            allowed = self.store.chunk_ids(cid, (ACTIVE, DELETED), shard)

            dense_ids = part.dense.ids()
            dense_ok = bool(np.isin(required, dense_ids).all()) and bool(np.isin(dense_ids, allowed).all())
            if not dense_ok:
                rebuild_dense(self.store, self.info, part.dense, (ACTIVE, DELETED), shard)
                rebuilt = True

            lex_ids = part.lexical.ids()
            missing = np.setdiff1d(required, lex_ids, assume_unique=False)
            extra = np.setdiff1d(lex_ids, allowed, assume_unique=False)
            if len(extra):
                part.lexical.delete(extra.tolist())
            if len(missing):
                wanted = set(missing.tolist())
                for rows in self.store.iter_lexical(cid, (ACTIVE,), shard=shard):
                    part.lexical.add((i, embedding_text(title, text)) for i, title, text in rows if i in wanted)
            if len(extra) or len(missing):
                part.lexical.commit()
            added += int(len(missing))
            removed += int(len(extra))
        if pending_docs:
            self.store.purge(pending_docs)
        report = ReconcileReport(len(pending_docs), rebuilt, added, removed)
        if report.changed:
            log.warning(
                "reconciled %s: purged %d pending documents (%d chunks), dense rebuilt: %s, lexical +%d -%d",
                self.info.name, report.pending_purged, len(pending_chunks), report.dense_rebuilt,
                report.lexical_added, report.lexical_removed,
            )
        return report


def open_dense(
    settings: Settings, store: Store, info: CollectionInfo, place: ShardPlace, model_id: str, dim: int
) -> DenseIndex:
    """One shard's FAISS index; a damaged file is rebuilt from the vectors in the database."""
    from rag.index.dense import IndexCorruptError

    try:
        return open_dense_file(settings, place.directory, model_id, dim, store.cipher)
    except IndexCorruptError as exc:
        log.warning("dense index of %s is damaged (%s); rebuilding it from the database", info.name, exc)
        shutil.rmtree(place.directory / "dense", ignore_errors=True)
        dense = open_dense_file(settings, place.directory, model_id, dim, store.cipher)
        rebuild_dense(store, info, dense, (ACTIVE,), place.shard)
        return dense


def rebuild_dense(
    store: Store, info: CollectionInfo, dense: DenseIndex, states: tuple[str, ...], shard: int | None = None
) -> None:
    """Rebuild a FAISS index (a collection's, or one shard's) from the vectors the database stores, and save it."""
    ids_parts, vec_parts = [], []
    for ids, vecs in store.iter_vectors(info.id, states, shard=shard):
        ids_parts.append(ids)
        vec_parts.append(vecs)
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.int64)
    vecs = np.concatenate(vec_parts) if vec_parts else np.zeros((0, dense.dim), dtype=np.float32)
    dense.rebuild(ids, vecs)
    dense.save()
