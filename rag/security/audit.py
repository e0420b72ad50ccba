"""The audit log: one ``audit_log`` row per API call, written in batches by a background thread.

A request only appends to an in-memory list; the writer thread flushes it every ``interval_s``
or when ``batch`` entries are waiting, so a call pays no database round trip. :meth:`AuditLog.flush`
writes what is waiting now (tests and shutdown use it). If the database stops answering, at most
``max_pending`` entries are kept and the oldest are dropped, counted in :attr:`AuditLog.dropped`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select

from rag.index.store import utcnow
from rag.security.keys import AuditRow, KeyRing, _aware

if TYPE_CHECKING:
    from rag.index.store import Store

log = logging.getLogger(__name__)

_INSERT = insert(AuditRow.__table__)

AAD_QUERY = b"audit_log.query"
"""Associated data of an encrypted ``audit_log.query``: a value moved to another column does not decrypt."""


@dataclass(frozen=True)
class AuditEntry:
    """One call, as recorded.

    Attributes:
        key_id: the managed key's id; None for a bootstrap key or no key.
        key_hash: SHA-256 of a bootstrap key (``RAG_API_KEYS``), else empty.
        method: HTTP method.
        route: the route's template, e.g. ``/v1/collections/{name}/documents/{document_id}``.
        collection: the collection the call named, if any.
        status: HTTP status sent.
        duration_ms: time to the response's start.
        query: the query text, only when ``RAG_API__AUDIT_QUERIES`` is on.
        created_at: when the call arrived.
    """

    key_id: int | None
    key_hash: str
    method: str
    route: str
    collection: str | None
    status: int
    duration_ms: float = 0.0
    query: str | None = None
    created_at: datetime = field(default_factory=utcnow)


class AuditLog:
    """Batched writer of :class:`AuditEntry` rows.

    Args:
        store: the database.
        keys: updated with each batch's ``last_used_at``; optional.
        interval_s: seconds between flushes.
        batch: flush early once this many entries wait.
        max_pending: entries kept while the database is unreachable.
    """

    def __init__(
        self, store: Store, keys: KeyRing | None = None, *, interval_s: float = 0.25, batch: int = 500,
        max_pending: int = 50_000,
    ) -> None:
        self.store, self.keys = store, keys
        self.interval_s, self.batch, self.max_pending = interval_s, batch, max_pending
        self.dropped = 0
        self._pending: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AuditLog:
        """Start the writer thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="audit-writer", daemon=True)
            self._thread.start()
        return self

    def record(self, entry: AuditEntry) -> None:
        """Queue one entry; never blocks on the database. The writer thread starts with the first entry."""
        if self._thread is None and not self._stop.is_set():
            with self._lock:
                if self._thread is None:
                    self.start()
        with self._lock:
            self._pending.append(entry)
            over = len(self._pending) - self.max_pending
            if over > 0:
                del self._pending[:over]
                self.dropped += over
            full = len(self._pending) >= self.batch
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every waiting entry now.

        Returns:
            How many rows were written.
        """
        with self._write_lock:
            with self._lock:
                entries, self._pending = self._pending, []
            if not entries:
                return 0
            try:
                self._write(entries)
            except Exception:  # noqa: BLE001 - the writer must survive a database outage
                log.exception("audit log: %d entries not written; will retry", len(entries))
                with self._lock:
                    self._pending[:0] = entries
                return 0
            return len(entries)

    def _write(self, entries: Sequence[AuditEntry]) -> None:
        cipher = getattr(self.store, "cipher", None)  # encryption at rest covers the query text too

        def seal(query: str | None) -> str | None:
            return query if query is None or cipher is None else cipher.encrypt_text(query, AAD_QUERY)

        rows = [
            {
                "key_id": e.key_id, "key_hash": e.key_hash, "method": e.method[:8], "route": e.route[:200],
                "collection": e.collection[:200] if e.collection else None, "status": e.status,
                "duration_ms": e.duration_ms, "query": seal(e.query), "created_at": e.created_at,
            }
            for e in entries
        ]
        # A Core insert of the table: the ORM's bulk path cost a Python call per row, under the serving GIL.
        with self.store.engine.begin() as conn:
            conn.execute(_INSERT, rows)
        if self.keys is not None:
            last: dict[int, datetime] = {}
            for e in entries:
                if e.key_id is not None and (e.key_id not in last or e.created_at > last[e.key_id]):
                    last[e.key_id] = e.created_at
            self.keys.touch(last)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def prune(self, older_than: timedelta) -> int:
        """Delete the rows written more than ``older_than`` ago; returns how many went.

        The service never prunes on its own: the retention rule is the operator's
        (``rag keys audit --prune 90d``).
        """
        cutoff = utcnow() - older_than
        with self.store.session() as s, s.begin():
            return int(s.execute(delete(AuditRow).where(AuditRow.created_at < cutoff)).rowcount or 0)

    def rows(self, limit: int = 1000) -> list[AuditEntry]:
        """The newest rows written, newest first (for tests and ``rag keys audit``)."""
        with self.store.session() as s:
            found = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()
        cipher = getattr(self.store, "cipher", None)

        def unseal(query: str | None) -> str | None:
            return query if query is None or cipher is None else cipher.decrypt_text(query, AAD_QUERY)

        return [
            AuditEntry(
                key_id=r.key_id, key_hash=r.key_hash, method=r.method, route=r.route, collection=r.collection,
                status=r.status, duration_ms=r.duration_ms, query=unseal(r.query), created_at=_aware(r.created_at) or r.created_at,
            )
            for r in found
        ]
