"""The admin endpoints' work: collections, documents, stats, and uploads that run as ingestion jobs.

The write operations come from ``indexer/`` through :class:`AdminBackend`, which ``rag serve``
passes in (``api/`` may not import ``indexer/``). An upload is saved under
``<data dir>/uploads/<collection>/`` and ingested from there by the same ``Ingestor`` that
``rag ingest`` runs, in a background thread; :class:`JobBoard` keeps each job's progress and
outcome in memory for ``GET /v1/admin/jobs/{id}`` (the ``ingestion_jobs`` table records every
job too). One writer per collection is enforced twice: this server refuses a second job for a
collection it is already writing, and the collection's writer lock refuses another process.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.schemas import (
    AdminCollectionOut,
    AdminCollectionsResponse,
    AdminDeleteResponse,
    AdminDocumentOut,
    AdminDocumentsResponse,
    AdminDropResponse,
    AdminLimits,
    AdminStatusResponse,
    ErrorBody,
    JobFileOut,
    JobOut,
    JobProgressOut,
    JobsResponse,
)
from rag.config import Settings
from rag.errors import NotFoundError, RagError
from rag.index.collection import CollectionBusyError
from rag.index.store import ACTIVE, DELETED, PENDING, Store
from rag.privacy import parse_kinds

log = logging.getLogger(__name__)

MAX_FILES = 100
"""Files one upload may hold."""

KEPT_JOBS = 200
"""Finished jobs remembered for ``GET /v1/admin/jobs``."""


class IngestProgressLike(Protocol):
    """What an ingest reports as it goes (:class:`indexer.pipeline.IngestProgress`)."""

    files_done: int
    files_total: int | None
    documents: int
    chunks: int
    seconds: float

    @property
    def eta_s(self) -> float | None: ...


class AdminBackend(Protocol):
    """The write side of administration; :class:`indexer.service.AdminOperations` implements it."""

    def formats(self) -> list[str]:
        """The file suffixes ingestion reads."""
        ...

    def stats(self, collection: str) -> Mapping[str, Any]:
        """``rag stats --json`` of one collection."""
        ...

    def drop(self, collection: str) -> None:
        """Delete a collection with its rows and index files."""
        ...

    def delete(self, collection: str, external_id: str) -> int:
        """Delete one document through the collection's writer."""
        ...

    def ingest(
        self, collection: str, paths: Sequence[Path], progress: Callable[[IngestProgressLike], None]
    ) -> Mapping[str, Any]:
        """``rag ingest`` of these files; returns the ``--json`` summary."""
        ...


def upload_limit(settings: Settings) -> int:
    """The largest upload request: one file at the per-file limit, plus the usual body allowance.

    Larger files inside that are still skipped and named by ingestion, as ``rag ingest`` does.
    """
    return settings.ingest.max_file_bytes + settings.api.max_body_bytes


def safe_name(name: str | None) -> str | None:
    """The file name an upload is saved under: its last path part, or None when it is unusable."""
    if not name:
        return None
    base = PurePosixPath(name.replace("\\", "/")).name.strip()
    if base in ("", ".", "..") or base.startswith(".") or len(base.encode()) > 200:
        return None
    if any(ord(ch) < 32 or ch == "\x7f" for ch in base):
        return None
    return base


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Job:
    """One upload's ingestion, as it runs; :meth:`out` is its schema.

    Attributes:
        id: the job's id.
        collection: where it writes.
        files: the uploaded names.
        folder: where the uploads were saved.
        failures: files refused before ingestion (bad names) and files ingestion could not use.
    """

    id: str
    collection: str
    files: list[str]
    folder: Path
    failures: list[JobFileOut] = field(default_factory=list)
    status: str = "queued"
    progress: JobProgressOut = field(default_factory=JobProgressOut)
    summary: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorBody | None = None
    created_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None

    def report(self, p: IngestProgressLike) -> None:
        """Take an ingest progress report."""
        eta = p.eta_s
        self.progress = JobProgressOut(
            files_done=p.files_done, files_total=p.files_total, documents=p.documents, chunks=p.chunks,
            seconds=round(p.seconds, 3), eta_s=None if eta is None else round(eta, 1),
        )

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Record the ingest summary; its failures are named by the uploaded file."""
        self.summary = summary
        for failure in summary.get("failures", []):
            self.failures.append(JobFileOut(file=self._name(str(failure["path"])), reason=str(failure["reason"])))
        self.status, self.finished_at = "done", _now()

    def fail(self, error: ErrorBody) -> None:
        """Record why the job stopped."""
        self.error, self.status, self.finished_at = error, "failed", _now()

    def _name(self, path: str) -> str:
        prefix = str(self.folder) + os.sep
        return path[len(prefix) :] if path.startswith(prefix) else path

    def out(self) -> JobOut:
        """The job as ``GET /v1/admin/jobs/{id}`` shows it."""
        s = self.summary
        return JobOut(
            id=self.id, collection=self.collection, status=self.status, files=list(self.files),  # type: ignore[arg-type]
            progress=self.progress, documents_added=int(s.get("documents_added", 0)),
            documents_updated=int(s.get("documents_updated", 0)) + int(s.get("documents_rechunked", 0)),
            documents_unchanged=int(s.get("documents_unchanged", 0)), documents_failed=len(self.failures),
            chunks_added=int(s.get("chunks_added", 0)), failures=list(self.failures), error=self.error,
            created_at=self.created_at, finished_at=self.finished_at,
        )


class JobBoard:
    """This server's ingestion jobs and which collection each one is writing. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._writing: dict[str, str] = {}

    def claim(self, job: Job) -> None:
        """Register a job as the writer of its collection.

        Raises:
            ApiError: 409 ``busy`` when another job of this server is writing to it.
        """
        with self._lock:
            running = self._writing.get(job.collection)
            if running is not None:
                raise busy(job.collection, f"ingestion job {running} is writing to it")
            self._writing[job.collection] = job.id
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished_at is not None]
            for old in sorted(finished, key=lambda j: j.created_at)[: max(0, len(finished) - KEPT_JOBS)]:
                del self._jobs[old.id]

    def release(self, job: Job) -> None:
        """The job no longer writes."""
        with self._lock:
            if self._writing.get(job.collection) == job.id:
                del self._writing[job.collection]

    def writing(self, collection: str) -> str | None:
        """The id of the job writing to ``collection``, if any."""
        with self._lock:
            return self._writing.get(collection)

    def get(self, job_id: str) -> JobOut:
        """A job's state.

        Raises:
            ApiError: 404 for an unknown id.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ApiError(404, f"no ingestion job {job_id!r} on this server", "not_found_error", "job_id", "not_found")
            return job.out()

    def all(self) -> list[JobOut]:
        """Every remembered job, newest first."""
        with self._lock:
            return [j.out() for j in sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)]


def busy(collection: str, why: str) -> ApiError:
    """The 409 of a collection that already has a writer."""
    return ApiError(409, f"collection {collection!r} is busy: {why}; try again when it finishes", "conflict_error", "collection", "busy")


class AdminService:
    """Collections, documents, stats and upload jobs for the admin endpoints.

    Args:
        settings: limits and the data directory (uploads are kept under it).
        store: the database, for the reads.
        backend: the write operations; None in an app built without them (every admin call is then 503).
    """

    def __init__(self, settings: Settings, store: Store, backend: AdminBackend | None) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.jobs = JobBoard()

    def _ops(self) -> AdminBackend:
        if self.backend is None:
            raise ApiError(
                503, "admin operations are not available in this process; start the server with `rag serve`",
                "service_unavailable", None, "admin_unavailable",
            )
        return self.backend

    def upload_dir(self, collection: str) -> Path:
        """Where uploads to ``collection`` are kept; their paths are the documents' ids."""
        return (self.settings.data_dir / "uploads" / collection).resolve()

    async def status(self, granted_by: str) -> AdminStatusResponse:
        """The caller may administer; what an upload may hold."""
        limits = AdminLimits(
            max_file_bytes=self.settings.ingest.max_file_bytes, max_upload_bytes=upload_limit(self.settings),
            max_files=MAX_FILES, formats=self._ops().formats(),
        )
        return AdminStatusResponse(granted_by=granted_by, limits=limits)

    def _collection(self, name: str) -> AdminCollectionOut:
        stats = self._ops().stats(name)
        info = self.store.collection(name)
        counts = self.store.stats(info.id)
        return AdminCollectionOut(
            redact=list(info.settings.get("redact") or ()),
            name=name, documents=int(stats["documents"]), pending=counts["pending"], deleted=counts["deleted"],
            chunks=int(stats["chunks"]), vectors=int(stats.get("vectors", 0)), tombstones=int(stats.get("tombstones", 0)),
            lexical_docs=int(stats.get("lexical_docs", 0)), index_type=stats.get("index_type"),
            bytes=int(stats.get("bytes", 0)), embedding_model=stats.get("embedding_model"),
            busy=self.jobs.writing(name) is not None,
        )

    async def collections(self) -> AdminCollectionsResponse:
        """Every collection with its counts."""
        self._ops()

        def load() -> list[AdminCollectionOut]:
            return [self._collection(info.name) for info in self.store.collections()]

        return AdminCollectionsResponse(collections=await run_in_threadpool(load))

    async def stats(self, name: str) -> AdminCollectionOut:
        """One collection's counts.

        Raises:
            NotFoundError: no such collection.
        """
        self._ops()
        return await run_in_threadpool(self._collection, name)

    async def create(self, name: str, redact: Sequence[str] = ()) -> AdminCollectionOut:
        """Create an empty collection.

        Args:
            name: its name.
            redact: kinds of personal data replaced by placeholders at ingestion.

        Raises:
            ApiError: 409 when it exists.
            InputError: an invalid name or an unknown kind in ``redact``.
        """
        self._ops()
        kinds = parse_kinds(redact, "redact")

        def make() -> AdminCollectionOut:
            try:
                self.store.collection(name)
            except NotFoundError:
                self.store.ensure_collection(name)
                if kinds:
                    self.store.update_collection_settings(name, {"redact": list(kinds)})
                return AdminCollectionOut(name=name, documents=0, chunks=0, redact=list(kinds))
            raise ApiError(409, f"collection {name!r} already exists", "conflict_error", "name", "exists")

        return await run_in_threadpool(make)

    async def drop(self, name: str) -> AdminDropResponse:
        """Drop a collection with its documents, indexes and uploaded files.

        Raises:
            ApiError: 409 while a job of this server writes to it.
            NotFoundError: no such collection.
        """
        ops = self._ops()
        running = self.jobs.writing(name)
        if running is not None:
            raise busy(name, f"ingestion job {running} is writing to it")

        def remove() -> None:
            import shutil

            ops.drop(name)
            shutil.rmtree(self.upload_dir(name), ignore_errors=True)

        await run_in_threadpool(remove)
        return AdminDropResponse(dropped=name)

    async def documents(self, name: str, all_states: bool) -> AdminDocumentsResponse:
        """The collection's documents (or every stored version) with state and chunk counts.

        Raises:
            NotFoundError: no such collection.
        """
        self._ops()

        def load() -> list[AdminDocumentOut]:
            info = self.store.collection(name)
            states = (ACTIVE, PENDING, DELETED) if all_states else (ACTIVE,)
            return [
                AdminDocumentOut(
                    id=d.id, external_id=d.external_id, source=d.source, title=d.title, state=d.state,  # type: ignore[arg-type]
                    chunks=d.chunks, metadata=d.metadata, created_at=d.created_at, updated_at=d.updated_at,
                )
                for d in self.store.documents(info.id, states=states)
            ]

        return AdminDocumentsResponse(collection=name, documents=await run_in_threadpool(load))

    async def delete(self, name: str, document_id: int) -> AdminDeleteResponse:
        """Delete the active document with this id, through the collection's writer.

        Raises:
            ApiError: 404 when no active document has the id; 409 while a job of this server writes.
            CollectionBusyError: another process holds the writer lock (409 ``busy``).
        """
        ops = self._ops()
        running = self.jobs.writing(name)
        if running is not None:
            raise busy(name, f"ingestion job {running} is writing to it")

        def remove() -> int:
            info = self.store.collection(name)
            match = [d for d in self.store.documents(info.id) if d.id == document_id]
            if not match:
                raise ApiError(
                    404, f"no active document {document_id} in collection {name!r}", "not_found_error", "document_id", "not_found"
                )
            return ops.delete(name, match[0].external_id)

        return AdminDeleteResponse(deleted=await run_in_threadpool(remove))

    async def upload(self, collection: str, files: Sequence[tuple[str | None, BinaryIO]]) -> JobOut:
        """Save uploaded files and start ingesting them in the background.

        Raises:
            ApiError: 422 for no files or too many; 409 ``busy`` while a job of this server writes.
            NotFoundError: no such collection.
        """
        ops = self._ops()
        if not files:
            raise ApiError(422, "files: upload at least one file", "invalid_request_error", "files", "invalid_value")
        if len(files) > MAX_FILES:
            raise ApiError(422, f"files: at most {MAX_FILES} per upload", "invalid_request_error", "files", "too_many")
        await run_in_threadpool(self.store.collection, collection)
        folder = self.upload_dir(collection)
        job = Job(uuid.uuid4().hex[:12], collection, [name or "" for name, _f in files], folder)
        self.jobs.claim(job)
        try:
            paths = await run_in_threadpool(self._save, job, files)
        except BaseException:
            self.jobs.release(job)
            raise
        threading.Thread(target=self._run, args=(ops, job, paths), name=f"ingest-{job.id}", daemon=True).start()
        return job.out()

    def _save(self, job: Job, files: Sequence[tuple[str | None, BinaryIO]]) -> list[Path]:
        """Write each usable upload into the job's folder (atomically); name the ones refused."""
        job.folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for name, stream in files:
            base = safe_name(name)
            if base is None:
                job.failures.append(JobFileOut(file=name or "", reason="unusable file name"))
                continue
            target = job.folder / base
            if target in paths:
                job.failures.append(JobFileOut(file=base, reason="the same name twice in one upload; the first was kept"))
                continue
            tmp = job.folder / f".{base}.{job.id}.part"
            with open(tmp, "wb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, target)
            paths.append(target)
        return paths

    def _run(self, ops: AdminBackend, job: Job, paths: list[Path]) -> None:
        try:
            job.status = "running"
            if paths:
                job.finish(ops.ingest(job.collection, paths, job.report))
            else:
                job.finish({})
        except CollectionBusyError as exc:
            job.fail(ErrorBody(message=str(exc), type="conflict_error", param="collection", code="busy"))
        except RagError as exc:
            job.fail(ErrorBody(message=str(exc), type="invalid_request_error", code=type(exc).__name__))
        except Exception:  # a job thread reports; it never takes the server down
            log.exception("ingestion job %s failed", job.id)
            job.fail(ErrorBody(message="internal error; see the server log", type="server_error"))
        finally:
            self._drop_originals(job.collection, paths)
            self.jobs.release(job)

    def _drop_originals(self, collection: str, paths: list[Path]) -> None:
        """Keep no uploaded file for a redacting collection or an encrypted store.

        The original holds the personal data that redaction removed, or the text that encryption
        protects; only the collection's redacted or encrypted chunks are kept.
        """
        try:
            redacts = bool(self.store.collection(collection).settings.get("redact"))
        except NotFoundError:
            redacts = False
        if redacts or getattr(self.store, "cipher", None) is not None:
            for path in paths:
                path.unlink(missing_ok=True)

    async def job(self, job_id: str) -> JobOut:
        """One job's progress and outcome."""
        self._ops()
        return self.jobs.get(job_id)

    async def all_jobs(self) -> JobsResponse:
        """This server's recent jobs."""
        self._ops()
        return JobsResponse(jobs=self.jobs.all())
