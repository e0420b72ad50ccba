"""Admin operations: what a user types resolved to ids and prefixes, listing and showing documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.admin import (
    closest_collection,
    collection_or_hint,
    delete_documents,
    list_documents,
    no_match_hint,
    resolve_document_id,
    resolve_source_prefix,
    show_document,
)
from indexer.pipeline import Ingestor
from rag.errors import NotFoundError
from rag.index.store import Store
from tests.indexer.test_pipeline import write_corpus


@pytest.fixture
def handbook(make_settings, embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A collection ingested from ``corpus/`` typed relative to the working directory."""
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    write_corpus(tmp_path / "corpus")
    (tmp_path / "corpus2").mkdir()
    (tmp_path / "corpus2" / "other.md").write_text("# Other\n\nA file in a directory whose name starts like corpus.\n")
    monkeypatch.chdir(tmp_path)
    Ingestor(settings, store, embedder, "handbook").ingest([Path("corpus"), Path("corpus2")])
    return settings, store, store.collection("handbook"), (tmp_path / "corpus").resolve()


def test_an_id_typed_as_a_relative_path_is_resolved(handbook) -> None:
    settings, store, info, root = handbook
    assert resolve_document_id(store, info, "corpus/install.md") == str(root / "install.md")
    assert resolve_document_id(store, info, "./corpus/../corpus/install.md") == str(root / "install.md")
    assert resolve_document_id(store, info, "d1") == "d1"  # a BEIR _id is taken as it is
    assert resolve_document_id(store, info, "corpus/nope.md") is None
    assert delete_documents(settings, store, "handbook", external_id=resolve_document_id(store, info, "corpus/install.md")) == 1


@pytest.mark.parametrize("typed", ["corpus/", "corpus", "./corpus/"])
def test_a_source_prefix_is_the_resolved_directory(handbook, typed: str) -> None:
    settings, store, info, root = handbook
    prefix = resolve_source_prefix(store, info, typed)
    assert prefix == str(root) + "/"
    # Files and JSONL documents alike, and not the sibling directory corpus2/.
    assert delete_documents(settings, store, "handbook", source_prefix=prefix) == 5
    assert [d.title for d in list_documents(store, "handbook")] == ["Other"]


def test_a_uri_prefix_is_not_resolved(handbook) -> None:
    _settings, store, info, _root = handbook
    assert resolve_source_prefix(store, info, "https://wiki/") == "https://wiki/"


def test_no_match_hint_names_the_closest_documents(handbook) -> None:
    _settings, store, info, root = handbook
    hint = no_match_hint(store, info, "corpus/instal.md")
    assert repr(str(root / "install.md")) in hint and "rag documents list -c handbook" in hint
    assert no_match_hint(store, info, "zzz").endswith("see `rag documents list -c handbook`")


def test_list_and_show_documents_with_state_and_chunks(handbook) -> None:
    settings, store, info, root = handbook
    docs = list_documents(store, "handbook")
    assert [d.external_id for d in docs] == sorted(d.external_id for d in docs)
    assert {d.state for d in docs} == {"active"} and all(d.chunks >= 1 for d in docs)
    assert len(docs) == 6
    delete_documents(settings, store, "handbook", external_id="d2")
    assert len(list_documents(store, "handbook")) == 5
    everything = list_documents(store, "handbook", all_states=True)
    assert [(d.external_id, d.state) for d in everything if d.external_id == "d2"] == [("d2", "deleted")]

    doc, chunks = show_document(store, "handbook", "corpus/install.md")
    assert doc.external_id == str(root / "install.md") and doc.state == "active"
    assert doc.metadata["format"] == "md" and doc.source == str(root / "install.md")
    assert [c.ordinal for c in chunks] == list(range(doc.chunks))
    assert chunks[0].section == "Installing" and "make demo" in chunks[0].text
    gone, _ = show_document(store, "handbook", "d2")
    assert gone.state == "deleted"
    with pytest.raises(NotFoundError, match="closest"):
        show_document(store, "handbook", "corpus/instal.md")


def test_a_mistyped_collection_names_the_closest(handbook) -> None:
    _settings, store, _info, _root = handbook
    assert closest_collection(store, "handbok") == "handbook"
    assert closest_collection(store, "zzz") is None
    with pytest.raises(NotFoundError, match="did you mean 'handbook'"):
        collection_or_hint(store, "handbok")
    with pytest.raises(NotFoundError, match="does not exist"):
        list_documents(store, "handbok")
