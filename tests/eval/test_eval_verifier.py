"""``rag eval verifier``: readers, the split, the metrics, and figures on fixtures with hand-computed answers."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from eval.verifier import (
    ClaimPair,
    GoldSpan,
    auroc,
    best_threshold,
    binary_scores,
    detect_layout,
    evaluate,
    load_verify_dataset,
    overlaps,
    run_verifier_eval,
    scifact_part,
    scifact_split,
    scorer_threshold,
)
from rag.errors import FileError, InputError
from rag.verify.support import Support

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verify"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "verify"
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


class Overlap:
    """A stand-in scorer: the share of the claim's words found in the source; the span is the whole source."""

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        words = _words(claim)
        return [Support(len(words & _words(s)) / len(words) if words else 1.0, 0, len(s)) for s in sources]


class FittedOverlap(Overlap):
    """The same scores with a threshold fitted with the model, and a contradiction signal."""

    threshold = 0.9

    def contradiction(self, claim: str, sources: Sequence[str], context: str = "") -> list[float]:
        negated = _words(claim) & {"not", "never"}
        return [1.0 if negated - _words(s) else 0.0 for s in sources]


def _settings(tmp_path: Path):  # noqa: ANN202
    from rag.config import load_settings

    return load_settings(data_dir=tmp_path / "data", reranker={"model": ""})


# metrics ------------------------------------------------------------------------------------------


def test_binary_scores_by_hand() -> None:
    m = binary_scores([True, True, True, False, False], [True, False, True, True, False])
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["positives"], m["n"]) == (2, 1, 1, 1, 3, 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("gold", "predicted"), [([], []), ([False, False], [False, False]), ([True], [False])])
def test_binary_scores_are_zero_without_denominators(gold: list[bool], predicted: list[bool]) -> None:
    m = binary_scores(gold, predicted)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_binary_scores_reject_unequal_lengths() -> None:
    with pytest.raises(InputError, match="predicted"):
        binary_scores([True], [True, False])


def test_auroc_on_a_tiny_example_with_a_tie() -> None:
    # Positives 0.9 and 0.4, negatives 0.4 and 0.1: pairs won 1 + 1 + 0.5 (tie) + 1 of 4.
    assert auroc([True, True, False, False], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert auroc([True, False], [0.0, 1.0]) == 0.0
    assert auroc([True, True], [0.5, 0.6]) is None and auroc([], []) is None


def test_auroc_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(42)
    labels = [rng.random() < 0.3 for _ in range(300)]
    scores = [round(rng.random(), 1) for _ in range(300)]  # coarse: many ties
    assert auroc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_best_threshold_sweeps_every_distinct_score() -> None:
    # Unsupported iff score < t: t = 1.0 flags 0.25, 0.8, 0.2 -> tp 2, fp 1 -> F1 0.8.
    best = best_threshold([False, True, True, False, False], [1.0, 0.25, 0.8, 0.2, 1.0], below=True)
    assert best == {"threshold": 1.0, "precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8)}
    above = best_threshold([True, False], [0.9, 0.1], below=False)
    assert above is not None and above["f1"] == 1.0 and 0.1 < above["threshold"] <= 0.9
    assert best_threshold([], [], below=True) is None


@pytest.mark.parametrize(
    ("start", "end", "hit"),
    [(0, 10, True), (10, 20, False), (20, 30, True), (25, 26, True), (30, 40, False), (5, 45, True)],
)
def test_a_sentence_is_unsupported_when_a_span_shares_a_character(start: int, end: int, hit: bool) -> None:
    spans = [GoldSpan(5, 10, "a"), GoldSpan(20, 30, "b")]  # end-exclusive, like str slices
    assert overlaps(start, end, spans) is hit


# readers ------------------------------------------------------------------------------------------


def test_ragtruth_layout_is_read() -> None:
    data = load_verify_dataset(FIXTURES / "ragtruth_tiny.jsonl")
    assert data.layout == "ragtruth" and data.name == "verify" and len(data) == 5
    r2 = data.responses[1]
    assert (r2.id, r2.model, r2.hallucinated) == ("r2", "m1", True)
    assert [r2.response[s.start : s.end] for s in r2.spans] == ["The bird flew away"]
    assert r2.spans[0].label == "Evident Baseless Info"
    assert data.responses[4].passages == ("The sun is hot.", "The moon is cold.")


def test_scifact_layout_is_read() -> None:
    data = load_verify_dataset(FIXTURES / "scifact_tiny.jsonl")
    assert data.layout == "scifact" and len(data) == 7
    assert data.pairs[2] == ClaimPair(
        "p3", "3", "The cat never sat on the mat.", "The cat sat on the mat. The dog ran in the park.", "contradicted"
    )


def test_scifact_abstract_may_come_as_sentences_and_labels_in_the_original_spelling(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    row = {"claim": "A claim.", "abstract_sentences": ["One.", "Two."], "label": "NOT_ENOUGH_INFO"}
    path.write_text(json.dumps(row) + "\n")
    (pair,) = load_verify_dataset(path).pairs
    assert (pair.abstract, pair.label, pair.claim_id, pair.id) == ("One. Two.", "no_evidence", "A claim.", "line-1")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("neither.jsonl", r"line 1: neither layout: RAGTruth needs fields passages, response, spans; .*found answer, question"),
        ("ragtruth_missing_spans.jsonl", r"line 1: missing field 'spans' \(RAGTruth layout\)"),
    ],
)
def test_a_file_of_neither_layout_names_the_file_and_the_field(name: str, message: str) -> None:
    with pytest.raises(FileError, match=message) as caught:
        load_verify_dataset(FIXTURES / name)
    assert caught.value.path == str(FIXTURES / name)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"claim": "x", "abstract": "y", "label": "maybe"}'], r"line 1: field 'label' is 'maybe'"),
        (['{"claim": "x", "abstract": "y", "label": "supported"}', "not json"], r"line 2: not JSON"),
        (['{"passages": "one", "response": "r", "spans": []}'], r"field 'passages' must be a list of strings"),
        (['{"passages": ["p"], "response": "r", "spans": [{"start": "0"}]}'], r"integer start and end"),
        (["", "  "], r"no records"),
        (["[1, 2]"], r"must be a JSON object"),
    ],
)
def test_bad_records_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FileError, match=message):
        load_verify_dataset(path)


def test_a_later_record_of_the_other_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"passages": ["p"], "response": "r", "spans": []}\n{"claim": "c", "label": "supported"}\n')
    with pytest.raises(FileError, match=r"line 2: missing field 'passages', 'response', 'spans'"):
        load_verify_dataset(path)


def test_a_folder_needs_exactly_one_jsonl(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="does not exist"):
        load_verify_dataset(tmp_path / "nope")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileError, match=r"no \.jsonl file in this folder \(sub-folders: sub\)"):
        load_verify_dataset(tmp_path)
    (tmp_path / "a.jsonl").write_text('{"claim": "c", "abstract": "a", "label": "supported"}\n')
    assert load_verify_dataset(tmp_path).layout == "scifact"
    (tmp_path / "b.jsonl").write_text("")
    with pytest.raises(FileError, match=r"several \.jsonl files \(a\.jsonl, b\.jsonl\)"):
        load_verify_dataset(tmp_path)


def test_detect_layout_from_one_row() -> None:
    assert detect_layout({"passages": [], "response": "", "spans": []}, Path("x.jsonl")) == "ragtruth"
    assert detect_layout({"claim": "", "abstract_sentences": [], "label": ""}, Path("x.jsonl")) == "scifact"
    with pytest.raises(FileError, match="x.jsonl: line 3: missing field 'abstract'"):
        detect_layout({"claim": "", "label": ""}, Path("x.jsonl"), 3)


# the split ----------------------------------------------------------------------------------------


def test_scifact_split_is_a_deterministic_partition_by_claim() -> None:
    rows = [{"claim_id": i // 2, "n": i} for i in range(4000)]  # two pairs per claim
    parts = {part: scifact_split(rows, part) for part in ("train", "dev", "test")}
    assert sorted(r["n"] for p in parts.values() for r in p) == list(range(4000))
    for part, got in parts.items():
        assert [r["n"] for r in got] == sorted(r["n"] for r in got)  # input order kept
        assert all(scifact_part(r["claim_id"]) == part for r in got)
    claims = {part: {r["claim_id"] for r in got} for part, got in parts.items()}
    assert not (claims["train"] & claims["dev"] or claims["train"] & claims["test"] or claims["dev"] & claims["test"])
    assert [len(claims[p]) / 2000 for p in ("train", "dev", "test")] == pytest.approx([0.6, 0.2, 0.2], abs=0.03)
    assert scifact_split(list(reversed(rows)), "dev") == list(reversed(parts["dev"]))
    assert scifact_split(rows, "dev", seed=14) != parts["dev"]


def test_scifact_split_takes_pairs_and_names_a_bad_part() -> None:
    pairs = [ClaimPair(f"p{i}", str(i), "c", "a", "supported") for i in range(50)]
    assert scifact_split(pairs, "test") == [p for p in pairs if scifact_part(p.claim_id) == "test"]
    assert scifact_part(0) == scifact_part("0")  # raw rows hold ints, ClaimPair strings
    with pytest.raises(InputError, match="'validation' is not one of train, dev, test"):
        scifact_split(pairs, "validation")  # type: ignore[arg-type]


def test_scifact_split_on_the_shared_file() -> None:
    path = SHARED / "scifact_claims" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"SciFact pairs not available at {path} (../shared is absent)")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    parts = [scifact_split(rows, part) for part in ("train", "dev", "test")]
    assert sum(map(len, parts)) == len(rows) == 919
    ids = [{r["claim_id"] for r in part} for part in parts]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert all(0.15 < len(part) / len(rows) < 0.65 for part in parts)


# figures ------------------------------------------------------------------------------------------


def test_ragtruth_figures_by_hand() -> None:
    data = load_verify_dataset(FIXTURES / "ragtruth_tiny.jsonl")
    summary, rows = evaluate(data, {"overlap": Overlap}, default_threshold=0.55)
    r = summary["scorers"]["overlap"]
    assert (r["scorer"], r["role"], r["threshold"], r["threshold_source"]) == (
        "Overlap", "configured", 0.55, "settings.verifier.support_threshold",
    )
    # Responses: gold [F, T, T, F, F], lowest claim scores [1, 0.25, 0.8, 0.2, 1] -> flagged [F, T, F, T, F].
    resp = r["response"]
    assert (resp["tp"], resp["fp"], resp["fn"], resp["tn"]) == (1, 1, 1, 2)
    assert (resp["precision"], resp["recall"], resp["f1"]) == (0.5, 0.5, 0.5)
    assert resp["auroc"] == pytest.approx(4 / 6)
    # Sentences: 8; gold-unsupported r2's and r3's second ones (0.25, 0.8); flagged 0.25 and r4's 0.2.
    # AUROC: each of the two beats the five negatives at 1.0 and loses to the 0.2: 10 of 12 pairs.
    sent = r["sentence"]
    assert (sent["tp"], sent["fp"], sent["fn"], sent["tn"], sent["n"]) == (1, 1, 1, 5, 8)
    assert sent["f1"] == 0.5 and sent["auroc"] == pytest.approx(10 / 12)
    assert r["best_threshold"]["response"]["threshold"] == 1.0
    assert r["best_threshold"]["response"]["f1"] == pytest.approx(0.8)
    assert r["by_model"]["m1"]["f1"] == 1.0 and r["by_model"]["m2"]["f1"] == 0.0
    assert r["spans_caught_by_type"] == {
        "Evident Baseless Info": {"caught": 1, "spans": 1}, "Subtle Conflict": {"caught": 0, "spans": 1},
    }
    assert r["claims_per_response"] == pytest.approx(8 / 5)
    # The best passage wins: r5's claim is 0.5 against the sun and 1.0 against the moon.
    assert rows[4]["claims"][0]["score"] == {"overlap": 1.0}
    assert rows[4]["claims"][0]["evidence"] == {"overlap": "The moon is cold."}
    assert [c["gold_unsupported"] for c in rows[2]["claims"]] == [False, True]
    # The first four responses share their article: one cold start, then warm; r5 has new passages.
    assert [row["cold"] for row in rows] == [True, False, False, False, True]
    assert r["latency_ms"]["cold_items"] == 2 and r["latency_ms"]["p50"] is not None


def test_a_response_s_framing_sentences_are_not_scored(tmp_path: Path) -> None:
    # "Sure!" and the word count of the announcement are in no passage: scored, they would flag the response.
    row = {
        "id": "f1", "model": "m1", "passages": ["The cat sat on the mat."], "spans": [], "hallucinated": False,
        "response": "Sure! Here is a summary of the article in 6 words:\nThe cat sat on the mat.",
    }
    path = tmp_path / "framed.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    summary, rows = evaluate(load_verify_dataset(path), {"overlap": Overlap}, default_threshold=0.55)
    assert [c["text"] for c in rows[0]["claims"]] == ["The cat sat on the mat."]
    assert summary["scorers"]["overlap"]["response"]["fp"] == 0


def test_a_scorer_threshold_wins_over_the_setting() -> None:
    assert scorer_threshold(FittedOverlap(), 0.55) == (0.9, "scorer.threshold")
    assert scorer_threshold(Overlap(), 0.55) == (0.55, "settings.verifier.support_threshold")
    data = load_verify_dataset(FIXTURES / "ragtruth_tiny.jsonl")
    summary, _ = evaluate(data, {"fitted": FittedOverlap, "overlap": Overlap}, default_threshold=0.55)
    fitted = summary["scorers"]["fitted"]
    # At 0.9 r3's 0.8 is flagged too: tp 2, fp 1, fn 0.
    assert fitted["threshold"] == 0.9 and fitted["response"]["f1"] == pytest.approx(0.8)
    assert summary["scorers"]["overlap"]["role"] == "baseline"
    assert summary["comparison"]["configured"] == "fitted"
    assert summary["comparison"]["delta"] == {"overlap": pytest.approx(0.3)}


def test_scifact_figures_by_hand() -> None:
    data = load_verify_dataset(FIXTURES / "scifact_tiny.jsonl")
    summary, rows = evaluate(data, {"overlap": Overlap}, default_threshold=0.55)
    r = summary["scorers"]["overlap"]
    # Scores 1, 0.8, 0.833, 0, 0.4, 0, 0.4; gold supported p1 p2 p6; predicted supported p1 p2 p3.
    assert [round(row["score"]["overlap"], 3) for row in rows] == [1.0, 0.8, 0.833, 0.0, 0.4, 0.0, 0.4]
    sup, rest = r["supported"], r["not_supported"]
    assert (sup["tp"], sup["fp"], sup["fn"]) == (2, 1, 1) and sup["f1"] == pytest.approx(2 / 3)
    assert (rest["tp"], rest["fp"], rest["fn"]) == (3, 1, 1) and rest["f1"] == pytest.approx(0.75)
    assert r["auroc"] == pytest.approx(7.5 / 12)
    assert r["confusion"] == {
        "kind": "2-way", "rows": "gold", "columns": "predicted",
        "counts": {"supported": {"supported": 2, "not_supported": 1}, "not_supported": {"supported": 1, "not_supported": 3}},
    }
    assert r["by_label"]["contradicted"] == {"pairs": 2, "mean_score": pytest.approx((5 / 6 + 0.4) / 2), "flagged": 1}
    assert summary["comparison"] == {"metric": "F1, supported class", "configured": "overlap", "f1": sup["f1"], "delta": {}}


def test_scifact_three_way_confusion_when_the_scorer_tells_contradiction() -> None:
    data = load_verify_dataset(FIXTURES / "scifact_tiny.jsonl")
    summary, _ = evaluate(data, {"fitted": FittedOverlap}, default_threshold=0.55)
    r = summary["scorers"]["fitted"]
    # At 0.9 only p1 is supported; p3 and p7 negate the abstract.
    assert r["confusion"]["kind"] == "3-way"
    assert r["confusion"]["counts"] == {
        "supported": {"supported": 1, "no_evidence": 2},
        "contradicted": {"contradicted": 2},
        "no_evidence": {"no_evidence": 2},
    }


def test_run_writes_the_three_files_with_a_split_and_a_limit(tmp_path: Path) -> None:
    report = run_verifier_eval(
        _settings(tmp_path), FIXTURES / "scifact_tiny.jsonl", out_dir=tmp_path / "out", scorers={"overlap": Overlap},
        split="train", limit=2,
    )
    train = [p for p in load_verify_dataset(FIXTURES / "scifact_tiny.jsonl").pairs if scifact_part(p.claim_id) == "train"]
    assert report["items"] == min(2, len(train)) and report["items_available"] == len(train)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.json", "report.md", "items.jsonl"}
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == [p.id for p in train[:2]]
    assert "## Supported against contradicted and no evidence" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"limit": -1}, "limit"), ({"split": "dev"}, "split"), ({"compare": ["nli"], "scorers": None}, "compare")],
)
def test_run_names_a_bad_argument(tmp_path: Path, kwargs: dict, param: str) -> None:
    args = {"out_dir": tmp_path / "out", "scorers": {"overlap": Overlap}, **kwargs}
    with pytest.raises(InputError) as caught:
        run_verifier_eval(_settings(tmp_path), FIXTURES / "ragtruth_tiny.jsonl", **args)
    assert caught.value.param == param


# the command --------------------------------------------------------------------------------------


def test_cli_evaluates_the_hybrid_scorer_and_writes_the_report(rag, tmp_path: Path, monkeypatch, embedder) -> None:  # noqa: ANN001
    monkeypatch.setattr("rag.embedding.Embedder", lambda config: embedder)
    code, out, err = rag("eval", "verifier", "--dataset", str(FIXTURES / "ragtruth_tiny.jsonl"), "--out", "report")
    assert code == 0, err
    assert re.search(r"^hybrid +response P \d\.\d{3} R \d\.\d{3} F1 \d\.\d{3}", out, re.MULTILINE)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["items.jsonl", "report.json", "report.md"]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["scorers"]) == ["hybrid", "baseline"]  # the configured scorer, then --compare's default
    assert report["scorers"]["hybrid"]["scorer"] == report["scorers"]["baseline"]["scorer"] == "HybridSupportScorer"
    assert report["scorers"]["hybrid"]["response"]["n"] == report["scorers"]["baseline"]["response"]["n"] == 5
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| LettuceDetect-large | published |" in md and "0.597" in md
    assert len((tmp_path / "report" / "items.jsonl").read_text().splitlines()) == 5


def test_cli_names_the_file_of_neither_layout_without_a_traceback(rag) -> None:  # noqa: ANN001
    code, out, err = rag("eval", "verifier", "--dataset", str(FIXTURES / "neither.jsonl"))
    assert code == 1
    assert "neither.jsonl: line 1: neither layout" in err and "Traceback" not in err + out
    code, _, err = rag("eval", "verifier", "--dataset", str(FIXTURES / "ragtruth_tiny.jsonl"), "--compare", "nli")
    assert code == 2 and "compare: unknown scorer 'nli'; valid: hybrid | baseline | model" in err
    code, out, err = rag("eval", "verifier", "--dataset", str(FIXTURES / "ragtruth_tiny.jsonl"), "--compare", "model")
    assert code != 0 and "RAG_VERIFIER__MODEL: is empty" in err and "Traceback" not in err + out
