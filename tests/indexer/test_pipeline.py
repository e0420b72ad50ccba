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


def active_docs(store: Store, ingestor: Ingestor) -> dict[str, str]:
    """External id -> source of the collection's active documents."""
    return {d.external_id: d.source for d in store.documents(ingestor.info.id)}


def test_sync_deletes_gone_files_and_keeps_a_rename_as_one_document(db_url, make_settings, embedder, tmp_path) -> None:
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "notes.txt").write_text("The printer on the third floor needs a badge to release jobs.\n")
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([corpus])
    root = corpus.resolve()

    (corpus / "install.md").rename(corpus / "setup.md")  # same content, same title: vectors are reused
    (corpus / "notes.txt").rename(corpus / "printer.txt")  # the title (the stem) changes: embedded again
    (corpus / "backup.md").unlink()
    embedded: list[str] = []
    real = embedder.embed_documents

    def spy(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real(texts)

    ing.embedder.embed_documents = spy  # type: ignore[method-assign]
    try:
        report = ing.ingest([corpus], sync=True)
    finally:
        del ing.embedder.embed_documents
    assert (report.documents_added, report.documents_updated, report.documents_unchanged) == (0, 0, 3)
    assert (report.documents_renamed, report.documents_deleted) == (2, 1)
    assert sorted((r["from"], r["to"]) for r in report.renamed) == [
        (str(root / "install.md"), str(root / "setup.md")),
        (str(root / "notes.txt"), str(root / "printer.txt")),
    ]
    assert report.deleted == [str(root / "backup.md")]
    assert all("make demo" not in t for t in embedded) and any("badge" in t for t in embedded)
    assert set(active_docs(store, ing)) == {"d1", "d2", "d3", str(root / "setup.md"), str(root / "printer.txt")}
    assert search_ids(ing, "install the service into a virtual environment")[0] == str(root / "setup.md")
    assert str(root / "backup.md") not in search_ids(ing, "copy the data directory backups restores")
    check_consistent(store, ing)
    summary = report.as_json()
    assert summary["documents_renamed"] == 2 and summary["documents_deleted"] == 1

    again = ing.ingest([corpus], sync=True)
    assert (again.documents_unchanged, again.documents_deleted, again.documents_renamed) == (5, 0, 0)


def test_without_sync_nothing_is_deleted_and_other_roots_are_left_alone(make_settings, embedder, tmp_path) -> None:
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    a = write_corpus(tmp_path / "a")
    b = tmp_path / "a-b"  # a sibling whose name starts like the root
    b.mkdir()
    (b / "keep.md").write_text("# Keep\n\nThis one lives beside the synced root.\n")
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([a, b])
    (a / "backup.md").unlink()
    assert ing.ingest([a]).documents_deleted == 0
    assert str((a / "backup.md").resolve()) in active_docs(store, ing)
    (b / "keep.md").rename(tmp_path / "keep.md")  # gone from b, but b is not synced
    report = ing.ingest([a], sync=True)
    assert report.deleted == [str((a / "backup.md").resolve())]
    assert str((b / "keep.md").resolve()) in active_docs(store, ing)


def test_changed_chunking_settings_rechunk_unchanged_documents(db_url, make_settings, embedder, tmp_path) -> None:
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "long.md").write_text("# Long\n\n" + " ".join(f"Sentence number {i} talks about item {i}." for i in range(300)))
    first = Ingestor(settings, store, embedder, "docs").ingest([corpus])
    assert first.documents_added == 6

    smaller = make_settings(db_url, chunking={"size": 128})
    ing = Ingestor(smaller, store, embedder, "docs")
    report = ing.ingest([corpus])
    assert (report.documents_unchanged, report.documents_updated, report.documents_rechunked) == (0, 0, 6)
    assert report.chunks_added > first.chunks_added, "smaller chunks: more of them"
    summary = report.as_json()
    assert summary["documents_rechunked"] == 6 and summary["chunking"]["size"] == 128
    check_consistent(store, ing)
    assert store.stats(ing.info.id)["chunks"] == report.chunks_added

    assert ing.ingest([corpus]).documents_unchanged == 6
    (corpus / "backup.md").write_text("# Backups\n\nBackups run nightly now.\n")
    back = Ingestor(settings, store, embedder, "docs").ingest([corpus])
    assert (back.documents_updated, back.documents_rechunked, back.documents_unchanged) == (1, 5, 0)


def test_metadata_is_added_to_every_document(make_settings, embedder, tmp_path) -> None:
    from rag.errors import InputError
    from rag.types import Filters

    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "front.md").write_text("---\ntitle: Fronted\nowner: ops\n---\nThe on-call rota changes on Mondays.\n")
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([corpus], metadata={"team": "sec"})
    docs = store.documents(ing.info.id)
    assert len(docs) == 6 and all(d.metadata["team"] == "sec" for d in docs)
    front = next(d for d in docs if d.external_id.endswith("front.md"))
    assert front.title == "Fronted" and front.metadata["owner"] == "ops"
    assert len(store.allowed_chunk_ids(ing.info.id, Filters(metadata={"owner": "ops"}))) == 1
    with pytest.raises(InputError, match="path"):
        ing.ingest([corpus], metadata={"path": "/elsewhere"})


def test_skipped_files_and_progress_are_reported(make_settings, embedder, tmp_path) -> None:
    # One text per encoder call: the bar moves inside a batch, as the chunks are embedded.
    settings = make_settings(embedding={"batch_size": 1})
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "diagram.svg").write_text("<svg/>")
    seen = []
    report = Ingestor(settings, store, embedder, "docs").ingest([corpus], progress=seen.append)
    assert report.as_json()["skipped"] == [{"path": str(corpus / "diagram.svg"), "reason": "unsupported file type .svg"}]
    assert report.documents_failed == 0
    assert seen[0].files_total == 3 and seen[0].files_done == 0 and seen[0].eta_s is None
    assert seen[-1].files_done == 3 and seen[-1].documents == 5 and seen[-1].chunks == report.chunks_added
    # animals.jsonl (3 documents) is one file, known to be done when the next file is read: then 2 files
    # are done once backup.md is embedded, and 3 with install.md.
    done = [p.files_done for p in seen]
    assert done == sorted(done) and sorted(set(done)) == [0, 2, 3]
    chunks = [p.chunks for p in seen]
    assert chunks == sorted(chunks) and len(set(chunks)) == report.chunks_added + 1
    assert any(0 < p.files_done < 3 and p.eta_s is not None and p.eta_s > 0 for p in seen)


def test_a_missing_collection_is_not_created_unless_asked(make_settings, embedder) -> None:
    from rag.errors import NotFoundError

    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    with pytest.raises(NotFoundError):
        Ingestor(settings, store, embedder, "handbok", create=False)
    assert store.collections() == []
    Ingestor(settings, store, embedder, "handbook")
    assert Ingestor(settings, store, embedder, "handbook", create=False).info.name == "handbook"


def test_documents_written_before_settings_were_hashed_are_rechunked_once(make_settings, embedder, tmp_path) -> None:
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    corpus = write_corpus(tmp_path / "corpus")
    old = Ingestor(settings, store, embedder, "docs")
    old.settings_key = ""  # what the hash was before it held the chunking settings
    assert old.ingest([corpus]).documents_added == 5
    report = Ingestor(settings, store, embedder, "docs").ingest([corpus])
    assert (report.documents_rechunked, report.documents_updated, report.documents_unchanged) == (5, 0, 0)
    assert Ingestor(settings, store, embedder, "docs").ingest([corpus]).documents_unchanged == 5


def test_sections_inside_a_chunk_are_stored_and_read_back(db_url, make_settings, embedder, tmp_path) -> None:
    """``chunks.sections`` (migration 0002) round-trips on both databases."""
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "guide.md").write_text("# Guide\n\nIntro.\n\n## Pets\n\nDogs stay home.\n")
    ing = Ingestor(settings, store, embedder, "docs")
    ing.ingest([tmp_path / "c"])
    chunk_ids = [c.chunk_id for c in store.document_chunks(store.documents(ing.info.id)[0].id)]
    (chunk,) = store.hydrate(ing.info.id, chunk_ids).values()
    assert chunk.section == "Guide"
    assert chunk.sections == ((0, "Guide"), (chunk.text.index("## Pets"), "Guide > Pets"))
    assert chunk.section_at(chunk.text.index("Dogs")) == "Guide > Pets"
    store.close()
