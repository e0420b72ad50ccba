"""Report writers: files present, JSON keys kept, baselines shown, plots non-empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.report import ANSWER_METRICS, RETRIEVAL_METRICS, write_answer_report, write_retrieval_report
from rag.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def retrieval_report(dataset: str = "scifact") -> dict:
    stage = dict(zip(RETRIEVAL_METRICS, (0.671, 0.80, 0.92, 0.64, 0.62, 0.95), strict=True))
    return {
        "dataset": dataset,
        "queries": 300,
        "stages": {"bm25": stage, "hybrid": {**stage, "ndcg@10": 0.70}, "rerank": {**stage, "ndcg@10": 0.72}},
        "latency_ms": {"bm25": {"p50": 2.0, "p90": 3.5, "p99": 9.0}, "rerank": {"p50": 80.0, "p90": 95.0, "p99": 130.0}},
        "config": {"chunk_tokens": 256, "fusion": {"method": "rrf", "k": 60}},
        "pooling": "chunk scores max-pooled to documents",
    }


def recall_curves() -> dict[str, dict[int, float]]:
    return {
        "bm25": {1: 0.5, 10: 0.8, 100: 0.92, 1000: 0.97},
        "hybrid": {"1": 0.55, "10": 0.85, "100": 0.95},  # string keys, as after a JSON round trip
    }


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_retrieval_report_files_and_contents(tmp_path: Path) -> None:
    report = retrieval_report()
    paths = write_retrieval_report(tmp_path / "out", report, recall_curves())
    assert [p.name for p in paths] == ["report.json", "report.md", "recall_at_k.png", "ndcg_by_stage.png"]
    assert all(p.parent == tmp_path / "out" for p in paths)

    written = json.loads(paths[0].read_text())
    assert written == report
    assert {"dataset", "queries", "stages", "latency_ms", "config"} <= written.keys()
    assert set(written["stages"]["bm25"]) == set(RETRIEVAL_METRICS)

    markdown = paths[1].read_text()
    assert "| stage | source | ndcg@10 | recall@10 | recall@100 | mrr@10 | map@100 | coverage |" in markdown
    assert "| bm25 | this run | 0.671 |" in markdown
    assert "| BM25 (BEIR paper) | reference | 0.665 | — |" in markdown
    assert "| rerank | 80.0 | 95.0 | 130.0 |" in markdown
    assert "chunk scores max-pooled" in markdown and '"method": "rrf"' in markdown
    for png in paths[2:]:
        assert_png(png)


def test_retrieval_report_without_known_baselines(tmp_path: Path) -> None:
    paths = write_retrieval_report(tmp_path, retrieval_report("my-docs"), {})
    markdown = paths[1].read_text()
    assert "reference" not in markdown
    assert_png(paths[2])
    assert_png(paths[3])


def test_retrieval_report_names_missing_keys(tmp_path: Path) -> None:
    report = retrieval_report()
    del report["stages"], report["config"]
    with pytest.raises(InputError, match="stages, config"):
        write_retrieval_report(tmp_path, report, recall_curves())


def answer_report() -> dict:
    return {
        "dataset": "xquad_en",
        "queries": 2,
        "exact_match": 0.5,
        "f1": 0.75,
        "faithfulness": 0.9,
        "citation_precision": 0.8,
        "citation_recall": None,  # not measured in this run
        "abstention_rate": 0.0,
        "latency_ms": {
            "retrieve": {"p50": 10.0, "p90": 12.0, "p99": 15.0},
            "generate": {"p50": 900.0, "p90": 1200.0, "p99": 1500.0},
        },
        "config": {"generator": "local", "top_k": 5},
    }


def test_answer_report_files_and_contents(tmp_path: Path) -> None:
    rows = [
        {"qid": "q1", "question": "Who?", "prediction": "Denver Broncos", "golds": ["Denver Broncos"], "em": 1.0},
        {"qid": "q2", "question": "Wann?", "prediction": "über", "golds": ["1990"], "em": 0.0},
    ]
    report = answer_report()
    paths = write_answer_report(tmp_path, report, rows)
    assert [p.name for p in paths] == ["report.json", "report.md", "answers.jsonl", "answer_metrics.png"]

    written = json.loads(paths[0].read_text())
    assert written == report
    assert {*ANSWER_METRICS, "latency_ms", "config"} <= written.keys()

    assert [json.loads(line) for line in paths[2].read_text(encoding="utf-8").splitlines()] == rows

    markdown = paths[1].read_text()
    assert "| this run | 0.500 | 0.750 | 0.900 | 0.800 | — | 0.000 |" in markdown
    assert "| mBERT reader, gold paragraph (XQuAD) | 0.722 | 0.835 |" in markdown
    assert "| generate | 900.0 | 1200.0 | 1500.0 |" in markdown
    assert_png(paths[3])


def test_answer_report_names_missing_keys(tmp_path: Path) -> None:
    report = answer_report()
    del report["f1"]
    with pytest.raises(InputError, match="f1"):
        write_answer_report(tmp_path, report, [])


def test_qrels_with_spaces_in_corpus_ids_are_read_by_tabs(tmp_path) -> None:
    import json

    from eval.datasets import load_beir

    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "Réserve Naturelle Lomako", "title": "", "text": "x"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "where?"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tRéserve Naturelle Lomako\t1\nq1\tBonobo\t1\n")
    data = load_beir(tmp_path)
    assert data.qrels == {"q1": {"Réserve Naturelle Lomako": 1, "Bonobo": 1}}


def test_answer_rows_are_sealed_when_the_data_dir_is_encrypted(tmp_path: Path) -> None:
    import os

    from rag.security.crypto import DataCipher, read_export

    cipher = DataCipher((("k1", os.urandom(32)),))
    rows = [{"question": "zqsealed question about lamps", "answer": "zqsealed answer [1]"}]
    paths = write_answer_report(tmp_path, answer_report(), rows, cipher)
    answers = next(p for p in paths if p.name == "answers.jsonl")
    assert b"zqsealed" not in answers.read_bytes()
    assert read_export(answers, cipher).splitlines() == [json.dumps(rows[0], ensure_ascii=False)]
