"""Multi-hop evaluation: full recall@k, HotpotQA's EM/F1, per-type breakdowns, planners side by side."""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from eval.datasets import load_beir
from eval.metrics import full_recall, full_recall_at_k, hotpot_exact_match, hotpot_f1
from eval.plans import parse_planners
from eval.runner import run_answer_eval, run_retrieval_eval
from indexer.pipeline import Ingestor
from rag.config import Settings, load_settings
from rag.embedding import Embedder
from rag.errors import InputError
from rag.index.store import Store
from rag.types import Generation, JsonReply

# ids with spaces, as HotpotQA's Wikipedia titles
DOCS = [
    ("Harbor Lights", "Harbor Lights is the harbour traffic display. The Harbor Lights product is owned by the Tidewater team."),
    ("Tidewater team", "The Tidewater team has eight engineers. The Tidewater team is managed by Ines Okafor."),
    ("Beacon app", "Beacon is the ferry departures app. The Beacon product is owned by the Quayside team."),
    ("Quayside team", "The Quayside team builds mobile apps. The Quayside team is managed by Marcus Bell."),
    ("Old Pier", "The Old Pier was built in 1887 from cast iron."),
    ("New Pier", "The New Pier was built in 1962 from reinforced concrete."),
    ("Lighthouse", "The lighthouse lamp is visible for 22 nautical miles."),
    ("Fog horn", "A fog horn sounds twice every minute when visibility is poor."),
]
QUERIES = [
    ("q1", "Who is the manager of the group that owns Harbor Lights?", ["Harbor Lights", "Tidewater team"], "Ines Okafor", "bridge"),
    ("q2", "Which pier was built first, the Old Pier or the New Pier?", ["Old Pier", "New Pier"], "Old Pier", "comparison"),
    ("q3", "Who is the manager of the group that owns the Beacon product?", ["Beacon app", "Quayside team"], "Marcus Bell", "bridge"),
]


def make_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": t, "title": t, "text": x}) + "\n" for t, x in DOCS))
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": text, "answers": [a], "metadata": {"type": kind}}) + "\n"
        for q, text, _, a, kind in QUERIES
    ))
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t1" for q, _, gold, _, _ in QUERIES for d in gold)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


def ingest(settings: Settings, corpus: Path, collection: str) -> dict:
    store = Store(settings.sqlalchemy_url)
    try:
        return Ingestor(settings, store, Embedder(settings.embedding), collection).ingest([corpus]).as_json()
    finally:
        store.close()


class BridgeGenerator:
    """A stand-in LLM: names the team a passage says owns the product, splits "A or B" questions, echoes source 1."""

    model = "bridge"

    def generate_json(self, messages, schema, max_tokens, *, name="reply", timeout_s=None):  # noqa: ANN001, ANN201
        user = messages[-1]["content"]
        if name == "decompose":
            piers = re.search(r"the (\w+ Pier) or the (\w+ Pier)", user)
            if piers is None:
                return JsonReply({"sub_questions": [user.removeprefix("Question: ")]}, 30, 10)
            return JsonReply({"sub_questions": [f"When was the {p} built?" for p in piers.groups()]}, 30, 20)
        owner = re.search(r"owned by the (\w+ team)", user)
        if owner and "managed by" not in user:
            return JsonReply({"entity": owner.group(1), "query": "manager", "enough": False}, 50, 12)
        return JsonReply({"entity": "", "query": "", "enough": True}, 50, 8)

    def generate(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> Generation:
        body = messages[-1]["content"].split(">\n", 1)[1].split("\n</source>", 1)[0]
        return Generation(f"{body.split('. ')[0].rstrip('.')} [1].", 10, 10, self.model)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Path]:
    # Two sources fit the context: the question's own top two leave a bridge's second passage out.
    settings = load_settings(
        data_dir=tmp_path / "data", reranker={"model": ""}, retrieval={"top_k": 2}, generator={"context_tokens": 80}
    )
    return settings, make_dataset(tmp_path / "hop")


# metrics ------------------------------------------------------------------------------------------


def test_full_recall_needs_every_gold_document() -> None:
    qrels = {"a": {"x": 1, "y": 1}, "b": {"z": 1, "w": 0}, "c": {"n": 0}}
    ranked = {"a": ["x", "q", "y"], "b": ["q", "z"]}
    assert full_recall_at_k(qrels, ranked, 2) == {"a": 0.0, "b": 1.0}, "c has no relevant document"
    assert full_recall_at_k(qrels, ranked, None) == {"a": 1.0, "b": 1.0}
    assert full_recall(qrels, ranked, [3, 1, 2]) == {"full_recall@1": 0.0, "full_recall@2": 0.5, "full_recall@3": 1.0}
    assert full_recall_at_k(qrels, {}, 5) == {"a": 0.0, "b": 0.0}
    with pytest.raises(InputError, match="k"):
        full_recall_at_k(qrels, ranked, 0)


def test_full_recall_matches_an_independent_count() -> None:
    rng = random.Random(42)
    docs = [f"d{i}" for i in range(12)]
    qrels = {f"q{i}": {d: 1 for d in rng.sample(docs, rng.randint(1, 3))} for i in range(50)}
    ranked = {q: rng.sample(docs, rng.randint(0, 12)) for q in qrels}
    for k in (1, 2, 5, 10):
        expected = sum(all(d in ranked[q][:k] for d in rels) for q, rels in qrels.items()) / len(qrels)
        assert full_recall(qrels, ranked, [k])[f"full_recall@{k}"] == pytest.approx(expected)


def _official_normalize(s: str) -> str:
    """``normalize_answer`` of hotpot_evaluate_v1.py, verbatim in substance."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction: str, ground_truth: str) -> float:
    """``f1_score`` of hotpot_evaluate_v1.py (its F1 only)."""
    normalized_prediction = _official_normalize(prediction)
    normalized_ground_truth = _official_normalize(ground_truth)
    if normalized_prediction in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
        return 0.0
    if normalized_ground_truth in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
        return 0.0
    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


PAIRS = [
    ("Ines Okafor", "Ines Okafor"),
    ("the Old Pier", "Old Pier"),
    ("Old Pier, built in 1887", "Old Pier"),
    ("yes", "no"),
    ("yes", "Yes."),
    ("no", "the no-name band"),
    ("the no-name band", "no"),
    ("", "Marcus Bell"),
    ("", ""),
    ("Lucius Verus, Marcus Aurelius", "Marcus Aurelius and Lucius Verus"),
    ("pygmy chimpanzee", "Pygmy Chimpanzee!"),
    ("a a a", "a"),
]


@pytest.mark.parametrize("prediction,gold", PAIRS)
def test_hotpot_scores_match_the_official_script(prediction: str, gold: str) -> None:
    assert hotpot_f1(prediction, [gold]) == pytest.approx(_official_f1(prediction, gold))
    assert hotpot_exact_match(prediction, [gold]) == float(_official_normalize(prediction) == _official_normalize(gold))


def test_parse_planners() -> None:
    assert parse_planners("direct, iterative,direct") == ["direct", "iterative"]
    assert parse_planners("") == [] and parse_planners(["auto"]) == ["auto"]
    with pytest.raises(ValueError, match="unknown planner 'sideways'; valid: auto"):
        parse_planners("direct,sideways")


# datasets -----------------------------------------------------------------------------------------


def test_query_types_and_ids_with_spaces_load(tmp_path: Path) -> None:
    data = load_beir(make_dataset(tmp_path / "hop"))
    assert data.types == {"q1": "bridge", "q2": "comparison", "q3": "bridge"}
    assert data.qrels["q1"] == {"Harbor Lights": 1, "Tidewater team": 1}


# runs ---------------------------------------------------------------------------------------------


def test_retrieval_eval_reports_full_recall_by_type_and_per_planner(setup, tmp_path: Path) -> None:  # noqa: ANN001
    settings, dataset = setup
    out = tmp_path / "retr"
    report = run_retrieval_eval(
        settings, dataset, ingest=ingest, out_dir=out, ks=(1, 2, 5), planners=["direct", "iterative", "decompose"],
        generator=BridgeGenerator(),
    )
    full = report["full_recall"]["hybrid"]
    assert set(full) == {"full_recall@1", "full_recall@2", "full_recall@5"} and full["full_recall@1"] == 0.0
    assert set(report["by_type"]) == {"bridge", "comparison"} and report["by_type"]["bridge"]["queries"] == 2
    plans = report["plans"]
    assert plans["direct"]["hops_mean"] == 1.0 and plans["direct"]["fallback_rate"] == 0.0
    assert plans["iterative"]["by_type"]["bridge"]["handed_full_recall"] == 1.0, "the hop finds each team's manager"
    assert plans["iterative"]["handed_full_recall"] >= plans["direct"]["handed_full_recall"] + 0.3
    assert plans["decompose"]["by_type"]["comparison"]["handed_full_recall"] == 1.0
    assert report["plan_questions"]["q1"]["iterative"]["queries"][1] == "Tidewater team manager"
    md = (out / "report.md").read_text()
    assert "Full recall@k" in md and "### Type `bridge`" in md and "## Planners" in md
    trec = (out / "run.hybrid.trec").read_text()
    assert "Harbor%20Lights" in trec, "ids with spaces are escaped in TREC runs"


def test_answer_eval_compares_planners_side_by_side(setup, tmp_path: Path) -> None:  # noqa: ANN001
    settings, dataset = setup
    out = tmp_path / "ans"
    report = run_answer_eval(
        settings, dataset, ingest=ingest, out_dir=out, generator=BridgeGenerator(), planners=["direct", "iterative"]
    )
    modes = report["planners"]
    assert list(modes) == ["direct", "iterative"] and report["f1"] == modes["direct"]["f1"]
    direct, iterative = modes["direct"], modes["iterative"]
    assert direct["hops_mean"] == 1.0 and iterative["by_type"]["bridge"]["hops_mean"] == 2.0
    assert iterative["handed_full_recall"] > direct["handed_full_recall"]
    assert set(iterative["by_type"]) == {"bridge", "comparison"}
    for key in ("hotpot_em", "hotpot_f1", "fallback_rate"):
        assert 0.0 <= iterative[key] <= 1.0
    assert iterative["latency_ms"]["plan"]["p50"] > 0 and direct["latency_ms"]["plan"]["p50"] == 0
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [(r["id"], r["planner"]) for r in rows] == [(q, m) for q, *_ in QUERIES for m in ("direct", "iterative")]
    assert "## Planners" in (out / "report.md").read_text()
