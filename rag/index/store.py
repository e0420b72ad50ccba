"""The database: the source of truth for collections, documents, chunks and their vectors.

FAISS and tantivy are derived from it and can be rebuilt from it. A document's
``state`` drives crash safety (see ``docs/decisions.md``): rows are written as
``pending``, become ``active`` in one transaction once both indexes hold their
chunks durably, and turn ``deleted`` (a tombstone) when replaced or removed.
Searches only ever return chunks of ``active`` documents.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DataError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from rag.errors import InputError, NotFoundError
from rag.types import Chunk, ChunkDraft, Document, Filters, Judgment

if TYPE_CHECKING:
    # numpy is imported where it is used: the commands that only list or count (``rag collections``,
    # ``rag documents``) answer without paying for it.
    import numpy as np

    from rag.security.crypto import DataCipher

PENDING, ACTIVE, DELETED = "pending", "active", "deleted"

# The context each encrypted column is bound to (AES-GCM associated data): a ciphertext copied
# into another column does not decrypt.
_AAD_TEXT = b"chunks.text"
_AAD_SECTION = b"chunks.section"
_AAD_SECTIONS = b"chunks.sections"
_AAD_EMBEDDING = b"chunks.embedding"
_AAD_TITLE = b"documents.title"
_AAD_META = b"documents.metadata"
_AAD_QUERY = b"feedback.query"

_Id = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class CollectionRow(Base):
    """A named collection; API keys are scoped to these."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DocumentRow(Base):
    """One version of a document. At most one active version per (collection, external id)."""

    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    external_id: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    # Which of its collection's shards indexes it (rag.index.shards.shard_of); 0 when unsharded.
    shard: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    job_id: Mapped[int | None] = mapped_column(_Id, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    chunks: Mapped[list[ChunkRow]] = relationship(back_populates="document", passive_deletes=True)

    __table_args__ = (
        Index(
            "uq_documents_active_key",
            "collection_id",
            "external_id",
            unique=True,
            sqlite_where=(state == ACTIVE),
            postgresql_where=(state == ACTIVE),
        ),
        Index("ix_documents_collection_state", "collection_id", "state"),
        Index("ix_documents_collection_external", "collection_id", "external_id"),
        Index("ix_documents_collection_shard_state", "collection_id", "shard", "state"),
    )


class ChunkRow(Base):
    """A chunk of one document version, with its embedding (float32 bytes)."""

    __tablename__ = "chunks"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), nullable=False, index=True)
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    char_start: Mapped[int] = mapped_column(Integer, nullable=False)
    char_end: Mapped[int] = mapped_column(Integer, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, nullable=False)
    section: Mapped[str] = mapped_column(Text, default="")
    sections: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    document: Mapped[DocumentRow] = relationship(back_populates="chunks")


class IngestionJobRow(Base):
    """One run of ``rag ingest``: what it was asked and what it did."""

    __tablename__ = "ingestion_jobs"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="running")
    paths: Mapped[list[str]] = mapped_column(JSON, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FeedbackRow(Base):
    """An end user's relevance judgment of a chunk for a query."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    query: Mapped[str] = mapped_column(Text, nullable=False)
    chunk_id: Mapped[int] = mapped_column(_Id, nullable=False)
    relevant: Mapped[bool] = mapped_column(nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's id, name and settings."""

    id: int
    name: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class ActiveDoc:
    """The active version of a document: its id and content hash."""

    id: int
    sha256: str


@dataclass(frozen=True)
class StagedDoc:
    """A pending document version written by :meth:`Store.stage`."""

    document_id: int
    chunk_ids: tuple[int, ...]
    replaces: int | None


@dataclass(frozen=True)
class DocumentSummary:
    """One stored version of a document, as ``rag documents`` shows it.

    Attributes:
        id: database id of this version.
        external_id: key inside the collection.
        source: where it came from (an absolute path for files).
        title: its title.
        state: ``active``, ``pending`` or ``deleted``.
        sha256: the change-detection hash it was written with.
        chunks: number of chunks of this version.
        metadata: its metadata.
        created_at: when this version was staged.
        updated_at: when its state last changed.
    """

    id: int
    external_id: str
    source: str
    title: str
    state: str
    sha256: str
    chunks: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored, for display: its id and its draft fields."""

    chunk_id: int
    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    section: str


def content_sha256(doc: Document, settings_key: str = "") -> str:
    """Hash of everything that ends up in the indexes: title, text, metadata, sections.

    Args:
        doc: the document.
        settings_key: the settings that shape its chunks and vectors (chunk size, overlap,
            embedding model; see :func:`indexer.pipeline.chunking_key`). When given, it and the
            document's ``source`` are folded in, so a change of either re-processes the document;
            ``""`` gives the hash written before settings were part of it.

    Returns:
        64 hex digits.
    """
    import json

    h = hashlib.sha256()
    h.update(doc.title.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(doc.text.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(json.dumps(doc.metadata, sort_keys=True, default=str).encode())
    h.update(json.dumps(doc.sections).encode())
    if settings_key:
        h.update(b"\x00")
        h.update(doc.source.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        h.update(settings_key.encode("utf-8"))
    return h.hexdigest()


# The reads of every search, built once: a statement object keeps its cache key, so SQLAlchemy does not
# build and hash it again per request.
_COLLECTION_BY_NAME = select(CollectionRow.id, CollectionRow.name, CollectionRow.settings).where(
    CollectionRow.name == bindparam("name")
)
_HIDDEN_DOCS = select(DocumentRow.id).where(
    DocumentRow.collection_id == bindparam("collection_id"), DocumentRow.state.in_([PENDING, DELETED])
)
_HYDRATE = (
    select(ChunkRow.id, ChunkRow.section, ChunkRow.ordinal, ChunkRow.char_start, ChunkRow.char_end,
           ChunkRow.text, ChunkRow.sections, DocumentRow.id, DocumentRow.external_id, DocumentRow.source,
           DocumentRow.title, DocumentRow.meta, CollectionRow.name)
    .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
    .join(CollectionRow, DocumentRow.collection_id == CollectionRow.id)
    .where(
        ChunkRow.id.in_(bindparam("ids", expanding=True)),
        DocumentRow.state == ACTIVE,
        DocumentRow.collection_id == bindparam("collection_id"),
    )
)

SQLITE_POOL = 32
"""Connections an SQLite engine keeps open (and as many more it may open under a burst)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        pool = {}  # an in-memory database lives in one connection, whose pool takes no sizes
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Every request thread of a busy server holds a connection while it searches: with SQLAlchemy's
            # default 5 + 10, connections beyond 5 were closed on return and opened again (with their pragmas
            # and a cold page cache) by the next request, a fifth of a search's CPU at 32 clients.
            pool = {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_POOL}
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=\n]*)?=\s*(.+)$", re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration's revision id, read from the files; None when there is not exactly one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev = _REVISION.search(source)
        if rev is None:
            continue
        revisions.add(rev.group(1))
        down = _DOWN_REVISION.search(source)
        if down is not None:
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is already at the newest migration (read from ``alembic_version``)."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            versions = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except SQLAlchemyError:
        return False
    return versions == [head]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision.

    A database already there is left alone without importing Alembic, which costs more than a
    second of every short command (``rag collections``, ``rag stats``).
    """
    if schema_is_current(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection_engine"] = engine
    command.upgrade(cfg, "head")


class Store:
    """Typed access to the database. One instance per process; thread-safe sessions.

    Document states change only through :class:`~rag.index.writer.CollectionWriter`.

    Example:
        >>> import tempfile
        >>> store = Store(f"sqlite:///{tempfile.mkdtemp()}/rag.db")
        >>> info = store.ensure_collection("handbook")
        >>> info.name, [c.name for c in store.collections()]
        ('handbook', ['handbook'])
        >>> store.stats(info.id)
        {'documents': 0, 'pending': 0, 'deleted': 0, 'chunks': 0}
        >>> store.close()
    """

    def __init__(self, url: str, *, run_migrations: bool = True, cipher: DataCipher | None = None) -> None:
        """Connect (and migrate).

        Args:
            url: SQLAlchemy URL.
            run_migrations: bring the schema to the newest revision first.
            cipher: with one (see :func:`rag.security.crypto.open_cipher`), chunk texts, sections,
                vectors, document titles and metadata and feedback queries are written encrypted
                and decrypted on read; metadata filters then run in Python.
        """
        self.url = url
        self.cipher = cipher
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new session; use as a context manager."""
        return self._session()

    def reading(self) -> Connection:
        """A pooled connection for the reads of every search (a context manager): Core statements over a
        connection cost a third of the same through an ORM session, e.g. 34 against 145 µs for
        :meth:`collection` on SQLite."""
        return self.engine.connect()

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    # encryption at rest: identity when no cipher is set ---------------------------------------

    def _seal(self, value: str, aad: bytes) -> str:
        return value if self.cipher is None else self.cipher.encrypt_text(value, aad)

    def _open(self, value: str | None, aad: bytes) -> str:
        if self.cipher is None or value is None:
            return value or ""
        return self.cipher.decrypt_text(value, aad)

    def _seal_json(self, value: Any, aad: bytes) -> Any:
        return value if self.cipher is None or value is None else self.cipher.encrypt_json(value, aad)

    def _open_json(self, value: Any, aad: bytes) -> Any:
        return value if self.cipher is None or value is None else self.cipher.decrypt_json(value, aad)

    def _vector(self, blob: bytes) -> bytes:
        return blob if self.cipher is None else self.cipher.decrypt(blob, _AAD_EMBEDDING)

    def _seal_bytes(self, blob: bytes) -> bytes:
        return blob if self.cipher is None else self.cipher.encrypt(blob, _AAD_EMBEDDING)

    def reencrypt(self, batch: int = 1000) -> dict[str, int]:
        """Re-encrypt every encrypted value under the cipher's current key (a key rotation).

        Values already under the current key are left alone, so an interrupted rotation resumes
        where it stopped. Each page of rows is one transaction.

        Returns:
            Rows rewritten, per table.

        Raises:
            DecryptionError: a value does not decrypt with any key of the keyring, or is plaintext.
        """
        from rag.security.audit import AAD_QUERY as AUDIT_AAD_QUERY
        from rag.security.crypto import DataCipher
        from rag.security.keys import AuditRow

        cipher = self.cipher
        if cipher is None:
            raise InputError("cipher", "the store has no cipher; set RAG_ENCRYPTION__KEY_FILE")
        current = cipher.current_key_id

        def rewrap(value: Any, aad: bytes, kind: str) -> Any:
            if kind == "bytes":
                return cipher.encrypt(cipher.decrypt(value, aad), aad)
            if kind == "json":
                return cipher.encrypt_json(cipher.decrypt_json(value, aad), aad)
            return cipher.encrypt_text(cipher.decrypt_text(value, aad), aad)

        tables: tuple[tuple[str, Any, tuple[tuple[str, bytes, str], ...]], ...] = (
            ("chunks", ChunkRow, (
                ("text", _AAD_TEXT, "text"), ("section", _AAD_SECTION, "text"),
                ("sections", _AAD_SECTIONS, "json"), ("embedding", _AAD_EMBEDDING, "bytes"),
            )),
            ("documents", DocumentRow, (("title", _AAD_TITLE, "text"), ("meta", _AAD_META, "json"))),
            ("feedback", FeedbackRow, (("query", _AAD_QUERY, "text"),)),
            ("audit_log", AuditRow, (("query", AUDIT_AAD_QUERY, "text"),)),
        )
        counts = {name: 0 for name, _, _ in tables}
        for name, table, columns in tables:
            last = 0
            while True:
                with self.session() as s, s.begin():
                    rows = s.scalars(select(table).where(table.id > last).order_by(table.id).limit(batch)).all()
                    if not rows:
                        break
                    for row in rows:
                        changed = False
                        for attr, aad, kind in columns:
                            value = getattr(row, attr)
                            if value is None:
                                continue
                            key_id = DataCipher.key_id_of(value) if kind == "bytes" else DataCipher.text_key_id(value)
                            if key_id != current:
                                setattr(row, attr, rewrap(value, aad, kind))
                                changed = True
                        counts[name] += int(changed)
                    last = int(rows[-1].id)
        return counts

    # collections ---------------------------------------------------------------------------

    def collection(self, name: str) -> CollectionInfo:
        """The collection called ``name``.

        Raises:
            NotFoundError: if there is none.
        """
        with self.reading() as c:
            row = c.execute(_COLLECTION_BY_NAME, {"name": name}).first()
        if row is None:
            raise NotFoundError("collection", f"collection {name!r} does not exist")
        return CollectionInfo(row.id, row.name, dict(row.settings or {}))

    def ensure_collection(self, name: str) -> CollectionInfo:
        """The collection called ``name``, created when missing."""
        _check_collection_name(name)
        try:
            return self.collection(name)
        except NotFoundError:
            pass
        with self.session() as s, s.begin():
            s.add(CollectionRow(name=name, settings={}))
        return self.collection(name)

    def collections(self) -> list[CollectionInfo]:
        """All collections, by name."""
        with self.session() as s:
            rows = s.scalars(select(CollectionRow).order_by(CollectionRow.name)).all()
            return [CollectionInfo(r.id, r.name, dict(r.settings or {})) for r in rows]

    def update_collection_settings(self, name: str, settings: dict[str, Any]) -> None:
        """Merge ``settings`` into a collection's stored settings."""
        with self.session() as s, s.begin():
            row = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
            if row is None:
                raise NotFoundError("collection", f"collection {name!r} does not exist")
            row.settings = {**(row.settings or {}), **settings}

    def drop_collection(self, name: str) -> None:
        """Delete a collection and all its rows."""
        info = self.collection(name)
        with self.session() as s, s.begin():
            doc_ids = select(DocumentRow.id).where(DocumentRow.collection_id == info.id)
            s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(doc_ids)))
            s.execute(delete(DocumentRow).where(DocumentRow.collection_id == info.id))
            s.execute(delete(IngestionJobRow).where(IngestionJobRow.collection_id == info.id))
            s.execute(delete(FeedbackRow).where(FeedbackRow.collection_id == info.id))
            s.execute(delete(CollectionRow).where(CollectionRow.id == info.id))

    # ingestion -----------------------------------------------------------------------------

    def active_docs(self, collection_id: int, external_ids: Sequence[str]) -> dict[str, ActiveDoc]:
        """Active versions of the given documents, by external id."""
        out: dict[str, ActiveDoc] = {}
        ids = list(dict.fromkeys(external_ids))
        with self.session() as s:
            for i in range(0, len(ids), 500):
                rows = s.execute(
                    select(DocumentRow.external_id, DocumentRow.id, DocumentRow.sha256).where(
                        DocumentRow.collection_id == collection_id,
                        DocumentRow.state == ACTIVE,
                        DocumentRow.external_id.in_(ids[i : i + 500]),
                    )
                )
                for ext, doc_id, sha in rows:
                    out[ext] = ActiveDoc(doc_id, sha)
        return out

    def stage(
        self,
        collection_id: int,
        job_id: int | None,
        items: Sequence[tuple[Document, str, Sequence[ChunkDraft], np.ndarray, int | None]],
        shards: Sequence[int] | None = None,
    ) -> list[StagedDoc]:
        """Write documents and their chunks as ``pending``, in one transaction.

        Args:
            collection_id: target collection.
            job_id: the ingestion job writing them.
            items: (document, sha256, chunks, vectors (n_chunks, dim), id of the version it replaces).
            shards: the shard of each item in its collection (all 0 when None).

        Returns:
            One :class:`StagedDoc` per item, in order, with the new chunk ids.
        """
        import numpy as np

        staged: list[StagedDoc] = []
        with self.session() as s, s.begin():
            for pos, (doc, sha, drafts, vectors, replaces) in enumerate(items):
                row = DocumentRow(
                    collection_id=collection_id,
                    external_id=doc.external_id,
                    source=doc.source,
                    sha256=sha,
                    title=self._seal(doc.title, _AAD_TITLE),
                    meta=self._seal_json(doc.metadata, _AAD_META),
                    state=PENDING,
                    shard=shards[pos] if shards is not None else 0,
                    job_id=job_id,
                )
                s.add(row)
                s.flush()
                chunk_rows = [
                    ChunkRow(
                        document_id=row.id,
                        ordinal=d.ordinal,
                        text=self._seal(d.text, _AAD_TEXT),
                        char_start=d.char_start,
                        char_end=d.char_end,
                        token_count=d.token_count,
                        section=self._seal(d.section, _AAD_SECTION),
                        sections=self._seal_json([list(s) for s in d.sections] or None, _AAD_SECTIONS),
                        embedding=self._seal_bytes(np.ascontiguousarray(vectors[i], dtype=np.float32).tobytes()),
                    )
                    for i, d in enumerate(drafts)
                ]
                s.add_all(chunk_rows)
                s.flush()
                staged.append(StagedDoc(row.id, tuple(c.id for c in chunk_rows), replaces))
        return staged

    def activate(self, staged: Sequence[StagedDoc]) -> None:
        """Make staged versions searchable and tombstone the versions they replace, atomically."""
        if not staged:
            return
        replaced = [d.replaces for d in staged if d.replaces is not None]
        with self.session() as s, s.begin():
            if replaced:
                s.execute(update(DocumentRow).where(DocumentRow.id.in_(replaced)).values(state=DELETED))
            s.execute(
                update(DocumentRow)
                .where(DocumentRow.id.in_([d.document_id for d in staged]))
                .values(state=ACTIVE, updated_at=utcnow())
            )

    def tombstone(
        self,
        collection_id: int,
        *,
        external_id: str | None = None,
        source_prefix: str | None = None,
        external_ids: Sequence[str] | None = None,
    ) -> int:
        """Mark active documents deleted, by external id, source prefix or a list of external ids.

        A list is marked in one transaction.

        Returns:
            How many documents were marked.
        """
        if external_id is None and source_prefix is None and external_ids is None:
            raise InputError("document", "give a document id or a source prefix")
        cond = [DocumentRow.collection_id == collection_id, DocumentRow.state == ACTIVE]
        if external_id is not None:
            cond.append(DocumentRow.external_id == external_id)
        if source_prefix is not None:
            cond.append(DocumentRow.source.startswith(source_prefix, autoescape=True))
        ids = list(dict.fromkeys(external_ids or ()))
        parts = [ids[i : i + 500] for i in range(0, len(ids), 500)] if external_ids is not None else [None]
        marked = 0
        with self.session() as s, s.begin():
            for part in parts:
                where = cond if part is None else [*cond, DocumentRow.external_id.in_(part)]
                result = s.execute(update(DocumentRow).where(*where).values(state=DELETED, updated_at=utcnow()))
                marked += int(result.rowcount or 0)
        return marked

    def docs_in_state(self, collection_id: int, state: str, shard: int | None = None) -> list[int]:
        """Ids of the collection's documents in ``state`` (of one shard when ``shard`` is given)."""
        cond = [DocumentRow.collection_id == collection_id, DocumentRow.state == state, *_in_shard(shard)]
        with self.session() as s:
            return list(s.scalars(select(DocumentRow.id).where(*cond)))

    def shard_chunk_ids(self, chunk_ids: Sequence[int]) -> dict[int, list[int]]:
        """The given chunk ids grouped by the shard of their document."""
        out: dict[int, list[int]] = {}
        ids = [int(i) for i in chunk_ids]
        with self.session() as s:
            for i in range(0, len(ids), 500):
                rows = s.execute(
                    select(ChunkRow.id, DocumentRow.shard)
                    .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                    .where(ChunkRow.id.in_(ids[i : i + 500]))
                )
                for cid, shard in rows:
                    out.setdefault(int(shard), []).append(int(cid))
        return out

    def chunk_ids_of_docs(self, doc_ids: Sequence[int]) -> np.ndarray:
        """Chunk ids belonging to the given documents."""
        import numpy as np

        out: list[int] = []
        with self.session() as s:
            for i in range(0, len(doc_ids), 500):
                out.extend(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(doc_ids[i : i + 500]))))
        return np.asarray(sorted(out), dtype=np.int64)

    def hidden_chunk_ids(self, collection_id: int) -> np.ndarray:
        """Chunk ids that may be in an index but must not be returned (pending or deleted documents)."""
        import numpy as np

        # Two indexed lookups instead of a join: the usual answer is "none", found without touching chunks.
        with self.reading() as c:
            doc_ids = list(c.execute(_HIDDEN_DOCS, {"collection_id": collection_id}).scalars())
        if not doc_ids:
            return np.zeros(0, dtype=np.int64)
        return self.chunk_ids_of_docs(doc_ids)

    def purge(self, doc_ids: Sequence[int]) -> None:
        """Delete document rows and their chunks for good."""
        with self.session() as s, s.begin():
            for i in range(0, len(doc_ids), 500):
                part = list(doc_ids[i : i + 500])
                s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(part)))
                s.execute(delete(DocumentRow).where(DocumentRow.id.in_(part)))

    def _pages(
        self, columns: tuple[Any, ...], collection_id: int, states: Sequence[str], batch: int, shard: int | None
    ) -> Iterator[list[Any]]:
        """Rows of ``columns`` (chunk id first) for the collection's chunks in ``states``, by id, a page at a time."""
        last = 0
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(*columns)
                    .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                    .where(
                        DocumentRow.collection_id == collection_id,
                        DocumentRow.state.in_(list(states)),
                        *_in_shard(shard),
                        ChunkRow.id > last,
                    )
                    .order_by(ChunkRow.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            last = int(rows[-1][0])
            yield rows

    def iter_vectors(
        self, collection_id: int, states: Sequence[str] = (ACTIVE,), batch: int = 5000, shard: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (chunk ids, vectors) of the collection's chunks in the given document states (and shard)."""
        import numpy as np

        for rows in self._pages((ChunkRow.id, ChunkRow.embedding), collection_id, states, batch, shard):
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(self._vector(r[1]), dtype=np.float32) for r in rows])

    def iter_lexical(
        self, collection_id: int, states: Sequence[str] = (ACTIVE,), batch: int = 5000, shard: int | None = None
    ) -> Iterator[list[tuple[int, str, str]]]:
        """Stream (chunk id, title, text) of the collection's chunks in the given states (and shard)."""
        columns = (ChunkRow.id, DocumentRow.title, ChunkRow.text)
        for rows in self._pages(columns, collection_id, states, batch, shard):
            yield [(int(r[0]), self._open(r[1], _AAD_TITLE), self._open(r[2], _AAD_TEXT)) for r in rows]

    def chunk_ids(self, collection_id: int, states: Sequence[str], shard: int | None = None) -> np.ndarray:
        """All chunk ids of the collection's documents in the given states (and shard), sorted."""
        import numpy as np

        cond = [DocumentRow.collection_id == collection_id, DocumentRow.state.in_(list(states)), *_in_shard(shard)]
        with self.session() as s:
            ids = s.scalars(
                select(ChunkRow.id)
                .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                .where(*cond)
                .order_by(ChunkRow.id)
            ).all()
        return np.asarray(ids, dtype=np.int64)

    # jobs ----------------------------------------------------------------------------------

    def start_job(self, collection_id: int, paths: Sequence[str]) -> int:
        """Record a new ingestion job; returns its id."""
        with self.session() as s, s.begin():
            row = IngestionJobRow(collection_id=collection_id, paths=list(paths), status="running")
            s.add(row)
            s.flush()
            return int(row.id)

    def finish_job(self, job_id: int, status: str, summary: dict[str, Any]) -> None:
        """Record how a job ended."""
        with self.session() as s, s.begin():
            s.execute(
                update(IngestionJobRow)
                .where(IngestionJobRow.id == job_id)
                .values(status=status, summary=summary, finished_at=utcnow())
            )

    def interrupt_running_jobs(self, collection_id: int) -> int:
        """Mark jobs left ``running`` by a killed process as ``interrupted``."""
        with self.session() as s, s.begin():
            r = s.execute(
                update(IngestionJobRow)
                .where(IngestionJobRow.collection_id == collection_id, IngestionJobRow.status == "running")
                .values(status="interrupted", finished_at=utcnow())
            )
            return int(r.rowcount or 0)

    # queries -------------------------------------------------------------------------------

    def hydrate(self, collection_id: int, chunk_ids: Iterable[int]) -> dict[int, Chunk]:
        """Chunks of active documents in the collection, by id; other ids are left out."""
        ids = list(dict.fromkeys(int(i) for i in chunk_ids))
        if not ids:
            return {}
        out: dict[int, Chunk] = {}
        with self.reading() as c:
            # Columns, not entities: building ORM objects took 2 of the 2.9 ms of a search's hydrate.
            rows = c.execute(_HYDRATE, {"ids": ids, "collection_id": collection_id}).all()
        # a document's title and metadata are decrypted once, however many of its chunks are hit
        docs: dict[int, tuple[str, dict[str, Any]]] = {}
        for cid, section, ordinal, start, end, text, sections, did, ext, source, dtitle, dmeta, name in rows:
            if did not in docs:
                docs[did] = (self._open(dtitle, _AAD_TITLE), dict(self._open_json(dmeta, _AAD_META) or {}))
            title, meta = docs[did]
            out[cid] = Chunk(
                chunk_id=cid,
                document_id=did,
                collection=name,
                external_id=ext,
                source=source,
                title=title,
                section=self._open(section, _AAD_SECTION),
                ordinal=ordinal,
                char_start=start,
                char_end=end,
                text=self._open(text, _AAD_TEXT),
                metadata=dict(meta),
                sections=tuple((int(o), str(p)) for o, p in (self._open_json(sections, _AAD_SECTIONS) or ())),
            )
        return out

    def allowed_chunk_ids(self, collection_id: int, filters: Filters) -> np.ndarray:
        """Chunk ids of active documents that pass ``filters``.

        Raises:
            InputError: naming the filter field, for values the database cannot compare.
        """
        import numpy as np

        cond = [DocumentRow.collection_id == collection_id, DocumentRow.state == ACTIVE]
        if filters.source_prefix:
            cond.append(DocumentRow.source.startswith(filters.source_prefix, autoescape=True))
        meta_cond = [c for key, spec in filters.metadata.items() for c in _metadata_conditions(key, spec)]
        if self.cipher is not None and (filters.metadata or filters.date_from or filters.date_to):
            return self._allowed_decrypted(cond, filters)
        cond.extend(meta_cond)
        if filters.date_from or filters.date_to:
            field = DocumentRow.meta[filters.date_field].as_string()
            if filters.date_from:
                cond.append(field >= filters.date_from)
            if filters.date_to:
                # an ISO date "to" bound includes that whole day
                upper = filters.date_to + ("\uffff" if len(filters.date_to) <= 10 else "")
                cond.append(field <= upper)
        try:
            with self.session() as s:
                ids = s.scalars(
                    select(ChunkRow.id).join(DocumentRow, ChunkRow.document_id == DocumentRow.id).where(*cond)
                ).all()
        except (DataError, ProgrammingError) as exc:
            raise InputError("filters", f"cannot apply filters: {str(exc.orig).splitlines()[0]}") from None
        return np.asarray(sorted(ids), dtype=np.int64)

    def _allowed_decrypted(self, cond: list[Any], filters: Filters) -> np.ndarray:
        """Metadata is ciphertext: the database selects by the clear columns, each candidate's metadata is tested here.

        This reads and decrypts the metadata of every active document of the collection that the
        clear conditions keep, which is fine for collections of up to some hundred thousand documents.
        """
        import numpy as np

        with self.session() as s:
            docs = s.execute(select(DocumentRow.id, DocumentRow.meta).where(*cond)).all()
            keep = [int(d) for d, meta in docs if _metadata_matches(self._open_json(meta, _AAD_META) or {}, filters)]
            ids: list[int] = []
            for i in range(0, len(keep), 500):
                ids.extend(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(keep[i : i + 500]))))
        return np.asarray(sorted(ids), dtype=np.int64)

    def stats(self, collection_id: int) -> dict[str, int]:
        """Counts of documents by state and of chunks of active documents."""
        with self.session() as s:
            by_state = dict(
                s.execute(
                    select(DocumentRow.state, func.count())
                    .where(DocumentRow.collection_id == collection_id)
                    .group_by(DocumentRow.state)
                ).all()
            )
            chunks = s.scalar(
                select(func.count(ChunkRow.id))
                .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                .where(DocumentRow.collection_id == collection_id, DocumentRow.state == ACTIVE)
            )
        return {
            "documents": int(by_state.get(ACTIVE, 0)),
            "pending": int(by_state.get(PENDING, 0)),
            "deleted": int(by_state.get(DELETED, 0)),
            "chunks": int(chunks or 0),
        }

    def documents(
        self,
        collection_id: int,
        *,
        states: Sequence[str] = (ACTIVE,),
        external_ids: Sequence[str] | None = None,
        source_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[DocumentSummary]:
        """The collection's document versions in ``states``, by external id then age, with chunk counts.

        Args:
            collection_id: the collection.
            states: document states to include.
            external_ids: only these documents.
            source_prefix: only documents whose source starts with this.
            limit: at most this many.

        Returns:
            One summary per stored version.
        """
        counts = (
            select(ChunkRow.document_id.label("doc_id"), func.count(ChunkRow.id).label("n"))
            .group_by(ChunkRow.document_id)
            .subquery()
        )
        query = (
            select(DocumentRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.doc_id == DocumentRow.id)
            .where(DocumentRow.collection_id == collection_id, DocumentRow.state.in_(list(states)))
            .order_by(DocumentRow.external_id, DocumentRow.id)
        )
        if external_ids is not None:
            query = query.where(DocumentRow.external_id.in_(list(dict.fromkeys(external_ids))))
        if source_prefix is not None:
            query = query.where(DocumentRow.source.startswith(source_prefix, autoescape=True))
        if limit is not None:
            query = query.limit(limit)
        with self.session() as s:
            rows = s.execute(query).all()
        return [
            DocumentSummary(
                id=int(d.id), external_id=d.external_id, source=d.source, title=self._open(d.title, _AAD_TITLE),
                state=d.state, sha256=d.sha256, chunks=int(n),
                metadata=dict(self._open_json(d.meta, _AAD_META) or {}), created_at=d.created_at,
                updated_at=d.updated_at,
            )
            for d, n in rows
        ]

    def document_keys(self, collection_id: int) -> list[tuple[str, str]]:
        """(external id, source) of every active document of the collection, by external id."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.external_id, DocumentRow.source)
                .where(DocumentRow.collection_id == collection_id, DocumentRow.state == ACTIVE)
                .order_by(DocumentRow.external_id)
            ).all()
        return [(e, src) for e, src in rows]

    def document_chunks(self, document_id: int) -> list[StoredChunk]:
        """The chunks of one document version, in order."""
        with self.session() as s:
            rows = s.execute(
                select(
                    ChunkRow.id, ChunkRow.ordinal, ChunkRow.text, ChunkRow.char_start, ChunkRow.char_end,
                    ChunkRow.token_count, ChunkRow.section,
                )
                .where(ChunkRow.document_id == document_id)
                .order_by(ChunkRow.ordinal)
            ).all()
        return [
            StoredChunk(
                int(i), int(o), self._open(t, _AAD_TEXT), int(a), int(b), int(n), self._open(sec, _AAD_SECTION)
            )
            for i, o, t, a, b, n, sec in rows
        ]

    def document_vectors(self, document_id: int) -> np.ndarray:
        """The stored vectors of one document version's chunks, in chunk order, shape ``(n, dim)``."""
        import numpy as np

        with self.session() as s:
            blobs = list(
                s.scalars(
                    select(ChunkRow.embedding).where(ChunkRow.document_id == document_id).order_by(ChunkRow.ordinal)
                )
            )
        if not blobs or any(b is None for b in blobs):
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(self._vector(b), dtype=np.float32) for b in blobs])

    def chunk_vectors(self, chunk_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The stored vectors of these chunks, by id, in one query; ids without a stored vector are left out."""
        import numpy as np

        ids = list(dict.fromkeys(int(i) for i in chunk_ids))
        if not ids:
            return {}
        with self.session() as s:
            rows = s.execute(select(ChunkRow.id, ChunkRow.embedding).where(ChunkRow.id.in_(ids))).all()
        return {int(i): np.frombuffer(self._vector(b), dtype=np.float32) for i, b in rows if b is not None}

    def feedback(self, collection_id: int) -> list[Judgment]:
        """The collection's feedback judgments, oldest first."""
        with self.session() as s:
            rows = s.execute(
                select(FeedbackRow.query, FeedbackRow.chunk_id, FeedbackRow.relevant)
                .where(FeedbackRow.collection_id == collection_id)
                .order_by(FeedbackRow.id)
            ).all()
        return [Judgment(query=self._open(q, _AAD_QUERY), chunk_id=int(c), relevant=bool(r)) for q, c, r in rows]

    def add_feedback(self, collection_id: int, query: str, chunk_id: int, relevant: bool, key_hash: str) -> int:
        """Store an end user's judgment; returns its id."""
        with self.session() as s, s.begin():
            row = FeedbackRow(
                collection_id=collection_id, query=self._seal(query, _AAD_QUERY), chunk_id=chunk_id,
                relevant=relevant, key_hash=key_hash,
            )
            s.add(row)
            s.flush()
            return int(row.id)


def _metadata_conditions(key: str, spec: Any) -> list[Any]:
    param = f"filters.metadata.{key}"
    if not key or len(key) > 100:
        raise InputError(param, "metadata keys must be 1 to 100 characters")
    col = DocumentRow.meta[key]
    if isinstance(spec, dict):
        conds: list[Any] = []
        for op, bound in spec.items():
            if op == "in":
                if not isinstance(bound, list) or not bound or len(bound) > 1000:
                    raise InputError(param, "'in' takes a list of 1 to 1000 values")
                if all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bound):
                    conds.append(col.as_float().in_([float(b) for b in bound]))
                else:
                    conds.append(col.as_string().in_([str(b) for b in bound]))
            elif op in ("gte", "gt", "lte", "lt"):
                if isinstance(bound, bool) or not isinstance(bound, (int, float, str)):
                    raise InputError(param, f"'{op}' takes a number or a string")
                target = col.as_float() if isinstance(bound, (int, float)) else col.as_string()
                value = float(bound) if isinstance(bound, (int, float)) else bound
                conds.append(
                    {"gte": target >= value, "gt": target > value, "lte": target <= value, "lt": target < value}[op]
                )
            else:
                raise InputError(param, f"unknown operator {op!r}; valid: in | gte | gt | lte | lt")
        return conds
    if isinstance(spec, bool):
        return [col.as_boolean() == spec]
    if isinstance(spec, (int, float)):
        return [col.as_float() == float(spec)]
    if isinstance(spec, str):
        return [col.as_string() == spec]
    raise InputError(param, "a metadata filter is a value, {'in': [...]} or a range like {'gte': 1}")


_MISSING = object()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _value_matches(value: Any, spec: Any) -> bool:
    """Python twin of :func:`_metadata_conditions` (already validated), for decrypted metadata."""
    if isinstance(spec, dict):
        for op, bound in spec.items():
            if op == "in":
                if all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bound):
                    if _number(value) not in {float(b) for b in bound}:
                        return False
                elif not (isinstance(value, str) and value in {str(b) for b in bound}):
                    return False
                continue
            if isinstance(bound, (int, float)):
                left, right = _number(value), float(bound)
            else:
                left, right = (value if isinstance(value, str) else None), bound
            if left is None:
                return False
            ok = {"gte": left >= right, "gt": left > right, "lte": left <= right, "lt": left < right}[op]
            if not ok:
                return False
        return True
    if isinstance(spec, bool):
        return isinstance(value, bool) and value == spec
    if isinstance(spec, (int, float)):
        return _number(value) == float(spec)
    return isinstance(value, str) and value == spec


def _metadata_matches(meta: dict[str, Any], filters: Filters) -> bool:
    """Whether decrypted metadata passes the filters' metadata and date conditions."""
    for key, spec in filters.metadata.items():
        value = meta.get(key, _MISSING)
        if value is _MISSING or not _value_matches(value, spec):
            return False
    if filters.date_from or filters.date_to:
        value = meta.get(filters.date_field)
        if not isinstance(value, str):
            return False
        if filters.date_from and value < filters.date_from:
            return False
        if filters.date_to and value > filters.date_to + ("\uffff" if len(filters.date_to) <= 10 else ""):
            return False
    return True


def _in_shard(shard: int | None) -> list[Any]:
    """The condition restricting documents to one shard, or none."""
    return [] if shard is None else [DocumentRow.shard == shard]


def _check_collection_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or ""):
        raise InputError(
            "collection", f"invalid collection name {name!r}: use 1-100 letters, digits, '_', '.', '-'"
        )
