"""Metrics checked against pytrec_eval (an independent trec_eval port) and by hand."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import pytrec_eval

from eval.datasets import PUBLISHED_BASELINES, load_beir
from eval.metrics import (
    coverage,
    evaluate_run,
    exact_match,
    hard_negatives,
    max_pool,
    ndcg,
    ndcg_per_query,
    normalize_answer,
    percentiles,
    token_f1,
    write_trec_run,
)
from rag.errors import FileError, InputError

ADI = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "adi"


def reference_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """pytrec_eval means over every query with a relevant doc; unanswered queries count 0."""
    judged = {q: r for q, r in qrels.items() if any(g > 0 for g in r.values())}
    answered = {q: docs for q, docs in run.items() if q in judged and docs}
    measures = {"ndcg_cut.10", "recall.10", "recall.100", "map_cut.100"}
    full = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(answered)
    # recip_rank has no cutoff in trec_eval: truncate the run to 10 for MRR@10.
    top10 = {q: dict(sorted(docs.items(), key=lambda i: -i[1])[:10]) for q, docs in answered.items()}
    rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10)
    names = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100", "map@100": "map_cut_100"}
    out = {ours: sum(full.get(q, {}).get(theirs, 0.0) for q in judged) / len(judged) for ours, theirs in names.items()}
    out["mrr@10"] = sum(rr.get(q, {}).get("recip_rank", 0.0) for q in judged) / len(judged)
    return out


def assert_agree(ours: dict[str, float], reference: dict[str, float]) -> None:
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def synthetic(graded: bool) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    random.seed(42)
    docs = [f"d{i}" for i in range(300)]
    qrels, run = {}, {}
    for q in range(40):
        qid = f"q{q}"
        relevant = random.sample(docs, random.randint(1, 8))
        qrels[qid] = {d: (random.randint(1, 3) if graded else 1) for d in relevant}
        qrels[qid][random.choice(docs)] = 0  # judged non-relevant, may override a relevant one
        # Unique random scores (no ties), relevant docs nudged up, some beyond rank 100.
        pool = random.sample(docs, 150)
        run[qid] = {d: random.random() + (0.3 if d in relevant else 0.0) for d in pool}
    run["q0"] = {}  # empty result list
    del run["q1"]  # missing from the run
    run["not-judged"] = {"d1": 1.0}  # ignored: no qrels
    return qrels, run


@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
def test_evaluate_run_matches_pytrec_eval_on_synthetic_run(graded: bool) -> None:
    qrels, run = synthetic(graded)
    ours = evaluate_run(qrels, run)
    assert_agree(ours, reference_metrics(qrels, run))
    assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100", "recall@1", "recall@5"} <= ours.keys()
    assert 0.0 < ours["ndcg@10"] < 1.0


@pytest.mark.skipif(not ADI.is_dir(), reason="shared datasets not present")
def test_evaluate_run_matches_pytrec_eval_on_adi() -> None:
    dataset = load_beir(ADI)
    with dataset.corpus_path.open(encoding="utf-8") as lines:
        doc_ids = [json.loads(line)["_id"] for line in lines if line.strip()]
    random.seed(42)
    run = {
        qid: {d: (0.4 if dataset.qrels[qid].get(d, 0) > 0 else 0.0) + random.random() for d in doc_ids}
        for qid in dataset.queries
    }
    ours = evaluate_run(dataset.qrels, run)
    assert_agree(ours, reference_metrics(dataset.qrels, run))
    assert ours["recall@100"] == pytest.approx(1.0)  # 82 docs, all ranked


@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
def test_ndcg_helpers_match_pytrec_eval(graded: bool) -> None:
    """The one nDCG that training, blending and the benchmark call agrees with trec_eval per query and on average."""
    qrels, run = synthetic(graded)
    judged = {q: r for q, r in qrels.items() if any(g > 0 for g in r.values())}
    answered = {q: docs for q, docs in run.items() if q in judged and docs}
    ref = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10"}).evaluate(answered)
    per_query = ndcg_per_query(qrels, run)
    for q in judged:
        assert per_query[q] == pytest.approx(ref.get(q, {}).get("ndcg_cut_10", 0.0), abs=1e-9), q
    assert ndcg(qrels, run) == pytest.approx(reference_metrics(qrels, run)["ndcg@10"], abs=1e-9)


def test_graded_ndcg_by_hand() -> None:
    # Ranking d9 (non-relevant), d1 (grade 1), d2 (grade 2): linear gains as in trec_eval.
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    scores = evaluate_run({"a": {"d1": 1, "d2": 2}}, {"a": {"d9": 0.9, "d1": 0.5, "d2": 0.1}})
    assert scores["ndcg@10"] == pytest.approx(dcg / ideal)
    assert scores["mrr@10"] == pytest.approx(0.5)
    assert scores["map@100"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("unanswered", [{}, None], ids=["empty-list", "missing"])
def test_unanswered_queries_count_as_zero(unanswered: dict | None) -> None:
    qrels = {"a": {"d1": 1}, "b": {"d2": 1}, "only-non-relevant": {"d3": 0}}
    run: dict[str, dict[str, float]] = {"a": {"d1": 1.0, "x": 0.5}}
    if unanswered is not None:
        run["b"] = unanswered
    scores = evaluate_run(qrels, run, ks=(1, 2))
    assert scores["ndcg@10"] == pytest.approx(0.5)  # averaged over a and b, not only a
    assert scores["recall@1"] == pytest.approx(0.5)
    assert scores["recall@2"] == pytest.approx(0.5)
    assert evaluate_run(qrels, {})["ndcg@10"] == 0.0


def test_evaluate_run_ties_break_by_doc_id_and_inputs_unchanged() -> None:
    run = {"a": {"z": 1.0, "b": 1.0}}
    before = json.dumps(run)
    assert evaluate_run({"a": {"b": 1}}, run)["mrr@10"] == 1.0
    assert evaluate_run({"a": {"z": 1}}, run)["mrr@10"] == 0.5
    assert json.dumps(run) == before


@pytest.mark.parametrize("qrels", [{}, {"a": {"d": 0}}], ids=["empty", "no-relevant"])
def test_evaluate_run_needs_a_relevant_doc(qrels: dict) -> None:
    with pytest.raises(InputError, match="qrels"):
        evaluate_run(qrels, {"a": {"d": 1.0}})


def test_evaluate_run_rejects_bad_cutoff() -> None:
    with pytest.raises(InputError, match="ks"):
        evaluate_run({"a": {"d": 1}}, {"a": {"d": 1.0}}, ks=(0,))


def test_max_pool_keeps_best_chunk_per_doc_in_order() -> None:
    pooled = max_pool([("d1", 0.2), ("d2", 0.9), ("d1", 0.7), ("d3", 0.7), ("d2", 0.1)])
    assert list(pooled.items()) == [("d2", 0.9), ("d1", 0.7), ("d3", 0.7)]
    assert max_pool([]) == {}


def test_coverage() -> None:
    qrels = {"a": {"d1": 1}, "b": {"d2": 2, "d3": 0}, "c": {"d4": 1}, "skip": {"d5": 0}}
    candidates = {"a": {"d1", "x"}, "b": {"d3"}, "skip": {"d5"}}
    assert coverage(qrels, candidates) == pytest.approx(1 / 3)
    assert coverage(qrels, {}) == 0.0


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
    with pytest.raises(InputError, match="values_ms"):
        percentiles([])


def test_write_trec_run_format_and_ranks(tmp_path: Path) -> None:
    run = {"q2": {"b": 0.5, "a": 0.5, "c": 2.0}, "q1": {"x": 0.125}, "q3": {}}
    path = write_trec_run(tmp_path / "sub" / "run.trec", run, tag="bm25")
    assert path.read_text().splitlines() == [
        "q1 Q0 x 1 0.125 bm25",
        "q2 Q0 c 1 2.0 bm25",
        "q2 Q0 a 2 0.5 bm25",
        "q2 Q0 b 3 0.5 bm25",
    ]
    with pytest.raises(InputError, match="tag"):
        write_trec_run(tmp_path / "bad.trec", run, tag="two words")


def test_hard_negatives_skip_relevant_and_unjudged_queries() -> None:
    run = {"a": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}, "b": {"d1": 1.0}}
    qrels = {"a": {"d2": 1, "d3": 0}}
    assert hard_negatives(run, qrels, 2) == {"a": ["d1", "d3"]}
    assert hard_negatives(run, qrels, 0) == {"a": []}
    with pytest.raises(InputError, match="n"):
        hard_negatives(run, qrels, -1)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("The  Cat, sat!", "cat sat"), ("an apple a day", "apple day"), ("Theory", "theory"), ("", "")],
)
def test_normalize_answer(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f1"),
    [
        ("The Panthers", ["Panthers"], 1.0, 1.0),
        ("Denver Broncos won", ["Denver Broncos"], 0.0, 0.8),
        ("Broncos", ["Denver Broncos", "the Broncos"], 1.0, 1.0),
        ("Carolina", ["Denver Broncos"], 0.0, 0.0),
        ("the", ["a"], 1.0, 1.0),  # both normalise to nothing
        ("", ["Denver"], 0.0, 0.0),
        ("a a b", ["a b b"], 0.0, 2 / 3),  # articles vanish: "b" vs "b b" -> P=1, R=1/2
    ],
)
def test_exact_match_and_token_f1(prediction: str, golds: list[str], em: float, f1: float) -> None:
    assert exact_match(prediction, golds) == em
    assert token_f1(prediction, golds) == pytest.approx(f1)


def test_answer_metrics_need_golds() -> None:
    with pytest.raises(InputError, match="golds"):
        exact_match("x", [])
    with pytest.raises(InputError, match="golds"):
        token_f1("x", [])


# Loading: the ADI check above depends on it, so its contract is pinned here too.


def write_beir(root: Path, *, train: bool = False) -> Path:
    directory = root / "toy"
    (directory / "qrels").mkdir(parents=True)
    (directory / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "x"}\n')
    queries = [
        {"_id": "1", "text": "first", "answers": ["one"]},
        {"_id": "2", "text": "second", "metadata": {"answers": "two"}},
        {"_id": "3", "text": "no relevant doc"},
        {"_id": "4", "text": "no qrels"},
    ]
    (directory / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t2\n2\td1\t1\n2\td2\t0\n3\td1\t0\n")
    if train:
        (directory / "queries.train.jsonl").write_text('{"_id": "t1", "text": "train q"}\n')
        (directory / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nt1\td1\t1\n")
    return directory


def test_load_beir_keeps_judged_queries_and_answers(tmp_path: Path) -> None:
    dataset = load_beir(write_beir(tmp_path))
    assert dataset.name == "toy" and dataset.split == "test"
    assert dataset.corpus_path == tmp_path / "toy" / "corpus.jsonl"
    assert dataset.queries == {"1": "first", "2": "second"}
    assert dataset.qrels == {"1": {"d1": 2}, "2": {"d1": 1, "d2": 0}}
    assert dataset.answers == {"1": ["one"], "2": ["two"]}
    assert dataset.baselines == {}


def test_load_beir_train_split_uses_its_own_queries(tmp_path: Path) -> None:
    dataset = load_beir(write_beir(tmp_path, train=True), split="train")
    assert dataset.queries == {"t1": "train q"}
    assert dataset.qrels == {"t1": {"d1": 1}}


def test_load_beir_names_missing_file(tmp_path: Path) -> None:
    directory = write_beir(tmp_path)
    with pytest.raises(FileError, match="train.tsv"):
        load_beir(directory, split="train")
    (directory / "corpus.jsonl").unlink()
    with pytest.raises(FileError, match="corpus.jsonl"):
        load_beir(directory)
    with pytest.raises(InputError, match="directory"):
        load_beir(tmp_path / "absent")


def test_load_beir_reports_bad_line(tmp_path: Path) -> None:
    directory = write_beir(tmp_path)
    (directory / "qrels" / "test.tsv").write_text("1\td1\thigh\n")
    with pytest.raises(FileError, match="line 1"):
        load_beir(directory)


def test_published_baselines_label_check_runs() -> None:
    assert PUBLISHED_BASELINES["scifact"]["BM25 (BEIR paper)"]["ndcg@10"] == 0.665
    assert PUBLISHED_BASELINES["adi"]["bm25s check run (not published)"]["ndcg@10"] == 0.480
