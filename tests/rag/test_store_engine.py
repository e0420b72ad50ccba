"""How the store's engine is made for each kind of database URL."""

from __future__ import annotations

from pathlib import Path

from rag.index.store import SQLITE_POOL, Store


def test_an_in_memory_database_opens() -> None:
    store = Store("sqlite://")  # one connection holds an in-memory database: no pool sizes for it
    assert store.collections() == []
    store.close()


def test_a_sqlite_file_keeps_its_pooled_connections(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rag.db'}")
    assert store.engine.pool.size() == SQLITE_POOL
    store.ensure_collection("a")
    assert [c.name for c in store.collections()] == ["a"]
    store.close()
