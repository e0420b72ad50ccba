"""Managed API keys: stored only as hashes, with a scope, collections, an expiry and a rate limit.

A key is ``rag_`` followed by 43 URL-safe characters (32 random bytes from :mod:`secrets`). The
database keeps its SHA-256 and a short prefix for display, never the key. A fast hash is enough
here, unlike for passwords: a 256-bit random key cannot be guessed, so a slow KDF would add
nothing but latency, and an unsalted digest lets a request find its key by one indexed lookup.

Scopes nest: ``admin`` includes ``write``, which includes ``read`` (see :data:`SCOPES`).

:class:`KeyRing` caches what it read for ``cache_s`` seconds (0.5 by default), so a key revoked by
another process (``rag keys revoke``) is refused by a running server within a second; expiry is
checked against the clock on every call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from rag.errors import InputError, NotFoundError
from rag.index.store import Base, _Id, utcnow

if TYPE_CHECKING:
    from rag.index.store import Store

SCOPES = ("read", "write", "admin")
"""Scope levels, weakest first; each includes the ones before it."""

KEY_PREFIX = "rag_"
ALL_COLLECTIONS = "*"
"""``--collections '*'``: the key may use every collection, present and future."""


class ApiKeyRow(Base):
    """A managed API key; ``key_hash`` is the SHA-256 of the key, which is never stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scope: Mapped[str] = mapped_column(String(8), nullable=False, default="read")
    collections: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    rate: Mapped[str | None] = mapped_column(String(32), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditRow(Base):
    """One API call: who (key id, or the bootstrap key's hash), what route and collection, the status, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    key_id: Mapped[int | None] = mapped_column(_Id, nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    route: Mapped[str] = mapped_column(String(200), nullable=False)
    collection: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (Index("ix_audit_log_created_at", "created_at"), Index("ix_audit_log_key_id", "key_id"))


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


# parsing the command's options -------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def parse_scope(text: str, *, param: str = "scope") -> str:
    """``read | write | admin``.

    Raises:
        InputError: another value, listing the valid ones.
    """
    scope = text.strip().lower()
    if scope not in SCOPES:
        raise InputError(param, f"unknown scope {text!r}; valid: {' | '.join(SCOPES)}")
    return scope


def parse_duration(text: str | None, *, param: str = "expires") -> timedelta | None:
    """``30d``, ``12h``, ``15m``, ``90s`` or ``2w``; None or empty means no expiry.

    Raises:
        InputError: another form, or zero.
    """
    if text is None or not text.strip():
        return None
    m = _DURATION.match(text)
    if m is None or int(m.group(1)) == 0:
        raise InputError(param, f"{text!r} is not a lifetime: give a positive number and a unit (s, m, h, d, w), e.g. 30d")
    return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])


@dataclass(frozen=True)
class Rate:
    """A rate limit: ``count`` requests per ``period_s`` seconds (``20/s``, ``600/m``)."""

    count: float
    period_s: float

    @property
    def per_second(self) -> float:
        """Requests per second."""
        return self.count / self.period_s

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period_s]
        return f"{self.count:g}/{unit}"


def parse_rate(text: str | None, *, param: str = "rate") -> Rate | None:
    """``20/s``, ``600/m`` or ``5000/h``; None or empty means no limit.

    Raises:
        InputError: another form, or zero.
    """
    if text is None or not text.strip():
        return None
    m = _RATE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise InputError(param, f"{text!r} is not a rate: give a positive count per s, m or h, e.g. 20/s")
    return Rate(float(m.group(1)), _RATE_PERIODS[m.group(2)])


def parse_collections(text: str | Iterable[str], *, param: str = "collections") -> tuple[str, ...]:
    """Comma-separated collection names, or ``*`` for all of them.

    Raises:
        InputError: none given, or a name that no collection could have.
    """
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InputError(param, "name at least one collection (comma-separated), or '*' for all")
    if ALL_COLLECTIONS in names:
        return (ALL_COLLECTIONS,)
    for n in names:
        if not _COLLECTION.match(n):
            raise InputError(param, f"{n!r} is not a collection name (letters, digits, '_', '.', '-'; up to 100)")
    return tuple(dict.fromkeys(names))


# the key ring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """A managed key as listed: everything but the key itself.

    Attributes:
        id: the key's id (``rag keys revoke ID``).
        name: its label.
        prefix: its first characters, to recognise it.
        scope: ``read``, ``write`` or ``admin``.
        collections: the collections it may use; ``("*",)`` for all.
        rate: its rate limit, e.g. ``20/s``; None for none.
        expires_at: when it stops working; None for never.
        revoked_at: when it was revoked; None while it is not.
        created_at: when it was made.
        last_used_at: when a server last recorded a call with it.
    """

    id: int
    name: str
    prefix: str
    scope: str
    collections: tuple[str, ...]
    rate: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None = None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"

    @property
    def all_collections(self) -> bool:
        """Whether the key may use every collection."""
        return ALL_COLLECTIONS in self.collections

    def allows(self, scope: str) -> bool:
        """Whether this key's scope includes ``scope``."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``rag keys list --json``."""

        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "scope": self.scope,
            "collections": list(self.collections), "rate": self.rate, "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at), "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at), "state": self.state(),
        }


@dataclass(frozen=True)
class CreatedKey:
    """A new key, returned once by :meth:`KeyRing.create`: ``key`` is never stored or shown again."""

    key: str
    info: KeyInfo


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        id=row.id, name=row.name, prefix=row.prefix, scope=row.scope, collections=tuple(row.collections or ()),
        rate=row.rate, expires_at=_aware(row.expires_at), revoked_at=_aware(row.revoked_at),
        created_at=_aware(row.created_at) or utcnow(), last_used_at=_aware(row.last_used_at),
    )


_MAX_CACHED = 10_000  # unknown tokens are cached too; a flood of them must not grow memory without bound


class KeyRing:
    """Create, list, revoke and verify managed keys in the store's database.

    Thread-safe. One per process is enough; each caches lookups for ``cache_s`` seconds.

    Args:
        store: the database.
        cache_s: how long a lookup is trusted; a revoke made elsewhere is seen after at most this.
    """

    def __init__(self, store: Store, *, cache_s: float = 0.5) -> None:
        self.store = store
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._any: tuple[float, bool] | None = None

    def create(
        self,
        *,
        collections: Sequence[str],
        scope: str = "read",
        name: str = "",
        expires_in: timedelta | None = None,
        rate: Rate | str | None = None,
    ) -> CreatedKey:
        """Make a key and store its hash.

        Args:
            collections: the collections it may use (``["*"]`` for all).
            scope: ``read``, ``write`` or ``admin``.
            name: a label for listings.
            expires_in: lifetime from now; None for no expiry.
            rate: rate limit (``Rate`` or ``"20/s"``); None for none.

        Returns:
            The key (shown once) and its record.

        Raises:
            InputError: a bad scope, collection name or rate.
        """
        scope = parse_scope(scope)
        cols = parse_collections(collections)
        limit = parse_rate(rate) if isinstance(rate, str) else rate
        if len(name) > 200:
            raise InputError("name", "at most 200 characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        row = ApiKeyRow(
            name=name, key_hash=hash_key(key), prefix=key[:12], scope=scope, collections=list(cols),
            rate=str(limit) if limit else None, expires_at=now + expires_in if expires_in else None, created_at=now,
        )
        with self.store.session() as s:
            s.add(row)
            s.commit()
            info = _info(row)
        with self._lock:
            self._any = None
            self._cache.pop(row.key_hash, None)
        return CreatedKey(key, info)

    def list(self) -> list[KeyInfo]:
        """Every managed key, oldest first, revoked and expired ones included."""
        with self.store.session() as s:
            return [_info(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, key_id: int) -> KeyInfo:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time).

        Raises:
            NotFoundError: no key has this id.
        """
        with self.store.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError("id", f"no API key with id {key_id}; see `rag keys list`")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.commit()
            info = _info(row)
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[1] is None or v[1].id != key_id}
        return info

    def lookup(self, key: str) -> KeyInfo | None:
        """The record of ``key`` in whatever state it is, or None for an unknown key; cached for ``cache_s``."""
        if not key.startswith(KEY_PREFIX):
            return None
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and now - hit[0] < self.cache_s:
                return hit[1]
        with self.store.session() as s:
            row = s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest)).first()
            info = _info(row) if row is not None else None
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now, info)
        return info

    def cached(self, key: str) -> bool:
        """Whether :meth:`any_keys`, and :meth:`lookup` of ``key`` when it is needed, would answer without the database."""
        now = time.monotonic()
        with self._lock:
            if self._any is None or not (self._any[1] or now - self._any[0] < self.cache_s):
                return False
            if not self._any[1] or not key.startswith(KEY_PREFIX):
                return True
            hit = self._cache.get(hash_key(key))
            return hit is not None and now - hit[0] < self.cache_s

    def any_keys(self) -> bool:
        """Whether any managed key was ever created; then a server requires keys. Cached for ``cache_s``.

        Revoked and expired keys count: revoking the last key must not open a server that listens
        beyond this machine to callers without keys.
        """
        now = time.monotonic()
        with self._lock:
            if self._any is not None and (self._any[1] or now - self._any[0] < self.cache_s):  # rows are never deleted
                return self._any[1]
        with self.store.session() as s:
            found = s.scalars(select(ApiKeyRow.id).limit(1)).first() is not None
        with self._lock:
            self._any = (now, found)
        return found

    def touch(self, last_used: dict[int, datetime]) -> None:
        """Record when keys were last used (the audit writer calls this once per batch)."""
        if not last_used:
            return
        with self.store.session() as s:
            for key_id, when in last_used.items():
                s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=when))
            s.commit()
