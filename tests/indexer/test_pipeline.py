"""Ingestion against SQLite and a real PostgreSQL: idempotency, updates, deletes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.admin import collection_stats, compact, delete_documents
from indexer.pipeline import Ingestor
from rag.index.reader import CollectionReader
from rag.index.store import ACTIVE, DELETED, PENDING, Store
from rag.retrieval.hybrid import HybridRetriever
from tests.indexer.badfiles import make_bad_corpus


def write_corpus(root: Path) -> Path:
    """A small corpus: Markdown guides and a BEIR JSONL file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "install.md").write_text(
        "# Installing\n\nRun make demo to install the service into a virtual environment.\n\n"
        "## Requirements\n\nPython 3.11 and a C compiler are needed for the local generator.\n"
    )
    (root / "backup.md").write_text(
        "# Backups\n\nCopy the data directory while no ingest is running. Restores replace the whole directory.\n"
    )
    lines = [
        {"_id": "d1", "title": "Zebras", "text": "Zebras have black and white stripes that confuse biting flies."},
        {"_id": "d2", "title": "Penguins", "text": "Emperor penguins breed during the Antarctic winter on sea ice."},
        {"_id": "d3", "title": "Octopus", "text": "An octopus has three hearts and blue blood based on copper."},
    ]
    (root / "animals.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def search_ids(ingestor: Ingestor, query: str, k: int = 5) -> list[str]:
    """External ids of the documents that a hybrid search returns."""
    retriever = HybridRetriever(reader(ingestor), ingestor.settings.retrieval)
    result = retriever.run(query, candidates=k)
    return [s.chunk.external_id for s in result.fused]


def reader(ingestor: Ingestor) -> CollectionReader:
    """A fresh reader of the ingestor's collection."""
    return CollectionReader(ingestor.settings, ingestor.store, ingestor.info, ingestor.embedder)


def check_consistent(store: Store, ingestor: Ingestor) -> None:
    """Database, FAISS and tantivy agree: every active chunk is in both, nothing pending remains."""
    cid = ingestor.info.id
    assert store.docs_in_state(cid, PENDING) == []
    active = store.chunk_ids(cid, (ACTIVE,))
    allowed = store.chunk_ids(cid, (ACTIVE, DELETED))
    idx = reader(ingestor)
    dense = idx.dense.ids()
    lexical = idx.lexical.ids()
    assert np.isin(active, dense).all() and np.isin(dense, allowed).all()
    assert np.isin(active, lexical).all() and np.isin(lexical, allowed).all()
    assert len(np.unique(dense)) == len(dense)
    assert len(np.unique(lexical)) == len(lexical)


def test_ingest_is_idempotent_and_updates_atomically(db_url, make_settings, embedder, tmp_path) -> None:
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    ing = Ingestor(settings, store, embedder, "docs")

    first = ing.ingest([corpus])
    assert (first.documents_added, first.documents_unchanged, first.documents_failed) == (5, 0, 0)
    assert first.chunks_added >= 5
    assert set(first.timings_s) == {"load", "chunk", "embed", "db", "dense", "lexical"}
    check_consistent(store, ing)
    assert search_ids(ing, "how many hearts does an octopus have")[0] == "d3"

    again = ing.ingest([corpus])
    assert (again.documents_added, again.documents_updated, again.documents_unchanged, again.chunks_added) == (0, 0, 5, 0)
    assert store.stats(ing.info.id)["chunks"] == first.chunks_added

    lines = (corpus / "animals.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"_id": "d3", "title": "Octopus", "text": "An octopus can taste with the suckers on its arms."})
    (corpus / "animals.jsonl").write_text("\n".join(lines) + "\n")
    changed = ing.ingest([corpus])
    assert (changed.documents_added, changed.documents_updated, changed.documents_unchanged) == (0, 1, 4)
    check_consistent(store, ing)
    retriever = HybridRetriever(reader(ing), settings.retrieval)
    texts = [s.chunk.text for s in retriever.run("octopus hearts blood").fused]
    assert any("suckers" in t for t in texts)
    assert not any("three hearts" in t for t in texts), "the replaced version must never be returned"
    stats = store.stats(ing.info.id)
    assert stats["documents"] == 5 and stats["deleted"] == 1


def test_delete_and_compact(db_url, make_settings, embedder, tmp_path) -> None:
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([corpus])
    vectors_before = reader(ing).dense.ntotal

    n = delete_documents(settings, store, "docs", external_id="d1")
    assert n == 1
    assert "d1" not in search_ids(ing, "zebra stripes flies")
    n = delete_documents(
        settings, store, "docs", source_prefix=str((corpus / "backup.md").resolve())
    )
    assert n == 1
    stats = collection_stats(settings, store, "docs")
    assert stats["documents"] == 3 and stats["tombstones"] >= 2 and stats["vectors"] == vectors_before

    result = compact(settings, store, "docs")
    assert result["documents_purged"] == 2
    stats = collection_stats(settings, store, "docs")
    assert stats["tombstones"] == 0 and stats["vectors"] == stats["chunks"] < vectors_before
    assert stats["lexical_docs"] == stats["chunks"]
    assert set(stats) >= {"documents", "chunks", "vectors", "tombstones", "lexical_docs", "index_type", "bytes"}


def test_bad_files_are_skipped_with_reasons(db_url, make_settings, embedder, tmp_path) -> None:
    corpus = make_bad_corpus(tmp_path / "bad")
    settings = make_settings(db_url, ingest={"max_file_bytes": corpus["max_bytes"]})
    store = Store(settings.sqlalchemy_url)
    ing = Ingestor(settings, store, embedder, "mixed")
    report = ing.ingest([tmp_path / "bad"])
    failed = {f["path"] for f in report.failures}
    assert len(corpus["bad"]) >= 20
    for bad in corpus["bad"]:
        assert any(str(bad) in p or p.startswith(str(bad)) for p in failed), f"{bad} not reported"
    for f in report.failures:
        assert f["reason"] and "\n" not in f["reason"] and "Traceback" not in f["reason"]
    good_docs = len(corpus["good"]) + sum(docs for docs, _ in corpus["partial"].values())
    assert report.documents_added == good_docs
    check_consistent(store, ing)


def test_duplicate_ids_in_one_ingest_keep_the_first(db_url, make_settings, embedder, tmp_path) -> None:
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    path = tmp_path / "dup.jsonl"
    path.write_text(
        json.dumps({"_id": "a", "title": "", "text": "first version"}) + "\n"
        + json.dumps({"_id": "a", "title": "", "text": "second version"}) + "\n"
    )
    report = Ingestor(settings, store, embedder, "dup").ingest([path])
    assert report.documents_added == 1 and report.documents_failed == 1
    assert "duplicate" in report.failures[0]["reason"]


def test_other_model_is_refused(make_settings, embedder, tmp_path) -> None:
    from rag.errors import IndexMismatchError
    from rag.index.writer import CollectionWriter

    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([write_corpus(tmp_path / "c")])
    with pytest.raises(IndexMismatchError, match="model"):
        CollectionWriter(settings, store, ing.info, "some/other-model", embedder.dim)
