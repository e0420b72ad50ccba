"""The ingestion pipeline: source, parse, chunk, embed, then the collection's writer, over batches.

Atomic per document and safe under ``kill -9``: see :mod:`rag.index.writer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from indexer.sources import FileSource
from rag.chunking import Chunker, embedding_text
from rag.config import Settings
from rag.embedding import Embedder
from rag.index.store import Store, content_sha256
from rag.index.writer import CollectionWriter, DocumentVersion, WriteReport
from rag.interfaces import Source
from rag.types import Document, LoadFailure

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

    def add_write(self, w: WriteReport) -> None:
        """Count what the writer did."""
        self.documents_added += w.documents_added
        self.documents_updated += w.documents_updated
        self.chunks_added += w.chunks_added
        self.timings_s["db"] += w.db_s
        self.timings_s["dense"] += w.dense_s
        self.timings_s["lexical"] += w.lexical_s

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


class _Timer:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings_s[self.stage] += time.perf_counter() - self.t0


class Ingestor:
    """Ingests documents into one collection.

    Args:
        settings: service settings.
        store: the database.
        embedder: the embedder (warmed up here).
        collection: collection name, created when missing.

    Example:
        >>> report = Ingestor(settings, store, Embedder(settings.embedding), "handbook").ingest([Path("data")])  # doctest: +SKIP
        >>> report.as_json()["documents_added"]  # doctest: +SKIP
        10
    """

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, collection: str) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder.warm_up()
        self.chunker = Chunker(settings.chunking, self.embedder.tokenizer, self.embedder.max_seq_length)
        self.info = store.ensure_collection(collection)
        if not self.info.settings.get("embedding_model"):
            # A different model later is refused by the FAISS manifest with a clear message.
            store.update_collection_settings(collection, {"embedding_model": self.embedder.model_id, "dim": self.embedder.dim})

    def writer(self) -> CollectionWriter:
        """A writer for this collection (enter it to take the lock)."""
        return CollectionWriter(self.settings, self.store, self.info, self.embedder.model_id, self.embedder.dim)

    def ingest(
        self,
        paths: Iterable[Path],
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        fail_fast: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and directories (see :class:`indexer.sources.FileSource`).

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
        paths = list(paths)
        source = FileSource(paths, include=include, exclude=exclude, max_file_bytes=self.settings.ingest.max_file_bytes)
        return self.ingest_source(source, [str(p) for p in paths], fail_fast=fail_fast, progress=progress)

    def ingest_source(
        self, source: Source, label: list[str], *, fail_fast: bool = False, progress: Progress | None = None
    ) -> IngestReport:
        """Ingest every document a :class:`~rag.interfaces.Source` yields.

        Args:
            source: where the documents come from.
            label: what the ingestion job records as its input (paths, a URI).
            fail_fast: stop at the first failure.
            progress: callback for progress bars.

        Raises:
            CollectionBusyError: another process is writing to this collection.
        """
        report = IngestReport()
        t0 = time.perf_counter()
        with self.writer() as writer:
            rec = writer.reconciled
            report.reconciled = rec.__dict__ if rec.changed else {}
            job_id = self.store.start_job(self.info.id, label)
            try:
                self._run(writer, job_id, self._documents(source, report, fail_fast), report, progress)
                report.seconds = time.perf_counter() - t0
            except BaseException:
                report.seconds = time.perf_counter() - t0
                try:
                    self.store.finish_job(job_id, "failed", report.as_json())
                except Exception:  # the original error matters more
                    pass
                raise
            report.add_write(writer.commit())
        report.seconds = time.perf_counter() - t0
        self.store.finish_job(job_id, "done", report.as_json())
        return report

    def _documents(self, source: Source, report: IngestReport, fail_fast: bool) -> Iterator[Document]:
        it = source.iter_documents()
        while True:
            with _Timer(report, "load"):
                item = next(it, None)
            if item is None:
                return
            if isinstance(item, LoadFailure):
                report.fail(item.path, item.reason)
                if fail_fast:
                    return
                continue
            yield item

    def _run(
        self, writer: CollectionWriter, job_id: int, docs: Iterator[Document], report: IngestReport,
        progress: Progress | None,
    ) -> None:
        batch: list[Document] = []
        seen: set[str] = set()
        batch_size = self.settings.ingest.batch_documents
        for doc in docs:
            if doc.external_id in seen:
                report.fail(doc.source, f"duplicate document id {doc.external_id!r} in this ingest; first kept")
                continue
            seen.add(doc.external_id)
            batch.append(doc)
            if len(batch) >= batch_size:
                self._write_batch(writer, job_id, batch, report, progress)
                batch = []
        if batch:
            self._write_batch(writer, job_id, batch, report, progress)

    def _write_batch(
        self, writer: CollectionWriter, job_id: int, batch: list[Document], report: IngestReport,
        progress: Progress | None,
    ) -> None:
        with _Timer(report, "db"):
            active = writer.existing([d.external_id for d in batch])
        todo: list[tuple[Document, str, list, int | None]] = []
        with _Timer(report, "chunk"):
            for doc in batch:
                sha = content_sha256(doc)
                prev = active.get(doc.external_id)
                if prev is not None and prev.sha256 == sha:
                    report.documents_unchanged += 1
                    continue
                chunks = self.chunker.chunk(doc)
                if not chunks:
                    report.fail(doc.source if doc.source != doc.external_id else doc.external_id, "document has no text")
                    continue
                todo.append((doc, sha, chunks, prev.id if prev else None))
        written = 0
        if todo:
            texts = [embedding_text(doc.title, c.text) for doc, _sha, chunks, _r in todo for c in chunks]
            with _Timer(report, "embed"):
                vectors = self.embedder.embed_documents(texts)
            versions, offset = [], 0
            for doc, sha, chunks, replaces in todo:
                n = len(chunks)
                versions.append(DocumentVersion(doc, sha, chunks, vectors[offset : offset + n], replaces, texts[offset : offset + n]))
                offset += n
            w = writer.write(versions, job_id=job_id)
            report.add_write(w)
            written = len(texts)
        if progress:
            progress(len(batch), written)
