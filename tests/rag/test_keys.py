"""Managed API keys in the database (SQLite and PostgreSQL): hashes only, expiry, revocation, audit rows, parsing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text, update

from rag.errors import InputError, NotFoundError
from rag.index.store import Store, head_revision
from rag.security.audit import AuditEntry, AuditLog
from rag.security.keys import (
    ApiKeyRow,
    KeyRing,
    Rate,
    hash_key,
    parse_collections,
    parse_duration,
    parse_rate,
    parse_scope,
)
from rag.security.ratelimit import RateLimiter


def _dump(store: Store) -> str:
    """Every row of every table, as text."""
    parts = []
    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def test_the_database_holds_hashes_only(db_url: str) -> None:
    store = Store(db_url)
    ring = KeyRing(store)
    made = ring.create(collections=["a", "b"], scope="write", name="ci", rate="20/s", expires_in=timedelta(days=30))
    audit = AuditLog(store, ring)
    audit.record(AuditEntry(made.info.id, "", "POST", "/v1/search", "a", 200, query=None))
    assert audit.flush() == 1
    dump = _dump(store)
    assert made.key.startswith("rag_") and len(made.key) > 40
    assert made.key not in dump and made.key[4:] not in dump and made.key[12:] not in dump
    assert hash_key(made.key) in dump  # what is kept instead
    assert made.info.prefix == made.key[:12]
    listed = ring.list()
    assert [(k.id, k.name, k.scope, k.collections, k.rate, k.state()) for k in listed] == [
        (made.info.id, "ci", "write", ("a", "b"), "20/s", "active")
    ]
    assert made.key not in repr(listed) and made.key not in str([k.as_dict() for k in listed])
    store.close()


def test_lookup_finds_the_key_and_nothing_else(db_url: str) -> None:
    store = Store(db_url)
    ring = KeyRing(store, cache_s=0)
    made = ring.create(collections=["a"])
    assert ring.lookup(made.key) == made.info
    assert ring.lookup(made.key + "x") is None
    assert ring.lookup("rag_" + "A" * 43) is None
    assert ring.lookup("not-even-our-format") is None
    store.close()


def test_revoke_is_seen_by_another_keyring_within_its_cache_time(db_url: str) -> None:
    server, cli = Store(db_url), Store(db_url)
    seen_by_server = KeyRing(server, cache_s=0.5)
    made = KeyRing(cli).create(collections=["a"])
    assert seen_by_server.lookup(made.key).state() == "active"  # now cached
    revoked = KeyRing(cli).revoke(made.info.id)
    assert revoked.revoked_at is not None
    start = time.monotonic()
    while seen_by_server.lookup(made.key).state() != "revoked":
        assert time.monotonic() - start < 1.0, "the revoke was not seen within 1 s"
        time.sleep(0.02)
    again = KeyRing(cli).revoke(made.info.id)  # idempotent: keeps the first time
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFoundError, match="no API key with id 999"):
        KeyRing(cli).revoke(999)
    server.close()
    cli.close()


def test_cached_says_when_an_answer_needs_the_database(db_url: str) -> None:
    store = Store(db_url)
    ring = KeyRing(store, cache_s=30)
    assert not ring.cached("")  # nothing read yet
    assert ring.any_keys() is False
    assert ring.cached("") and ring.cached("rag_" + "A" * 43)  # no managed keys: no lookup is needed
    made = KeyRing(store).create(collections=["a"])
    fresh = KeyRing(store, cache_s=30)
    assert fresh.any_keys() is True
    assert fresh.cached("not-even-our-format")  # refused without a lookup
    assert not fresh.cached(made.key)
    assert fresh.lookup(made.key) == made.info
    assert fresh.cached(made.key) and not fresh.cached(made.key + "x")
    assert not KeyRing(store, cache_s=0).cached("")  # a cache of 0 s answers nothing
    store.close()


def test_an_expired_key_reads_expired(db_url: str) -> None:
    store = Store(db_url)
    ring = KeyRing(store, cache_s=0)
    made = ring.create(collections=["a"], expires_in=timedelta(seconds=60))
    assert ring.lookup(made.key).state() == "active"
    with store.session() as s:  # an hour later
        s.execute(update(ApiKeyRow).where(ApiKeyRow.id == made.info.id).values(expires_at=made.info.created_at - timedelta(hours=1)))
        s.commit()
    assert ring.lookup(made.key).state() == "expired"
    assert ring.any_keys()  # an expired key still means the server requires keys
    store.close()


def test_audit_rows_keep_no_query_unless_given_and_touch_last_used(db_url: str) -> None:
    store = Store(db_url)
    ring = KeyRing(store)
    made = ring.create(collections=["a"])
    audit = AuditLog(store, ring, interval_s=0.05)
    for status in (200, 403, 429):
        audit.record(AuditEntry(made.info.id, "", "POST", "/v1/ask", "a", status))
    audit.record(AuditEntry(None, "f" * 64, "GET", "/v1/collections", None, 200, query="kept because asked"))
    audit.close()  # the thread flushes; close writes the rest
    rows = audit.rows()
    assert [(r.key_id, r.route, r.collection, r.status, r.query) for r in rows] == [
        (None, "/v1/collections", None, 200, "kept because asked"),
        (made.info.id, "/v1/ask", "a", 429, None),
        (made.info.id, "/v1/ask", "a", 403, None),
        (made.info.id, "/v1/ask", "a", 200, None),
    ]
    assert ring.list()[0].last_used_at is not None
    store.close()


def test_migration_0003_creates_both_tables(db_url: str) -> None:
    store = Store(db_url)
    assert head_revision() == "0004"  # 0004 (documents.shard) came after it
    with store.engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        assert {"api_keys", "audit_log"} <= names
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        cols = {c["name"] for c in inspect(conn).get_columns("api_keys")}
    assert cols >= {"id", "name", "key_hash", "prefix", "scope", "collections", "rate", "expires_at", "revoked_at", "created_at"}
    with store.session() as s:
        assert s.scalars(select(ApiKeyRow)).all() == []
    store.close()


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        (parse_scope, "Admin", "admin"),
        (parse_duration, "30d", timedelta(days=30)),
        (parse_duration, "90s", timedelta(seconds=90)),
        (parse_duration, None, None),
        (parse_rate, "20/s", Rate(20, 1)),
        (parse_rate, "600/m", Rate(600, 60)),
        (parse_rate, "", None),
        (parse_collections, "a, b,a", ("a", "b")),
        (parse_collections, "a,*", ("*",)),
    ],
)
def test_options_parse(parse, value, expected) -> None:  # noqa: ANN001
    assert parse(value) == expected


@pytest.mark.parametrize(
    ("parse", "value", "said"),
    [
        (parse_scope, "root", "unknown scope 'root'; valid: read | write | admin"),
        (parse_duration, "3x", "'3x' is not a lifetime"),
        (parse_duration, "0d", "'0d' is not a lifetime"),
        (parse_rate, "20", "'20' is not a rate"),
        (parse_rate, "0/s", "'0/s' is not a rate"),
        (parse_collections, " , ", "name at least one collection"),
        (parse_collections, "a b", "'a b' is not a collection name"),
    ],
)
def test_bad_options_name_the_option(parse, value, said) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match="^--opt: ") as err:
        parse(value, param="--opt")
    assert said in str(err.value)


def test_token_bucket_allows_its_burst_then_says_when_to_retry() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    rate = Rate(5, 1)
    assert [limiter.take(1, rate) for _ in range(5)] == [0] * 5
    assert limiter.take(1, rate) == 1  # empty: one token back in 0.2 s, rounded up to a whole second
    assert limiter.take(2, rate) == 0  # another key has its own bucket
    now[0] += 0.2
    assert limiter.take(1, rate) == 0
    slow = Rate(1, 60)
    assert limiter.take(3, slow) == 0 and limiter.take(3, slow) == 60


def test_audit_query_text_is_encrypted_at_rest_with_a_cipher(tmp_path) -> None:  # noqa: ANN001
    from rag.security.crypto import DataCipher

    store = Store(f"sqlite:///{tmp_path / 'rag.db'}", cipher=DataCipher((("k1", bytes(range(32))),)))
    audit = AuditLog(store)
    audit.record(AuditEntry(None, "", "POST", "/v1/search", "a", 200, query="where is the zqsecret lighthouse"))
    assert audit.flush() == 1
    assert "zqsecret" not in _dump(store)
    assert audit.rows()[0].query == "where is the zqsecret lighthouse"
    store.close()


def test_migration_0003_downgrades_and_upgrades_again(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from rag.index import store as store_module

    store = Store(db_url)
    KeyRing(store).create(collections=["a"])
    cfg = Config()
    cfg.set_main_option("script_location", str(store_module._MIGRATIONS))
    cfg.attributes["connection_engine"] = store.engine
    command.downgrade(cfg, "0002")
    with store.engine.connect() as conn:
        assert not {"api_keys", "audit_log"} & set(inspect(conn).get_table_names())
    command.upgrade(cfg, "head")
    assert KeyRing(store).list() == []
    store.close()
