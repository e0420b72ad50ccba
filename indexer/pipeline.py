"""The ingestion pipeline: source, parse, chunk, embed, then the collection's writer, over batches.

Atomic per document and safe under ``kill -9``: see :mod:`rag.index.writer`.

Change detection keys on :func:`~rag.index.store.content_sha256` of each document folded with
:func:`chunking_key`, the settings that shape its chunks and vectors: a document is skipped as
``unchanged`` only when neither its content nor those settings changed since it was written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.sources import FileSource
from rag.chunking import Chunker, embedding_text
from rag.config import ChunkingConfig, Settings
from rag.embedding import Embedder
from rag.errors import InputError
from rag.index.store import DocumentSummary, Store, content_sha256
from rag.index.writer import CollectionWriter, DocumentVersion, WriteReport
from rag.interfaces import Source
from rag.privacy import Redactor, redact_document
from rag.types import ChunkDraft, Document, JsonDict, LoadFailure

if TYPE_CHECKING:
    import numpy as np

STAGES = ("load", "chunk", "embed", "db", "dense", "lexical")

FILE_METADATA_KEYS = ("path", "format", "modified")
"""Metadata keys a file's document always carries; ``--metadata`` may not set them."""

_KEPT_SETTINGS_KEYS = 8  # earlier chunking settings remembered, to tell "rechunked" from "updated"


CHUNK_FORMAT = 2
"""Version of what a stored chunk holds; raising it re-processes every document on its next ingest."""


def chunking_key(chunking: ChunkingConfig, model_id: str, max_seq_length: int, redact: Sequence[str] = ()) -> str:
    """The settings that shape a document's chunks and vectors, as canonical JSON.

    Folded into each document's change-detection hash, so that changing ``RAG_CHUNKING__SIZE``,
    ``RAG_CHUNKING__OVERLAP`` or the embedding model re-processes documents that did not change.

    Args:
        chunking: chunk size and overlap.
        model_id: the embedding model.
        max_seq_length: the model's token limit, which caps the chunk size.
        redact: the collection's redacted kinds; turning redaction on or changing its kinds
            re-processes every document (absent when empty, so older keys still match).
    """
    key: dict[str, object] = {
        "size": chunking.size,
        "overlap": chunking.overlap,
        "embedding_model": model_id,
        "max_seq_length": max_seq_length,
        # 2: chunks record the sections inside them (migration 0002); older ones are re-chunked.
        "chunk_format": CHUNK_FORMAT,
    }
    if redact:
        key["redact"] = list(redact)
    return json.dumps(key, sort_keys=True)


@dataclass
class IngestReport:
    """What an ingest did; ``as_json`` is the ``rag ingest --json`` summary.

    Attributes:
        documents_added: new documents.
        documents_updated: documents whose content changed.
        documents_rechunked: documents whose content did not change but the chunking settings did.
        documents_renamed: documents found under a new path with the same content (``--sync``).
        documents_deleted: documents whose files are gone, deleted (``--sync``).
        documents_unchanged: documents skipped because nothing changed.
        documents_failed: files or lines that could not be used.
        chunks_added: chunks written.
        failures: ``{"path", "reason"}`` of each failure.
        skipped: ``{"path", "reason"}`` of each file under a directory left out for its type.
        renamed: ``{"from", "to"}`` external ids of each rename.
        deleted: external ids deleted by ``--sync``.
        chunking: the settings that shaped the chunks (see :func:`chunking_key`).
        redactions: values replaced by placeholders before chunking, per kind (the collection's
            ``--redact``); counts only, never the values.
    """

    documents_added: int = 0
    documents_updated: int = 0
    documents_rechunked: int = 0
    documents_renamed: int = 0
    documents_deleted: int = 0
    documents_unchanged: int = 0
    documents_failed: int = 0
    chunks_added: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    chunking: dict[str, object] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    seconds: float = 0.0
    reconciled: dict[str, object] = field(default_factory=dict)

    def fail(self, path: str, reason: str) -> None:
        """Record a file or line that was skipped."""
        self.documents_failed += 1
        self.failures.append({"path": path, "reason": reason})

    def add_write(self, w: WriteReport) -> None:
        """Count the chunks and seconds of what the writer did (documents are counted by kind here)."""
        self.chunks_added += w.chunks_added
        self.timings_s["db"] += w.db_s
        self.timings_s["dense"] += w.dense_s
        self.timings_s["lexical"] += w.lexical_s

    def as_json(self) -> dict[str, object]:
        """The summary object printed by ``rag ingest --json``."""
        return {
            "documents_added": self.documents_added,
            "documents_updated": self.documents_updated,
            "documents_rechunked": self.documents_rechunked,
            "documents_renamed": self.documents_renamed,
            "documents_deleted": self.documents_deleted,
            "documents_unchanged": self.documents_unchanged,
            "documents_failed": self.documents_failed,
            "chunks_added": self.chunks_added,
            "failures": self.failures,
            "skipped": self.skipped,
            "renamed": self.renamed,
            "deleted": self.deleted,
            "chunking": self.chunking,
            "redactions": dict(sorted(self.redactions.items())),
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class IngestProgress:
    """Where a running ingest is, for a progress bar.

    Attributes:
        files_done: files whose documents are all handled (embedded, unchanged or failed).
        files_total: files to load (None when the source cannot count them up front).
        documents: documents handled so far, in finished batches.
        chunks: chunks embedded or re-used so far.
        seconds: since the ingest started.
    """

    files_done: int
    files_total: int | None
    documents: int
    chunks: int
    seconds: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average pace since the start, or None before the first file."""
        if not self.files_total or not self.files_done:
            return None
        return self.seconds * (self.files_total - self.files_done) / self.files_done


Progress = Callable[[IngestProgress], None]
"""Called at the start, after each embedding batch, after each written batch and at the end."""


class _Timer:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings_s[self.stage] += time.perf_counter() - self.t0


def _content_key(texts: Sequence[str]) -> str:
    """What a rename keeps: the chunk texts (the title may be the file's stem, which a rename changes)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A document's chunks, and their vectors when already embedded, computed by another worker."""

    chunks: list[ChunkDraft]
    vectors: np.ndarray | None = None


@dataclass
class _Todo:
    """A document of a batch that will be written: its chunks, and its vectors once embedded."""

    pos: int
    doc: Document
    sha: str
    chunks: list[ChunkDraft]
    texts: list[str]
    replaces: int | None
    kind: str
    vectors: np.ndarray | None


def _under(source: str, root: str) -> bool:
    return source == root or source.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class _Run:
    """The state of one ingest: counters for progress, and what ``--sync`` may delete or re-key.

    :meth:`loaded` tells how many files the source has finished reading; each document carries
    that count from when it was read (its "mark"), so the files handled are those up to the last
    document whose vectors are computed, however far reading has run ahead into the batch.
    """

    report: IngestReport
    progress: Progress | None
    files: FileSource | None
    files_total: int | None
    metadata: Mapping[str, object]
    earlier_keys: list[str]
    t0: float = field(default_factory=time.perf_counter)
    read: int = 0
    documents: int = 0
    files_handled: int = 0
    chunks: int = 0
    seen: set[str] = field(default_factory=set)
    gone: dict[str, DocumentSummary] = field(default_factory=dict)
    gone_by_content: dict[str, list[str]] = field(default_factory=dict)
    replaced: set[int] = field(default_factory=set)

    def loaded(self) -> int:
        """Files the source has finished reading (documents read, for a source without files)."""
        return self.files.files_done if self.files is not None else self.read

    def tick(self) -> None:
        if self.progress is not None:
            seconds = time.perf_counter() - self.t0
            self.progress(IngestProgress(self.files_handled, self.files_total, self.documents, self.chunks, seconds))

    def take_renamed(self, key: str) -> DocumentSummary | None:
        """A document whose file is gone and whose content has this key, taken out of ``gone``."""
        for ext in self.gone_by_content.get(key, ()):
            doc = self.gone.pop(ext, None)
            if doc is not None:
                return doc
        return None


class Ingestor:
    """Ingests documents into one collection.

    Args:
        settings: service settings.
        store: the database.
        embedder: the embedder (warmed up here).
        collection: collection name.
        create: create the collection when missing (``False`` raises instead).

    Raises:
        NotFoundError: the collection does not exist and ``create`` is false.

    Example:
        >>> report = Ingestor(settings, store, Embedder(settings.embedding), "handbook").ingest([Path("data")])  # doctest: +SKIP
        >>> report.as_json()["documents_added"]  # doctest: +SKIP
        10
    """

    def __init__(
        self, settings: Settings, store: Store, embedder: Embedder, collection: str, *, create: bool = True
    ) -> None:
        self.settings = settings
        self.store = store
        self.info = store.ensure_collection(collection) if create else store.collection(collection)
        self.embedder = embedder.warm_up()
        self.chunker = Chunker(settings.chunking, self.embedder.tokenizer, self.embedder.max_seq_length)
        # Personal data is replaced before chunking, hashing and embedding: the original reaches no store.
        self.redactor = Redactor(self.info.settings.get("redact") or (), region=settings.privacy.phone_region)
        self.settings_key = chunking_key(
            settings.chunking, self.embedder.model_id, self.embedder.max_seq_length, self.redactor.kinds
        )
        self._ready: dict[str, Prepared] = {}
        """Chunks (and vectors) computed elsewhere for documents still to be written, by external id:
        a distributed engine fills it, :meth:`_write_batch` takes from it instead of chunking and
        embedding again."""
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
        sync: bool = False,
        metadata: Mapping[str, object] | None = None,
    ) -> IngestReport:
        """Ingest files and directories (see :class:`indexer.sources.FileSource`).

        Args:
            paths: files or directories (read recursively).
            include: globs a file must match (relative path or name).
            exclude: globs that skip a file.
            fail_fast: stop at the first bad file.
            progress: callback for progress bars.
            sync: also delete the collection's documents under ``paths`` whose files are gone; a
                new file with the same content as one that is gone is that document renamed, kept
                as one document under its new path.
            metadata: added to every document (JSON-serialisable values).

        Returns:
            The report; failures are listed, never raised.

        Raises:
            CollectionBusyError: another process is writing to this collection.
            InputError: ``metadata`` sets a key every file carries (``path``, ``format``, ``modified``).
        """
        paths = list(paths)
        source = FileSource(paths, include=include, exclude=exclude, max_file_bytes=self.settings.ingest.max_file_bytes)
        roots = [Path(p).resolve() for p in paths] if sync else None
        return self.ingest_source(
            source, [str(p) for p in paths], fail_fast=fail_fast, progress=progress, sync_roots=roots, metadata=metadata
        )

    def ingest_source(
        self,
        source: Source,
        label: list[str],
        *,
        fail_fast: bool = False,
        progress: Progress | None = None,
        sync_roots: Sequence[Path] | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> IngestReport:
        """Ingest every document a :class:`~rag.interfaces.Source` yields.

        A :class:`~indexer.sources.FileSource` also gets its files counted up front for
        ``progress`` and its skipped files listed in the report.

        Args:
            source: where the documents come from.
            label: what the ingestion job records as its input (paths, a URI).
            fail_fast: stop at the first failure.
            progress: callback for progress bars.
            sync_roots: absolute resolved paths; the collection's documents whose source is under
                one of them and no longer exists are deleted, or re-keyed when renamed (see
                :meth:`ingest`).
            metadata: added to every document.

        Raises:
            CollectionBusyError: another process is writing to this collection.
            InputError: ``metadata`` sets a key every file carries.
        """
        extra = dict(metadata or {})
        reserved = sorted(set(extra) & set(FILE_METADATA_KEYS))
        if reserved:
            raise InputError("metadata", f"{', '.join(reserved)} is set for every file and cannot be given")
        report = IngestReport(chunking=json.loads(self.settings_key) if self.settings_key else {})
        files = source if isinstance(source, FileSource) else None
        known = self.store.collection(self.info.name).settings.get("chunking_keys", [])
        run = _Run(
            report, progress, files, files.count_files() if files and progress else None, extra,
            [k for k in known if k != self.settings_key],
        )
        t0 = run.t0
        with self.writer() as writer:
            rec = writer.reconciled
            report.reconciled = rec.__dict__ if rec.changed else {}
            job_id = self.store.start_job(self.info.id, label)
            try:
                if sync_roots is not None:
                    self._find_gone(run, sync_roots)
                run.tick()
                self._run(writer, job_id, self._documents(source, run, fail_fast), run)
                if run.gone:
                    report.deleted = sorted(run.gone)
                    report.documents_deleted = writer.delete_many(report.deleted)
                report.seconds = time.perf_counter() - t0
            except BaseException:
                report.seconds = time.perf_counter() - t0
                try:
                    self.store.finish_job(job_id, "failed", report.as_json())
                except Exception:  # the original error matters more
                    pass
                raise
            report.add_write(writer.commit())
            if files is not None:
                report.skipped = [{"path": s.path, "reason": s.reason} for s in files.skipped]
            self._remember_settings(run.earlier_keys)
        report.seconds = time.perf_counter() - t0
        run.files_handled = run.loaded()
        run.tick()
        self.store.finish_job(job_id, "done", report.as_json())
        return report

    def _remember_settings(self, earlier: list[str]) -> None:
        """Record this ingest's settings, so a later change can be reported as re-chunking."""
        keys = [self.settings_key, *earlier][:_KEPT_SETTINGS_KEYS]
        self.store.update_collection_settings(self.info.name, {"chunking_keys": keys})

    def _find_gone(self, run: _Run, roots: Sequence[Path]) -> None:
        """The active documents under ``roots`` whose source no longer exists, and their content keys."""
        for root in roots:
            for doc in self.store.documents(self.info.id, source_prefix=str(root)):
                if _under(doc.source, str(root)) and not os.path.exists(doc.source):
                    run.gone[doc.external_id] = doc
        for ext, doc in run.gone.items():
            texts = [c.text for c in self.store.document_chunks(doc.id)]
            run.gone_by_content.setdefault(_content_key(texts), []).append(ext)

    def _documents(self, source: Source, run: _Run, fail_fast: bool) -> Iterator[tuple[Document, int]]:
        """Each document with its mark (files finished when it was read)."""
        report = run.report
        it = source.iter_documents()
        while True:
            with _Timer(report, "load"):
                item = next(it, None)
            if item is None:
                return
            run.read += 1
            if isinstance(item, LoadFailure):
                report.fail(item.path, item.reason)
                run.documents += 1
                if fail_fast:
                    return
                continue
            if run.metadata:
                item = dataclasses.replace(item, metadata={**item.metadata, **run.metadata})
            if self.redactor:
                with _Timer(report, "load"):
                    item, counts = redact_document(self.redactor, item, keep=FILE_METADATA_KEYS)
                for kind, n in counts.items():
                    report.redactions[kind] = report.redactions.get(kind, 0) + n
            yield item, run.loaded()

    def _run(self, writer: CollectionWriter, job_id: int, docs: Iterator[tuple[Document, int]], run: _Run) -> None:
        batch: list[tuple[Document, int]] = []
        batch_size = self.settings.ingest.batch_documents
        for doc, mark in docs:
            if doc.external_id in run.seen:
                run.report.fail(doc.source, f"duplicate document id {doc.external_id!r} in this ingest; first kept")
                run.documents += 1
                continue
            run.seen.add(doc.external_id)
            # Its id is back (a JSONL line moved to another file): it is not gone.
            run.gone.pop(doc.external_id, None)
            batch.append((doc, mark))
            if len(batch) >= batch_size:
                self._write_batch(writer, job_id, batch, run)
                batch = []
        if batch:
            self._write_batch(writer, job_id, batch, run)

    @staticmethod
    def _same_content(doc: Document, written_sha: str, earlier_keys: list[str]) -> bool:
        """Whether ``doc`` is what was written, under settings used before (or before they were hashed)."""
        return any(content_sha256(doc, key) == written_sha for key in [*earlier_keys, ""])

    def _write_batch(self, writer: CollectionWriter, job_id: int, batch: list[tuple[Document, int]], run: _Run) -> None:
        report = run.report
        marks = [m for _d, m in batch]
        with _Timer(report, "db"):
            active = writer.existing([d.external_id for d, _m in batch])
        todo: list[_Todo] = []
        with _Timer(report, "chunk"):
            for pos, (doc, _mark) in enumerate(batch):
                sha = content_sha256(doc, self.settings_key)
                prev = active.get(doc.external_id)
                if prev is not None and prev.id in run.replaced:
                    prev = None  # already replaced by a rename in this ingest
                if prev is not None and prev.sha256 == sha:
                    report.documents_unchanged += 1
                    continue
                ready = self._ready.pop(doc.external_id, None)
                chunks = ready.chunks if ready is not None else self.chunker.chunk(doc)
                if not chunks:
                    report.fail(doc.source if doc.source != doc.external_id else doc.external_id, "document has no text")
                    continue
                kind, replaces, vectors = "added", None, None
                if prev is not None:
                    same = self._same_content(doc, prev.sha256, run.earlier_keys)
                    kind, replaces = ("rechunked" if same else "updated"), prev.id
                elif run.gone_by_content:
                    old = run.take_renamed(_content_key([c.text for c in chunks]))
                    if old is not None:
                        kind, replaces = "renamed", old.id
                        report.renamed.append({"from": old.external_id, "to": doc.external_id})
                        if old.title == doc.title:
                            # Same title and chunks under the same model: the stored vectors are this version's.
                            stored = self.store.document_vectors(old.id)
                            vectors = stored if stored.shape == (len(chunks), self.embedder.dim) else None
                if replaces is not None:
                    run.replaced.add(replaces)
                if ready is not None and ready.vectors is not None:
                    vectors = ready.vectors
                texts = [embedding_text(doc.title, c.text) for c in chunks]
                todo.append(_Todo(pos, doc, sha, chunks, texts, replaces, kind, vectors))
        self._embed(todo, marks, run)
        run.documents += len(batch)
        if todo:
            versions = [DocumentVersion(t.doc, t.sha, t.chunks, t.vectors, t.replaces, t.texts) for t in todo]
            for t in todo:
                setattr(report, f"documents_{t.kind}", getattr(report, f"documents_{t.kind}") + 1)
            report.add_write(writer.write(versions, job_id=job_id))
        run.files_handled = max(run.files_handled, marks[-1])
        run.tick()

    def _embed(self, todo: list[_Todo], marks: list[int], run: _Run) -> None:
        """Embed what has no vectors, one encoder batch at a time, reporting progress after each."""
        for t in todo:
            if t.vectors is not None:
                run.chunks += len(t.chunks)
        pending = [t for t in todo if t.vectors is None]

        def handled(k: int) -> int:
            # Files done while pending[k:] are still to embed: those of the documents before pending[k].
            if k == len(pending):
                return marks[-1]
            return marks[pending[k].pos - 1] if pending[k].pos else run.files_handled

        step = self.settings.embedding.batch_size
        start = 0
        while start < len(pending):
            end, n = start, 0
            while end < len(pending) and (n == 0 or n + len(pending[end].texts) <= step):
                n += len(pending[end].texts)
                end += 1
            group = pending[start:end]
            with _Timer(run.report, "embed"):
                vectors = self.embedder.embed_documents([x for t in group for x in t.texts])
            offset = 0
            for t in group:
                t.vectors = vectors[offset : offset + len(t.chunks)]
                offset += len(t.chunks)
            run.chunks += n
            run.files_handled = max(run.files_handled, handled(end))
            run.tick()
            start = end


def parse_metadata(pairs: Sequence[str]) -> JsonDict:
    """``KEY=VALUE`` pairs (``rag ingest --metadata``) as metadata; values are strings.

    Raises:
        InputError: a pair without ``=``, an empty or over-long key, or a key every file carries.
    """
    out: JsonDict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError("metadata", f"expected KEY=VALUE, got {pair!r}")
        if len(key) > 100:
            raise InputError("metadata", f"key {key[:20]!r}... is over 100 characters")
        if key in FILE_METADATA_KEYS:
            raise InputError("metadata", f"{key!r} is set for every file and cannot be given")
        out[key] = value
    return out
