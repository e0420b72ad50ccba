"""Encryption at rest over a real ingestion, on SQLite and PostgreSQL.

A small corpus with planted unusual words and a planted metadata value is ingested with
``RAG_ENCRYPTION__KEY_FILE`` set. A copy of the data directory is then searched byte by byte:
no file holds the planted strings in the clear. The one allowed exception is tantivy's term
dictionary, which must hold the single (analysed) words to answer BM25 queries; it stores no
document text, so a planted phrase never appears there. The database is also read with raw SQL,
so the check holds for PostgreSQL, whose files are not in the data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from indexer.pipeline import Ingestor
from rag.config import Settings
from rag.errors import ConfigError
from rag.index.reader import CollectionReader
from rag.index.store import Store
from rag.retrieval.hybrid import HybridRetriever
from rag.security.crypto import SETTING, DataCipher, DecryptionError, create_key_file, open_cipher, read_keyring
from rag.types import Filters
from tests.rag.test_answering import PlantedGenerator

REPO = Path(__file__).resolve().parents[2]
PHRASE = "zqplanted alpha omega sentence"
WORDS = ("xylofrabnic", "quorbulation")
TITLE = "Glimmerquasp handbook"
META_VALUE = "zq-meta-planted-owner"
QUERY = "zqfeedbackquerytext"
DOCS = [
    {
        "_id": "secret",
        "title": TITLE,
        "text": f"The {PHRASE} says that {WORDS[0]} valves need {WORDS[1]} every spring.",
        "metadata": {"owner": META_VALUE, "year": 2021, "modified": "2024-05-01"},
    },
    {
        "_id": "bikes",
        "title": "Parking",
        "text": "Bicycles can be parked for free in the courtyard behind building B.",
        "metadata": {"owner": "facilities", "year": 2019, "modified": "2023-01-10"},
    },
    {
        "_id": "dogs",
        "title": "Dogs",
        "text": "Dogs are not allowed in the office, except assistance dogs.",
        "metadata": {"owner": "facilities", "year": 2024, "tier": True},
    },
]


def _corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "handbook.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    return path


def _open(settings: Settings) -> Store:
    return Store(settings.sqlalchemy_url, cipher=open_cipher(settings))


def _search(settings: Settings, store: Store, ingestor: Ingestor, query: str, filters: Filters | None = None) -> list:
    view = CollectionReader(settings, store, store.collection("handbook"), ingestor.embedder)
    return HybridRetriever(view, settings.retrieval).run(query, filters=filters, candidates=5).fused


@pytest.fixture
def encrypted(db_url, make_settings, embedder, tmp_path):  # noqa: ANN001, ANN201
    key = tmp_path / "keys" / "data.key"
    create_key_file(key)
    settings = make_settings(db_url, encryption={"key_file": key})
    store = _open(settings)
    ingestor = Ingestor(settings, store, embedder, "handbook")
    report = ingestor.ingest([_corpus(tmp_path / "corpus")])
    assert report.documents_added == 3
    store.add_feedback(ingestor.info.id, QUERY, 1, True, "")
    yield settings, store, ingestor
    store.close()


def _planted_vector(store: Store, ingestor: Ingestor) -> bytes:
    (doc,) = [d for d in store.documents(ingestor.info.id) if d.external_id == "secret"]
    return np.ascontiguousarray(store.document_vectors(doc.id)[0]).tobytes()[:64]


def test_no_file_holds_planted_strings(encrypted, tmp_path) -> None:  # noqa: ANN001
    settings, store, ingestor = encrypted
    vector = _planted_vector(store, ingestor)
    copy = tmp_path / "copy"
    shutil.copytree(settings.data_dir, copy)
    everywhere = [PHRASE.encode(), TITLE.encode(), META_VALUE.encode(), QUERY.encode(), vector]
    words = [w.encode() for w in (*WORDS, "glimmerquasp")]
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert any(p.suffix == ".faiss" for p in files) and any("lexical" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        lowered = data.lower()
        for planted in everywhere:
            assert planted not in data and planted.lower() not in lowered, f"{planted!r} in {path}"
        if "lexical" not in path.relative_to(copy).parts:
            for word in words:
                assert word not in lowered, f"{word!r} in {path}"

    with store.engine.connect() as conn:
        dumped = [
            json.dumps([str(v) for v in row])
            for table in ("documents", "chunks", "feedback")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    blob = "\n".join(dumped).lower()
    for planted in (PHRASE, TITLE, META_VALUE, QUERY, *WORDS):
        assert planted.lower() not in blob


def test_faiss_file_does_not_load_without_the_key(encrypted) -> None:  # noqa: ANN001
    import faiss

    settings, _, _ = encrypted
    (path,) = (settings.data_dir / "collections" / "handbook" / "dense").glob("dense.*.faiss")
    with pytest.raises(RuntimeError):
        faiss.read_index(str(path))


def test_search_ask_and_filters_work_as_before(encrypted) -> None:  # noqa: ANN001
    from rag.pipeline import RagPipeline

    settings, store, ingestor = encrypted
    fused = _search(settings, store, ingestor, f"{WORDS[0]} {WORDS[1]}")
    top = fused[0].chunk
    assert top.external_id == "secret" and PHRASE in top.text
    assert top.title == TITLE and top.metadata["owner"] == META_VALUE
    assert _search(settings, store, ingestor, "where can I park my bicycle")[0].chunk.external_id == "bikes"

    owners = _search(settings, store, ingestor, "spring valves", Filters(metadata={"owner": META_VALUE}))
    assert {f.chunk.external_id for f in owners} == {"secret"}
    newer = _search(settings, store, ingestor, "office dogs bicycles valves", Filters(metadata={"year": {"gte": 2020}}))
    assert {f.chunk.external_id for f in newer} == {"secret", "dogs"}
    dated = _search(settings, store, ingestor, "office dogs bicycles valves", Filters(date_to="2023-12-31"))
    assert {f.chunk.external_id for f in dated} == {"bikes"}

    assert [j.query for j in store.feedback(ingestor.info.id)] == [QUERY]
    docs = {d.external_id: d for d in store.documents(ingestor.info.id)}
    assert docs["secret"].title == TITLE and docs["secret"].metadata["year"] == 2021
    assert PHRASE in store.document_chunks(docs["secret"].id)[0].text

    pipeline = RagPipeline(settings, store, ingestor.embedder, generator=PlantedGenerator(f"The valves need {WORDS[1]} [1]."))
    answer = pipeline.ask("handbook", f"What do {WORDS[0]} valves need?", 3)
    assert answer.sources and answer.sources[0].chunk.external_id == "secret"
    assert PHRASE in answer.sources[0].chunk.text


FILTERS = [
    Filters(metadata={"owner": "facilities"}),
    Filters(metadata={"owner": {"in": ["facilities", META_VALUE]}}),
    Filters(metadata={"year": 2019}),
    Filters(metadata={"year": {"in": [2019, 2024]}}),
    Filters(metadata={"year": {"gt": 2019, "lte": 2024}}),
    Filters(metadata={"owner": {"lt": "g"}}),
    Filters(metadata={"tier": True}),
    Filters(metadata={"missing": "x"}),
    Filters(date_from="2024-01-01"),
    Filters(date_from="2023-01-10", date_to="2024-05-01"),
    Filters(source_prefix="/nowhere", metadata={"year": 2019}),
]


def test_filters_on_decrypted_metadata_match_the_sql_ones(encrypted, make_settings, embedder, tmp_path) -> None:  # noqa: ANN001
    settings, store, ingestor = encrypted
    plain_settings = make_settings(data_dir=tmp_path / "plain")
    plain = Store(plain_settings.sqlalchemy_url)
    plain_ing = Ingestor(plain_settings, plain, embedder, "handbook")
    plain_ing.ingest([_corpus(tmp_path / "corpus")])

    def externals(s: Store, cid: int, f: Filters) -> set[str]:
        allowed = set(s.allowed_chunk_ids(cid, f).tolist())
        return {c.external_id for c in s.hydrate(cid, allowed).values()}

    for f in FILTERS:
        assert externals(store, ingestor.info.id, f) == externals(plain, plain_ing.info.id, f), f
    plain.close()


def test_wrong_or_missing_key_stops_start_up(encrypted, tmp_path) -> None:  # noqa: ANN001
    settings, _, _ = encrypted
    other = tmp_path / "other.key"
    create_key_file(other)
    with pytest.raises(ConfigError, match="wrong key") as info:
        open_cipher(settings.model_copy(update={"encryption": settings.encryption.model_copy(update={"key_file": other})}))
    assert str(info.value).startswith(SETTING)
    with pytest.raises(ConfigError, match="does not exist") as info:
        open_cipher(settings.model_copy(update={"encryption": settings.encryption.model_copy(update={"key_file": tmp_path / "gone"})}))
    assert str(info.value).startswith(SETTING)
    with pytest.raises(ConfigError, match="holds encrypted data") as info:
        open_cipher(settings.model_copy(update={"encryption": settings.encryption.model_copy(update={"key_file": None})}))
    assert str(info.value).startswith(SETTING)


def test_rotation_re_encrypts_and_retires_the_old_key(encrypted) -> None:  # noqa: ANN001
    from rag.security.rotation import rotate_data_key

    settings, store, ingestor = encrypted
    old = DataCipher(tuple(read_keyring(settings.encryption.key_file)))
    report = rotate_data_key(settings, log=lambda _line: None)
    assert report.retired == old.key_ids and report.files >= 1
    assert report.rows["chunks"] >= 3 and report.rows["documents"] == 3 and report.rows["feedback"] == 1
    assert [k for k, _ in read_keyring(settings.encryption.key_file)] == [report.key_id]
    assert oct(settings.encryption.key_file.stat().st_mode & 0o777) == "0o600"

    fresh = _open(settings)
    assert fresh.cipher is not None and fresh.cipher.key_ids == (report.key_id,)
    from rag.index.store import ChunkRow, DocumentRow, FeedbackRow

    with fresh.session() as session:
        for table, columns in ((ChunkRow, ("text", "section", "sections")), (DocumentRow, ("title", "meta")), (FeedbackRow, ("query",))):
            for row in session.query(table):
                values = [getattr(row, c) for c in columns if getattr(row, c) is not None]
                assert {DataCipher.text_key_id(v) for v in values} == {report.key_id}
        assert {DataCipher.key_id_of(b) for (b,) in session.query(ChunkRow.embedding)} == {report.key_id}
    fused = _search(settings, fresh, ingestor, f"{WORDS[0]} {WORDS[1]}")
    assert fused[0].chunk.external_id == "secret" and PHRASE in fused[0].chunk.text
    assert [j.query for j in fresh.feedback(ingestor.info.id)] == [QUERY]

    stale = Store(settings.sqlalchemy_url, cipher=old)
    with pytest.raises(DecryptionError):
        stale.hydrate(ingestor.info.id, fresh.chunk_ids(ingestor.info.id, ("active",)))
    with pytest.raises(DecryptionError):
        CollectionReader(settings, stale, stale.collection("handbook"), ingestor.embedder)
    assert rotate_data_key(settings, log=lambda _line: None).rows["chunks"] >= 3, "a second rotation works too"
    stale.close()
    fresh.close()


def test_cli_refuses_a_wrong_key_naming_the_setting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key, wrong = tmp_path / "a.key", tmp_path / "b.key"
    create_key_file(wrong)
    env = {**os.environ, "RAG_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "RAG_RERANKER__MODEL": ""}
    env.pop("RAG_DATABASE_URL", None)

    def rag(key_file: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO, timeout=300,
            env={**env, "RAG_ENCRYPTION__KEY_FILE": str(key_file)},
        )

    init = rag(key, "keys", "init-data-key", str(key))
    assert init.returncode == 0 and key.stat().st_mode & 0o777 == 0o600, init.stderr
    ingest = rag(key, "ingest", str(_corpus(tmp_path / "corpus")), "--collection", "handbook", "--create")
    assert ingest.returncode == 0, ingest.stderr
    ok = rag(key, "search", f"{WORDS[0]} valves", "-c", "handbook", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["results"][0]["external_id"] == "secret"
    for args in (("search", "valves", "-c", "handbook"), ("ingest", str(tmp_path / "corpus"), "-c", "handbook")):
        refused = rag(wrong, *args)
        assert refused.returncode == 2, refused.stderr
        assert SETTING in refused.stderr and "wrong key" in refused.stderr and "Traceback" not in refused.stderr
    old_ids = [k for k, _ in read_keyring(key)]
    rotated = rag(key, "keys", "rotate-data-key")
    assert rotated.returncode == 0 and "re-encrypted" in rotated.stderr, rotated.stderr
    assert [k for k, _ in read_keyring(key)] != old_ids
    again = rag(key, "search", f"{WORDS[0]} valves", "-c", "handbook", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["results"][0]["external_id"] == "secret", again.stderr
