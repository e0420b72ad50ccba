"""The ingestion pipeline: load, chunk, embed, stage, index, activate.

Atomic per document and safe under ``kill -9``: see :mod:`rag.index.collection`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.loaders import LoadFailure, iter_files, load_file
from rag.chunking import Chunker, embedding_text
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import FileError
from rag.index.collection import CollectionIndex
from rag.index.store import ActiveDoc, Store, StagedDoc, content_sha256
from rag.types import ChunkDraft, Document

STAGES = ("load", "chunk", "embed", "db", "dense", "lexical")


@dataclass
class IngestReport:
    """What an ingest did; ``as_json`` is the ``rag ingest --json`` summary."""

    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_failed: int = 0
    chunks_added: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    seconds: float = 0.0
    reconciled: dict[str, object] = field(default_factory=dict)

    def fail(self, path: str, reason: str) -> None:
        """Record a file or line that was skipped."""
        self.documents_failed += 1
        self.failures.append({"path": path, "reason": reason})

    def as_json(self) -> dict[str, object]:
        """The summary object printed by ``rag ingest --json``."""
        return {
            "documents_added": self.documents_added,
            "documents_updated": self.documents_updated,
            "documents_unchanged": self.documents_unchanged,
            "documents_failed": self.documents_failed,
            "chunks_added": self.chunks_added,
            "failures": self.failures,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[int, int], None]
"""Called with (documents done in this call, chunks added in this call)."""


@dataclass
class _Pending:
    doc: Document
    sha: str
    chunks: list[ChunkDraft]
    replaces: ActiveDoc | None


class _Clock:
    def __init__(self, report: IngestReport) -> None:
        self.report = report

    def __call__(self, stage: str) -> _Timer:
        return _Timer(self.report, stage)


class _Timer:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings_s[self.stage] += time.perf_counter() - self.t0


class Ingestor:
    """Ingests files into one collection.

    Args:
        settings: service settings.
        store: the database.
        embedder: a warmed-up embedder.
        collection: collection name, created when missing.
    """

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, collection: str) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder.warm_up()
        self.chunker = Chunker(settings.chunking, self.embedder.tokenizer, self.embedder.max_seq_length)
        self.info = store.ensure_collection(collection)
        self._check_collection_settings()
        self.index = CollectionIndex(settings, store, self.info, self.embedder.model_id, self.embedder.dim)
        self._job_id: int | None = None

    def _check_collection_settings(self) -> None:
        wanted = {"embedding_model": self.embedder.model_id, "dim": self.embedder.dim}
        stored = self.info.settings
        if not stored.get("embedding_model"):
            self.store.update_collection_settings(self.info.name, wanted)
        # A different model is refused by the FAISS manifest with a clear message.

    def ingest(
        self,
        paths: Iterable[Path],
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        fail_fast: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and directories.

        Args:
            paths: files or directories (read recursively).
            include: globs a file must match (relative path or name).
            exclude: globs that skip a file.
            fail_fast: stop at the first bad file.
            progress: callback for progress bars.

        Returns:
            The report; failures are listed, never raised.

        Raises:
            CollectionBusyError: another process is writing to this collection.
        """
        report = IngestReport()
        t0 = time.perf_counter()
        with self.index.writing():
            job_id = None
            try:
                rec = self.index.reconcile()
                report.reconciled = rec.__dict__ if rec.changed else {}
                paths = list(paths)
                job_id = self.store.start_job(self.info.id, [str(p) for p in paths])
                self._job_id = job_id
                self._run(self._documents(paths, include, exclude, report, fail_fast), report, fail_fast, progress)
                report.seconds = time.perf_counter() - t0
                self.store.finish_job(job_id, "done", report.as_json())
            except BaseException:
                if job_id is not None:
                    report.seconds = time.perf_counter() - t0
                    try:
                        self.store.finish_job(job_id, "failed", report.as_json())
                    except Exception:  # the original error matters more
                        pass
                raise
        return report

    def _documents(
        self,
        paths: list[Path],
        include: list[str] | None,
        exclude: list[str] | None,
        report: IngestReport,
        fail_fast: bool,
    ) -> Iterator[Document]:
        clock = _Clock(report)
        for item in iter_files(paths, include, exclude):
            if isinstance(item, LoadFailure):
                report.fail(item.path, item.reason)
                if fail_fast:
                    return
                continue
            try:
                it = load_file(item, self.settings.ingest.max_file_bytes)
                while True:
                    with clock("load"):
                        doc = next(it, None)
                    if doc is None:
                        break
                    if isinstance(doc, LoadFailure):
                        report.fail(doc.path, doc.reason)
                        if fail_fast:
                            return
                        continue
                    yield doc
            except FileError as exc:
                report.fail(exc.path, exc.reason)
                if fail_fast:
                    return

    def _run(
        self, docs: Iterator[Document], report: IngestReport, fail_fast: bool, progress: Progress | None
    ) -> None:
        batch: list[Document] = []
        seen: dict[str, str] = {}
        staged: list[StagedDoc] = []
        last_commit = time.perf_counter()
        batch_size = self.settings.ingest.batch_documents
        for doc in docs:
            if doc.external_id in seen:
                report.fail(doc.source, f"duplicate document id {doc.external_id!r} in this ingest; first kept")
                continue
            seen[doc.external_id] = doc.source
            batch.append(doc)
            if len(batch) >= batch_size:
                staged += self._stage_batch(batch, report, progress)
                batch = []
                # Commit by time so small corpora become searchable quickly and large ones
                # are not slowed by a FAISS write per batch.
                if time.perf_counter() - last_commit > self.settings.ingest.commit_interval_s:
                    self._commit(staged, report)
                    staged, last_commit = [], time.perf_counter()
        if batch:
            staged += self._stage_batch(batch, report, progress)
        self._commit(staged, report)

    def _stage_batch(self, batch: list[Document], report: IngestReport, progress: Progress | None) -> list[StagedDoc]:
        clock = _Clock(report)
        with clock("db"):
            active = self.store.active_docs(self.info.id, [d.external_id for d in batch])
        todo: list[_Pending] = []
        unchanged = 0
        with clock("chunk"):
            for doc in batch:
                sha = content_sha256(doc)
                prev = active.get(doc.external_id)
                if prev is not None and prev.sha256 == sha:
                    unchanged += 1
                    continue
                chunks = self.chunker.chunk(doc)
                if not chunks:
                    report.fail(doc.source if doc.source != doc.external_id else doc.external_id, "document has no text")
                    continue
                todo.append(_Pending(doc, sha, chunks, prev))
        report.documents_unchanged += unchanged
        if not todo:
            if progress:
                progress(len(batch), 0)
            return []
        texts = [embedding_text(p.doc.title, c.text) for p in todo for c in p.chunks]
        with clock("embed"):
            vectors = self.embedder.embed_documents(texts)
        items = []
        offset = 0
        for p in todo:
            n = len(p.chunks)
            items.append((p.doc, p.sha, p.chunks, vectors[offset : offset + n], p.replaces.id if p.replaces else None))
            offset += n
        with clock("db"):
            staged = self.store.stage(self.info.id, self._job_id, items)
        all_ids = np.asarray([cid for s in staged for cid in s.chunk_ids], dtype=np.int64)
        with clock("dense"):
            self.index.dense.add(all_ids, vectors)
        with clock("lexical"):
            self.index.lexical.add(zip(all_ids.tolist(), texts))
        for p in todo:
            if p.replaces is None:
                report.documents_added += 1
            else:
                report.documents_updated += 1
        report.chunks_added += len(all_ids)
        if progress:
            progress(len(batch), len(all_ids))
        return staged

    def _commit(self, staged: list[StagedDoc], report: IngestReport) -> None:
        if not staged:
            return
        clock = _Clock(report)
        with clock("lexical"):
            self.index.lexical.commit()
        with clock("dense"):
            self.index.dense.save()
        with clock("db"):
            self.store.activate(staged)
        replaced = [s.replaces for s in staged if s.replaces is not None]
        if replaced:
            with clock("lexical"):
                self.index.remove_lexical(self.store.chunk_ids_of_docs(replaced))


def delete_documents(
    settings: Settings,
    store: Store,
    embedder_model: str,
    dim: int,
    collection: str,
    *,
    external_id: str | None = None,
    source_prefix: str | None = None,
) -> int:
    """Delete one document or every document under a source prefix.

    The database tombstones them in one transaction (they vanish from search at once), tantivy
    drops their chunks, and FAISS keeps their vectors as tombstones until ``rag compact``.

    Returns:
        Number of documents deleted.
    """
    info = store.collection(collection)
    index = CollectionIndex(settings, store, info, embedder_model, dim)
    with index.writing():
        index.reconcile()
        before = set(store.docs_in_state(info.id, "deleted"))
        n = store.tombstone(info.id, external_id=external_id, source_prefix=source_prefix)
        new = [d for d in store.docs_in_state(info.id, "deleted") if d not in before]
        index.remove_lexical(store.chunk_ids_of_docs(new))
        return n
