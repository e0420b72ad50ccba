"""BM25 table: the four systems scored on a tiny BEIR corpus, report files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.bm25_table import SYSTEMS, analyser_stopwords, evaluate_dataset, markdown_table, run_bm25_table
from eval.datasets import load_beir
from rag.chunking import Chunker
from rag.config import LexicalConfig, Settings
from rag.embedding import Embedder
from rag.index.lexical import LexicalIndex

DOCS = [
    {"_id": "d1", "title": "Aeroelastic models", "text": "Similarity laws for aeroelastic models of wings in flutter tests."},
    {"_id": "d2", "title": "Boundary layers", "text": "Heat transfer in a laminar boundary layer on a flat plate."},
    {"_id": "d3", "title": "Parking permits", "text": "Parking permits are issued yearly by the facilities office."},
    {"_id": "d4", "title": "Travel", "text": "Travel is approved by your manager before booking."},
    {"_id": "d5", "title": "Shock waves", "text": "Shock waves in supersonic flow over a wedge and a cone."},
    {"_id": "d6", "title": "Title only", "text": ""},
]
QUERIES = {
    "q1": "similarity laws for aeroelastic models",
    "q2": "who approves travel and travel booking",
    "q3": "supersonic shock waves over a cone",
}
QRELS = {"q1": "d1", "q2": "d4", "q3": "d5"}


def write_beir(directory: Path) -> Path:
    (directory / "qrels").mkdir(parents=True)
    (directory / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    (directory / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()), encoding="utf-8"
    )
    rows = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t1" for q, d in QRELS.items())]
    (directory / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return directory


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def test_four_systems_scored_and_relevant_doc_first(tiny: Path, embedder: Embedder) -> None:
    settings = Settings()
    chunker = Chunker(settings.chunking, embedder.tokenizer, embedder.max_seq_length)
    result, stopwords = evaluate_dataset(load_beir(tiny), settings, chunker)

    assert set(result.metrics) == set(SYSTEMS)
    for metrics in result.metrics.values():
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    # Each query names its document's rare words: every system ranks it first.
    for system in SYSTEMS:
        assert result.metrics[system]["mrr@10"] == pytest.approx(1.0), system
    assert result.documents == 6 and result.queries == 3
    # The title-only document is skipped by chunking, as ingestion skips it.
    assert result.docs_without_text == 1 and result.chunks == 5
    assert result.avg_doc_terms > result.avg_query_terms > 0
    assert {"the", "and", "a"} <= set(stopwords)


def test_relevant_doc_ranks_first_for_our_index(tmp_path: Path) -> None:
    index = LexicalIndex.open(tmp_path / "lex", LexicalConfig())
    index.add((i, f"{d['title']}\n{d['text']}") for i, d in enumerate(DOCS))
    index.commit()
    try:
        hits = index.search(QUERIES["q1"], k=3)
        assert DOCS[hits[0].chunk_id]["_id"] == "d1"
    finally:
        index.close()


def test_analyser_stopwords_follow_config(tmp_path: Path) -> None:
    with_stop = LexicalIndex.open(tmp_path / "a", LexicalConfig())
    without = LexicalIndex.open(tmp_path / "b", LexicalConfig(stopwords=False))
    try:
        found = analyser_stopwords(with_stop)
        assert "the" in found and "travel" not in found
        assert analyser_stopwords(without) == []
    finally:
        with_stop.close()
        without.close()


def test_report_files_and_table(tiny: Path, tmp_path: Path, embedder: Embedder) -> None:
    out = tmp_path / "out"
    report = run_bm25_table(Settings(), [tiny], out, embedder=embedder)

    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [d["dataset"] for d in saved["datasets"]] == ["tiny"]
    assert set(saved["datasets"][0]["metrics"]) == set(SYSTEMS)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert report["table"] in md
    header, _, row = report["table"].splitlines()
    assert all(label in header for label in SYSTEMS.values())
    assert row.startswith("| tiny | 6 | 3 |")


def test_markdown_table_rows_in_order(tiny: Path, embedder: Embedder) -> None:
    settings = Settings()
    chunker = Chunker(settings.chunking, embedder.tokenizer, embedder.max_seq_length)
    result, _ = evaluate_dataset(load_beir(tiny), settings, chunker)
    renamed = type(result)(**{**result.__dict__, "dataset": "other"})
    lines = markdown_table([renamed, result]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| other", "| tiny"]
