"""Ingesting into a collection that redacts personal data: no original value is stored, indexed or embedded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select

from indexer.admin import compact
from indexer.pipeline import Ingestor
from rag.index.store import Store
from rag.retrieval.hybrid import HybridRetriever
from tests.conftest import use_session_embedder
from tests.indexer.test_pipeline import reader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pii"
VALUES = json.loads((FIXTURES / "values.json").read_text())
VALID = [v for values in VALUES["valid"].values() for v in values]


def _forms(value: str) -> list[str]:
    """How a value may be written down: as given, and without spaces or hyphens (cards, IBANs)."""
    compact = value.replace(" ", "").replace("-", "")
    return sorted({value, compact, compact.lower()})


def _database_text(url: str) -> str:
    """Every row of every table, as text: what the database holds, whatever its backend."""
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    parts = []
    with engine.connect() as c:
        for table in meta.sorted_tables:
            for row in c.execute(select(table)):
                parts.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(parts)


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(FIXTURES / "contacts.md", root / "contacts.md")
    return root


def _redacting(settings, store: Store, embedder, kinds: list[str]) -> Ingestor:  # noqa: ANN001
    store.ensure_collection("private")
    store.update_collection_settings("private", {"redact": kinds})
    return Ingestor(settings, store, embedder, "private")


def test_no_valid_value_reaches_the_database_the_indexes_or_the_embedder(
    db_url, make_settings, embedder, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    embedded: list[str] = []
    real = embedder.embed_documents
    monkeypatch.setattr(embedder, "embed_documents", lambda texts, *a, **k: embedded.extend(texts) or real(texts, *a, **k))
    ing = _redacting(settings, store, embedder, ["email", "phone", "credit_card", "iban", "ip"])
    corpus = _corpus(tmp_path)

    report = ing.ingest([corpus], metadata={"contact": "zelda.quux@example.com"})
    assert report.documents_added == 1
    assert report.redactions == {"credit_card": 3, "email": 6, "iban": 3, "ip": 3, "phone": 4}
    assert report.as_json()["redactions"] == report.redactions
    assert report.chunking["redact"] == ["email", "phone", "credit_card", "iban", "ip"]

    stored = _database_text(settings.sqlalchemy_url)
    for value in VALID:
        for form in _forms(value):
            assert form not in stored, f"{form!r} is in the database"
            assert not any(form in t for t in embedded), f"{form!r} was embedded"
    for value in VALUES["invalid"]:
        assert value in stored, f"look-alike {value!r} was redacted"
    for placeholder in ("[EMAIL]", "[PHONE]", "[CREDIT_CARD]", "[IBAN]", "[IP]"):
        assert placeholder in stored
    doc = store.documents(ing.info.id)[0]
    assert doc.title == "Support contacts for [EMAIL]"
    assert doc.metadata["owner"] == doc.metadata["contact"] == "[EMAIL]"
    assert doc.metadata["path"] == str((corpus / "contacts.md").resolve()), "the path is an identifier, kept"

    lexical = reader(ing).lexical
    for token in VALUES["valid_tokens"]:
        assert lexical.search(token, 5) == [], f"{token!r} is in the lexical index"
    for token in VALUES["invalid_tokens"]:
        assert lexical.search(token, 5), f"look-alike token {token!r} is missing from the lexical index"
    hits = HybridRetriever(reader(ing), settings.retrieval).run("London desk phone, card and wire transfer", candidates=5)
    shown = " ".join(f"{h.chunk.title} {h.chunk.text}" for h in hits.fused)
    assert "[PHONE]" in shown and "[EMAIL]" in shown
    assert not any(form in shown for value in VALID for form in _forms(value))

    again = ing.ingest([corpus], metadata={"contact": "zelda.quux@example.com"})
    assert (again.documents_unchanged, again.documents_updated, again.chunks_added) == (1, 0, 0)
    store.close()


def test_every_file_of_the_data_dir_is_free_of_valid_values(make_settings, embedder, tmp_path) -> None:  # noqa: ANN001
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    ing = _redacting(settings, store, embedder, ["email", "phone", "credit_card", "iban", "ip"])
    ing.ingest([_corpus(tmp_path)])
    found = reader(ing).dense.ids()
    assert len(found), "FAISS holds the chunks"
    store.close()
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any("faiss" in p.name or "dense" in str(p) for p in files)
    blob = b"\n".join(p.read_bytes() for p in files)
    for value in VALID:
        for form in _forms(value):
            assert form.encode() not in blob, f"{form!r} is on disk"
    assert b"4111 1111 1111 1112" in blob and b"GB83 WEST 1234 5698 7654 32" in blob


def test_turning_redaction_on_reprocesses_unchanged_documents(make_settings, embedder, tmp_path) -> None:  # noqa: ANN001
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    corpus = _corpus(tmp_path)
    plain = Ingestor(settings, store, embedder, "private")
    assert plain.ingest([corpus]).documents_added == 1
    assert "zelda.quux@example.com" in _database_text(settings.sqlalchemy_url)
    redacting = _redacting(settings, store, embedder, ["email"])
    report = redacting.ingest([corpus])
    assert report.documents_updated + report.documents_rechunked == 1 and report.documents_unchanged == 0
    assert report.redactions == {"email": 5}
    chunks = [c.text for c in store.document_chunks(store.documents(redacting.info.id)[0].id)]
    assert all("zelda" not in c for c in chunks) and "+44 20 7946 0958" in "".join(chunks)
    assert redacting.ingest([corpus]).documents_unchanged == 1
    assert "zelda.quux@example.com" in _database_text(settings.sqlalchemy_url), "the old version waits for compaction"
    assert compact(settings, store, "private")["documents_purged"] == 1
    assert "zelda.quux@example.com" not in _database_text(settings.sqlalchemy_url)
    store.close()


@pytest.fixture
def rag(rag, monkeypatch: pytest.MonkeyPatch, embedder):  # noqa: ANN001, ANN201 - tests/conftest.py's, with the session's embedder
    """``rag ARGS...`` in this process (tests/conftest.py), with the session's embedder."""
    use_session_embedder(monkeypatch, embedder)
    return rag


def test_the_cli_creates_lists_ingests_and_searches_a_redacting_collection(rag, tmp_path: Path) -> None:
    code, out, err = rag("collections", "create", "private", "--redact", "email,ssn")
    assert code == 2 and "--redact: unknown kind 'ssn'; valid kinds: email, phone, credit_card, iban, ip" in err
    assert "Traceback" not in err
    assert rag("collections", "create", "private", "--redact", "email,phone,iban,credit_card,ip") == (
        0, "created private (redact: email,phone,credit_card,iban,ip)\n", "",
    )
    assert rag("collections", "create", "open")[0] == 0
    code, out, _ = rag("collections", "list")
    assert [line.split() for line in out.splitlines()] == [
        ["open", "0", "documents", "0", "chunks"],
        ["private", "0", "documents", "0", "chunks", "redact:", "email,phone,credit_card,iban,ip"],
    ]
    _corpus(tmp_path)
    code, out, _ = rag("ingest", "corpus", "-c", "private", "--json")
    assert code == 0
    assert json.loads(out)["redactions"] == {"credit_card": 3, "email": 5, "iban": 3, "ip": 3, "phone": 4}
    code, out, _ = rag("search", "London desk phone number and wire transfer", "-c", "private", "--json")
    assert code == 0
    texts = " ".join(r["text"] for r in json.loads(out)["results"])
    assert "[PHONE]" in texts or "[IBAN]" in texts
    for value in VALID:
        assert value not in out
