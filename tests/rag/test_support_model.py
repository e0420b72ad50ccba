"""The learned support model: windows, calibration, its settings file, synthetic pairs, and one tiny training run.

The accuracy check over ``tests/fixtures/verify/twisted.jsonl`` needs a trained model: it is marked
``slow`` and runs with ``-m slow`` when ``RAG_TEST_VERIFIER_MODEL`` names one or
``.rag/verifiers/default`` holds one.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

from eval.training.claims import (
    NEGATIVE_KINDS,
    POSITIVE_KINDS,
    SupportPair,
    compress,
    feedback_pairs,
    flip_comparison,
    group_part,
    join,
    names,
    paraphrase,
    reorder,
    reverse_relation,
    scifact_pairs,
    swap_entity,
    swap_number,
    synthetic_pairs,
    toggle_negation,
)
from eval.training.verifier import binary_figures, choose_threshold, fit_logistic, fit_platt, read_corpus
from rag.errors import ConfigError, InputError, ModelLoadError
from rag.index.store import Judgment
from rag.types import Chunk
from rag.verify.model import (
    FEATURES,
    SETTINGS_FILE,
    Calibration,
    Stack,
    CrossEncoderSupportScorer,
    capped,
    default_model_dir,
    features,
    load_support_scorer,
    read_settings,
    resolve_backend,
    select_windows,
    write_settings,
)
from rag.verify.lexical import claim_names, numbers, sentence_spans

FIXTURE = Path(__file__).parents[1] / "fixtures" / "verify" / "twisted.jsonl"
SOURCE = (
    "The bridge opened in 1932. It carries six lanes of traffic. Tolls were abolished in 1970. "
    "The city council owns the bridge. Repairs are planned for 2026."
)


# --- windows --------------------------------------------------------------------------------------


def test_windows_put_the_sentence_holding_the_claim_first() -> None:
    windows = select_windows("The council owns the bridge.", SOURCE, k=3)
    assert windows[0].text == "The city council owns the bridge."
    assert SOURCE[windows[0].start : windows[0].end] == windows[0].text
    assert len({w.text for w in windows}) == 3
    assert all(windows[0].text in w.text for w in windows[1:])  # the runs around it come next


def test_windows_find_evidence_past_the_first_tokens_of_a_long_source() -> None:
    filler = " ".join(f"Paragraph {i} talks about the weather on day {i}." for i in range(60))
    source = f"{filler} The museum closes at 6 pm on Sundays."
    best = select_windows("The museum closes at 6 pm on Sundays.", source, k=1)[0]
    assert best.text == "The museum closes at 6 pm on Sundays."
    assert (best.start, best.end) == (len(filler) + 1, len(source))


def test_gathered_window_joins_sentences_apart_in_source_order() -> None:
    source = "Anna Berg founded Lumen. The weather was fine. Nothing else happened. Lumen is based in Oslo."
    windows = select_windows("Anna Berg founded Lumen, which is based in Oslo.", source, k=4)
    gathered = [w for w in windows if w.text == "Anna Berg founded Lumen. Lumen is based in Oslo."]
    assert gathered and (gathered[0].start, gathered[0].end) == (0, len(source))
    assert windows[0] == gathered[0]  # it alone holds every term


@pytest.mark.parametrize("source", ["", "   \n "])
def test_windows_of_an_empty_source(source: str) -> None:
    assert select_windows("Anything.", source) == []


def test_an_overlong_sentence_is_cut_into_pieces() -> None:
    source = " ".join(["word"] * 400) + " target phrase here"
    windows = select_windows("target phrase", source, k=1, max_sentences=1)
    assert len(windows[0].text) <= 600 and windows[0].text.endswith("target phrase here")


# --- checks kept from the hybrid scorer -----------------------------------------------------------


def test_missing_numbers_cap_and_missing_names_scale_the_score() -> None:
    assert capped(0.9, "It opened in 1932.", SOURCE) == pytest.approx(0.9)
    assert capped(0.9, "It opened in 1933.", SOURCE) == pytest.approx(0.2)
    assert capped(0.9, "The Harbour Trust owns the bridge.", SOURCE) == pytest.approx(0.45)  # neither name there
    assert capped(0.9, "Additionally, the council owns the bridge.", SOURCE) == pytest.approx(0.9)  # first word is no name


def test_claim_names_skip_the_first_word_unless_an_acronym() -> None:
    assert claim_names("Officials said Oslo was closed.") == {"oslo"}
    assert "nasa" in claim_names("NASA launched it.")


def test_features_flag_each_twist_against_the_window() -> None:
    source = "Arsenal beat Chelsea in the final. The museum is open on Sundays. Purchases above 500 EUR need approval."
    names_ = list(FEATURES)

    def feats(claim: str) -> dict[str, float]:
        return dict(zip(names_, features(claim, source, 0.9, source, 2.0), strict=True))

    plain = feats("Arsenal beat Chelsea in the final.")
    assert plain["logit"] == 2.0 and plain["window_recall"] == 0.9
    assert [plain[k] for k in names_[4:9]] == [0.0] * 5 and plain["source_recall"] == plain["names_share"] == 1.0
    assert plain["anchor_names_share"] == 1.0 and plain["window_novel_words"] == 0.0
    assert feats("Chelsea beat Arsenal in the final.")["order_reversed"] == 1.0
    assert feats("The museum is not open on Sundays.")["negation_mismatch"] == 1.0
    assert feats("Purchases below 500 EUR need approval.")["opposite"] == 1.0
    assert feats("Purchases above 600 EUR need approval.")["number_missing"] == 1.0
    invented = feats("The Louvre museum sells cheap tickets on Sundays.")
    assert invented["names_share"] == 0.5 and invented["novel_words"] == pytest.approx(0.8)  # Louvre, not Sundays


def test_stack_is_a_logistic_regression() -> None:
    rows = np.array([[0.0, 1.0], [2.0, 0.0]])
    assert Stack((1.0, -2.0), 0.5)(rows) == pytest.approx(1 / (1 + np.exp(-np.array([-1.5, 2.5]))))


def test_fit_logistic_recovers_known_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (5000, 2))
    y = rng.random(5000) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    weights, bias = fit_logistic(x, y, ridge=1e-6)
    assert weights == pytest.approx([2.0, -1.0], abs=0.15) and bias == pytest.approx(0.5, abs=0.1)


# --- calibration and threshold --------------------------------------------------------------------


def test_platt_fit_recovers_a_known_scaling() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 4000)
    labels = rng.random(4000) < 1 / (1 + np.exp(-(1.5 * logits - 0.7)))
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(1.5, abs=0.15) and b == pytest.approx(-0.7, abs=0.15)
    probs = Calibration(a, b)(np.array([0.0, 10.0, -10.0]))
    assert probs[0] == pytest.approx(1 / (1 + np.exp(-b)))
    assert probs[1] > 0.99 and probs[2] < 0.01


def test_platt_on_separable_data_stays_finite() -> None:
    a, b = fit_platt([-3, -2, -1, 1, 2, 3], [0, 0, 0, 1, 1, 1])
    assert np.isfinite([a, b]).all() and a > 0


def test_binary_figures_match_a_hand_count() -> None:
    f = binary_figures([True, True, False, False, False], [0.9, 0.3, 0.6, 0.1, 0.2], 0.5)
    # supported: predicted {0, 2}, gold {0, 1} -> p 1/2, r 1/2; unsupported: predicted {1, 3, 4}, gold {2, 3, 4} -> 2/3, 2/3
    assert (f["supported_precision"], f["supported_recall"], f["supported_f1"]) == (0.5, 0.5, 0.5)
    assert f["unsupported_f1"] == pytest.approx(0.6667, abs=1e-4) and f["accuracy"] == 0.6


def test_threshold_separates_the_classes_and_prefers_one_half_on_ties() -> None:
    labels = [True] * 5 + [False] * 5
    t, table = choose_threshold(labels, [0.9, 0.8, 0.85, 0.95, 0.7, 0.1, 0.2, 0.3, 0.25, 0.15])
    assert 0.3 < t <= 0.7 and t == 0.5 and table["0.50"] == 1.0
    assert choose_threshold([], []) == (0.5, {})


# --- the settings file ----------------------------------------------------------------------------


def _settings(**over: object) -> dict[str, object]:
    return {"calibration": {"a": 1.2, "b": -0.3}, "threshold": 0.42, "max_length": 128, "windows_per_claim": 2, **over}


def test_settings_round_trip(tmp_path: Path) -> None:
    write_settings(tmp_path, _settings(note="kept"))
    back = read_settings(tmp_path)
    assert back["calibration"] == {"a": 1.2, "b": -0.3} and back["threshold"] == 0.42 and back["note"] == "kept"
    scorer = CrossEncoderSupportScorer(tmp_path, "torch")  # cheap: nothing loads before warm_up
    assert scorer.threshold == 0.42 and scorer.calibration == Calibration(1.2, -0.3) and scorer.stack is None
    stack = {"features": list(FEATURES), "weights": [0.5] * len(FEATURES), "bias": -1.0}
    write_settings(tmp_path, _settings(stack=stack))
    assert CrossEncoderSupportScorer(tmp_path, "torch").stack == Stack((0.5,) * len(FEATURES), -1.0)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "unreadable"),
        ("[1, 2]", "JSON object"),
        (json.dumps(_settings(threshold=1.5)), "threshold"),
        (json.dumps(_settings(calibration={"a": "x", "b": 0})), "calibration"),
        (json.dumps(_settings(max_length=8)), "max_length"),
        (json.dumps(_settings(windows_per_claim=0)), "windows_per_claim"),
        (json.dumps(_settings(stack={"features": ["logit"], "weights": [1.0], "bias": 0.0})), "stack"),
    ],
)
def test_bad_settings_file_names_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / SETTINGS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment) as err:
        read_settings(tmp_path)
    assert str(tmp_path / SETTINGS_FILE) in str(err.value) and err.value.setting == "RAG_VERIFIER__MODEL"


def test_bad_model_directories_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_support_scorer(tmp_path / "missing")
    with pytest.raises(ConfigError, match="rag train-verifier"):
        load_support_scorer(tmp_path)  # no rag_verifier.json
    write_settings(tmp_path, _settings())
    with pytest.raises(ModelLoadError, match="config.json") as err:
        load_support_scorer(tmp_path, "torch")
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ModelLoadError, match="model_qint8.onnx"):
        load_support_scorer(tmp_path, "onnx-int8")
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path))):
        load_support_scorer(tmp_path, "torch")  # files present but not a model
    with pytest.raises(ConfigError, match="auto | torch | onnx | onnx-int8"):
        resolve_backend(tmp_path, "tensorrt")
    assert resolve_backend(tmp_path, "auto") == "torch"  # no int8 export there


def test_default_model_dir() -> None:
    assert default_model_dir(Path("/data")) == Path("/data/verifiers/default")


# --- synthetic pairs: each twist changes the sentence the way it says --------------------------------


def test_swap_number_changes_exactly_one_value() -> None:
    rng = random.Random(3)
    for sentence in ["The bridge opened in 1932.", "It has 35 nurses and 1,200 beds.", "Prices rose 4.5 percent."]:
        twisted = swap_number(sentence, rng)
        assert twisted is not None and twisted != sentence
        assert numbers(twisted) != numbers(sentence)
        assert len(twisted.split()) == len(sentence.split())
    assert swap_number("It opened in March.", rng) != "It opened in March."  # months count too
    assert swap_number("No figures here.", rng) is None


def test_swap_entity_puts_in_a_name_the_sentence_lacked() -> None:
    rng = random.Random(1)
    twisted = swap_entity("The report was written by Maria Keller in Berlin.", ["Tom Berger", "Maria Keller", "Paris"], rng)
    assert twisted in {"The report was written by Tom Berger in Berlin.", "The report was written by Maria Keller in Paris."}
    assert swap_entity("no names at all here.", ["Tom Berger"], rng) is None


def test_names_skip_a_plain_first_word_and_function_words() -> None:
    found = [t for *_, t in names("However, the Data team met Maria Keller in New York.")]
    assert found == ["Data", "Maria Keller", "New York"]
    assert [t for *_, t in names("Officials met NASA staff.")] == ["NASA"]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Bicycles can be parked for free.", "Bicycles cannot be parked for free."),
        ("Bicycles cannot be parked for free.", "Bicycles can be parked for free."),
        ("The museum is open on Sundays.", "The museum is not open on Sundays."),
        ("The museum is not open on Sundays.", "The museum is open on Sundays."),
        ("He didn't sign it.", "He did sign it."),
        ("She never travels.", "She always travels."),
    ],
)
def test_toggle_negation(sentence: str, expected: str) -> None:
    assert toggle_negation(sentence, random.Random(0)) == expected


def test_toggle_negation_needs_a_verb_to_negate() -> None:
    assert toggle_negation("Green leaves everywhere.", random.Random(0)) is None


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Purchases above 500 EUR need approval.", "Purchases below 500 EUR need approval."),
        ("Backups run before each release.", "Backups run after each release."),
        ("Prices rose sharply.", "Prices fell sharply."),
        ("More staff were hired.", "Fewer staff were hired."),
    ],
)
def test_flip_comparison(sentence: str, expected: str) -> None:
    assert flip_comparison(sentence, random.Random(0)) == expected


def test_reverse_relation_swaps_names_or_numbers() -> None:
    assert reverse_relation("Arsenal beat Chelsea in the final.", random.Random(0)) == "Chelsea beat Arsenal in the final."
    assert reverse_relation("It grew from 10 to 20 members.", random.Random(0)) == "It grew from 20 to 10 members."
    assert reverse_relation("Only Paris is named.", random.Random(0)) is None


def test_rewrites_that_keep_the_meaning() -> None:
    rng = random.Random(0)
    assert compress("The tower (built in 1889) is in Paris.", rng) == "The tower is in Paris."
    assert compress("The club, which was founded in 1901, plays in red.", rng) == "The club plays in red."
    assert reorder("In 1990, the club moved to Leeds.", rng) == "The club moved to Leeds in 1990."
    said = paraphrase("The mayor said the road purchased last year is closed.", random.Random(1))
    assert said is not None and said != "The mayor said the road purchased last year is closed."
    assert join("The shop opens at nine.", "It closes at six.") == "The shop opens at nine, and it closes at six."
    assert compress("Short one.", rng) is None


def _documents() -> list[tuple[str, str]]:
    people = ["Maria Keller", "Tom Berger", "Anna Berg", "Lena Fischer", "Paul Weber", "Clara Vogel"]
    cities = ["Berlin", "Vienna", "Oslo", "Lisbon", "Madrid", "Zurich"]
    docs = []
    for i, (who, where) in enumerate(zip(people, cities, strict=True)):
        docs.append((
            f"doc{i}",
            f"{who} opened a bakery in {where} in {1990 + i}. The bakery (on the main square) sells {20 + i} kinds of bread. "
            f"In {2000 + i}, {who} sold the bakery to a rival, and it has not closed since. "
            f"Prices there rose more than in other shops before the war.",
        ))
    return docs


def test_synthetic_pairs_are_seeded_labelled_and_windowed() -> None:
    docs = _documents()
    pairs = synthetic_pairs(docs, seed=5, sentences_per_document=3)
    assert pairs == synthetic_pairs(docs, seed=5, sentences_per_document=3)
    assert {p.kind for p in pairs} <= set(POSITIVE_KINDS) | set(NEGATIVE_KINDS)
    assert {p.label for p in pairs} == {0.0, 1.0}
    texts = dict(docs)
    for p in pairs:
        assert p.label == (1.0 if p.kind in POSITIVE_KINDS else 0.0)
        if p.kind not in ("no-evidence",):  # a window of its own document (a gathered one skips sentences)
            assert all(p.passage[a:b] in texts[p.group] for a, b in sentence_spans(p.passage))
        if p.kind in ("number", "entity", "negation", "comparison", "reversal"):
            assert p.claim not in texts[p.group]  # twisted, so not a copy of the source
        if p.kind == "faithful":
            assert p.claim in p.passage


def test_scifact_pairs_label_only_supported_as_positive() -> None:
    row = {
        "claim_id": 7, "claim": "Drug X lowers blood pressure.", "label": "supported",
        "abstract_sentences": ["We studied drug X.", "Drug X lowered blood pressure in 80 patients.", "No side effects."],
        "rationale_sentences": [1],
    }
    row["abstract"] = " ".join(row["abstract_sentences"])
    pairs = scifact_pairs([row, {**row, "claim_id": 8, "label": "contradicted"}, {**row, "claim_id": 9, "label": "no_evidence", "rationale_sentences": []}])
    assert pairs[0] == SupportPair(row["claim"], "Drug X lowered blood pressure in 80 patients.", 1.0, "scifact-supported", "scifact-7")
    assert all("lowered" in p.passage for p in pairs if p.label == 1.0)
    assert {p.kind for p in pairs if p.label == 0.0} == {"scifact-contradicted", "scifact-no_evidence"}


def test_feedback_mining_keeps_only_judgments_of_irrelevance() -> None:
    chunk = Chunk(5, 1, "d", "a.md", "a.md", "A", "", 0, 0, 30, "Parking is free. Bikes go in the shed.")
    judgments = [Judgment("Bikes are parked in the shed.", 5, True), Judgment("Parking costs 5 EUR.", 5, False), Judgment("x", 99, False)]
    pairs = feedback_pairs(judgments, {5: chunk})
    assert pairs == [SupportPair("Parking costs 5 EUR.", "Parking is free.", 0.0, "feedback", "feedback-5")]


def test_group_part_is_stable_and_near_its_fraction() -> None:
    parts = [group_part(f"g{i}") for i in range(2000)]
    assert parts == [group_part(f"g{i}") for i in range(2000)]
    assert 0.12 < parts.count("dev") / 2000 < 0.18


def test_read_corpus_reads_beir_and_text_directories(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": str(i), "text": f"Document {i} text."}) for i in range(5)), encoding="utf-8"
    )
    docs = read_corpus(tmp_path, exclude=["3"])
    assert [g for g, _ in docs] == [f"{tmp_path.name}/{i}" for i in (0, 1, 2, 4)]
    assert len(read_corpus(tmp_path, limit=2, seed=1)) == 2
    text_dir = tmp_path / "notes"
    text_dir.mkdir()
    (text_dir / "a.md").write_text("# Title\n\n" + "A long paragraph about parking. " * 10 + "\n\nshort\n", encoding="utf-8")
    assert [g for g, _ in read_corpus(text_dir)] == ["notes/a.md#0"]


# --- end to end: a tiny training run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for a few steps on a few dozen pairs: checks the plumbing, not the accuracy."""
    pytest.importorskip("onnxruntime")
    from eval.training.verifier import VerifierTrainConfig, run_train_verifier

    from transformers import AutoTokenizer, BertConfig, BertModel

    from rag.models import packaged_path

    root = tmp_path_factory.mktemp("verifier")
    base = root / "base"  # a two-layer encoder with MiniLM's vocabulary: fast enough to train in a test
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_path("sentence-transformers/all-MiniLM-L6-v2")))
    shape = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(shape).save_pretrained(str(base))
    tokenizer.save_pretrained(str(base))
    corpus = root / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": g, "text": t}) for g, t in _documents() * 1), encoding="utf-8")
    scifact = root / "scifact.jsonl"
    rows = []
    for i in range(30):
        sentences = [f"We studied compound {i}.", f"Compound {i} lowered blood pressure in {10 + i} patients.", "Nothing else."]
        rows.append({
            "claim_id": i, "doc_id": 1000 + i, "claim": f"Compound {i} lowers blood pressure.",
            "label": ["supported", "contradicted", "no_evidence"][i % 3], "abstract_sentences": sentences,
            "abstract": " ".join(sentences), "rationale_sentences": [1] if i % 3 != 2 else [],
        })
    scifact.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = root / "verifiers" / "default"
    config = VerifierTrainConfig(
        base=str(base), max_pairs=48, batch_size=16, dev_pairs=16, max_length=64, device="cpu", seed=3
    )
    run_train_verifier(
        out, scifact=scifact, corpora=[corpus], config=config, sentences_per_document=3, onnx=True, latency_runs=2
    )
    return out


def test_tiny_training_run_saves_a_loadable_calibrated_model(tiny_model: Path) -> None:
    saved = read_settings(tiny_model)
    assert 0.05 <= saved["threshold"] <= 0.95 and saved["calibrated_with"] == "onnx-int8"
    assert saved["stack"] is not None and len(saved["stack"]["weights"]) == len(FEATURES)
    assert (tiny_model / "onnx" / "model_qint8.onnx").is_file() and (tiny_model / "training.json").is_file()
    record = json.loads((tiny_model / "training.json").read_text(encoding="utf-8"))
    assert set(record["latency_ms_5_claims_3_passages"]) == {"torch", "onnx", "onnx-int8"}
    assert not list(tiny_model.parent.glob(".default.*"))  # the build directory was moved into place
    scorer = load_support_scorer(tiny_model)
    assert scorer.backend == "onnx-int8" and scorer.threshold == saved["threshold"]
    sources = ["Maria Keller opened a bakery in Berlin in 1990. It sells bread.", "", "Unrelated text about rivers."]
    found = scorer.support("Maria Keller opened a bakery in Berlin.", sources)
    assert len(found) == 3 and all(0.0 <= s.score <= 1.0 for s in found)
    assert (found[0].start, found[0].end) in {(0, 47), (0, 63), (48, 63)} and found[1].score == 0.0  # a window of it
    assert scorer.support("It opened in 1999.", sources[:1])[0].score <= 0.2  # the number cap holds for any model
    claim = "Maria Keller opened a bakery in Berlin."
    torch_scores = load_support_scorer(tiny_model, "torch").score(claim, sources)
    assert load_support_scorer(tiny_model, "onnx").score(claim, sources) == pytest.approx(torch_scores, abs=1e-4)


def test_the_settings_serve_a_trained_model_with_its_threshold(tiny_model: Path) -> None:
    from rag.config import VerifierConfig
    from rag.verify.verifier import Verifier, build_scorer

    def never(texts: list[str]) -> np.ndarray:
        raise AssertionError("the learned scorer does not embed")

    config = VerifierConfig(model=str(tiny_model), backend="onnx", support_threshold=0.99)
    scorer = build_scorer(config, never)
    assert isinstance(scorer, CrossEncoderSupportScorer) and scorer.backend == "onnx"
    verifier = Verifier(config, scorer)
    assert verifier.threshold == read_settings(tiny_model)["threshold"] != 0.99  # fitted with the model, not the setting
    assert type(build_scorer(VerifierConfig(), never)).__name__ == "HybridSupportScorer"


def test_a_missing_model_directory_is_named_at_start(tmp_path: Path) -> None:
    from rag.config import VerifierConfig
    from rag.verify.verifier import build_scorer

    with pytest.raises(ConfigError) as caught:
        build_scorer(VerifierConfig(model=str(tmp_path / "nowhere")), lambda texts: np.zeros((len(texts), 2)))
    assert caught.value.setting == "RAG_VERIFIER__MODEL" and "nowhere" in str(caught.value)


def test_training_refuses_pairs_of_one_class(tmp_path: Path) -> None:
    from eval.training.verifier import train_model

    with pytest.raises(InputError, match="supported and unsupported"):
        train_model([SupportPair("a", "b", 1.0, "faithful", "g")], [], tmp_path)


# --- accuracy over the twisted claims (needs a trained model) ----------------------------------------


def _trained_model() -> Path | None:
    named = os.environ.get("RAG_TEST_VERIFIER_MODEL")
    path = Path(named) if named else default_model_dir(Path(".rag"))
    return path if (path / SETTINGS_FILE).is_file() else None


@pytest.mark.slow
def test_trained_model_flags_twisted_claims_and_keeps_faithful_ones() -> None:
    model = _trained_model()
    if model is None:
        pytest.skip("no trained verifier: run rag train-verifier or set RAG_TEST_VERIFIER_MODEL")
    scorer = load_support_scorer(model)
    threshold = scorer.threshold if scorer.threshold is not None else 0.5
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 30
    missed = [r["id"] for r in rows if scorer.support(r["twisted"], [r["source"]])[0].score >= threshold]
    dropped = [r["id"] for r in rows if scorer.support(r["faithful"], [r["source"]])[0].score < threshold]
    demo = next(r for r in rows if r["twist"] == "demo")
    assert demo["id"] not in missed, "the demo's twisted kill -9 claim must be flagged"
    assert not missed, f"twisted claims judged supported: {missed}"
    assert len(dropped) <= 0.05 * len(rows), f"faithful claims judged unsupported: {dropped}"
