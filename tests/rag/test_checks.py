"""The contradiction checks (rag/verify/checks.py) and the default scorer on the twisted claims of
``tests/fixtures/verify/twisted.jsonl``: each a claim that reuses its source's words while saying
something else, beside the same claim written faithfully."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import VerifierConfig
from rag.verify.checks import (
    OPPOSITES,
    anchor,
    contradiction,
    negated,
    negation_flipped,
    opposite_word,
    reversed_relation,
    swapped_name,
)
from rag.verify.lexical import numbers
from rag.verify.support import HybridSupportScorer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "verify" / "twisted.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
RULES = {"negation": "negation", "comparison": "opposite", "entity": "name", "reversal": "reversed"}
"""The rule each kind of twist (other than numbers and the demo's) is caught by."""


def test_the_fixture_holds_at_least_30_twisted_claims_of_every_kind() -> None:
    kinds = {r["twist"] for r in ROWS}
    assert len(ROWS) >= 30 and {"negation", "comparison", "entity", "reversal", "number", "demo"} <= kinds
    assert all(r["twisted"] != r["faithful"] for r in ROWS)


@pytest.mark.parametrize("row", [r for r in ROWS if r["twist"] in RULES], ids=lambda r: r["id"])
def test_each_twist_is_caught_by_its_rule_and_its_faithful_claim_by_none(row: dict) -> None:
    assert contradiction(row["twisted"], row["source"]) == RULES[row["twist"]]
    assert contradiction(row["faithful"], row["source"]) is None


@pytest.mark.parametrize("row", [r for r in ROWS if r["twist"] == "number"], ids=lambda r: r["id"])
def test_a_number_twist_changes_a_number_the_source_holds(row: dict) -> None:
    # The number cap catches these: "six hours" is 6, so "four hours" is a number the source lacks.
    assert not numbers(row["twisted"]) <= numbers(row["source"])
    assert numbers(row["faithful"]) <= numbers(row["source"])


def test_a_negation_counts_only_about_a_word_of_the_other_side() -> None:
    assert negated("Bicycles can not be parked here.", {"park"})
    assert negated("Requests don't require the key.", {"requir"})
    assert not negated("The museum, not far from the station, is open.", {"museum", "open"})
    assert not negated("Not only staff but also visitors may park.", {"staff", "park"})  # not a denial
    assert negation_flipped("Passwords are written to the log.", "Passwords are never written to the log.")
    assert not negation_flipped("Passwords are never logged.", "Passwords are never written to the log.")


def test_opposites_go_both_ways_and_need_the_anchor_to_lack_the_claim_word() -> None:
    assert all(a in OPPOSITES[b] for a, others in OPPOSITES.items() for b in others)
    assert opposite_word("Backups are taken after each deployment.", "Backups are taken before each deployment.") == "aft"  # a stem
    # The anchor says both: nothing is turned around.
    assert opposite_word("Backups run before deployment.", "Backups run before deployment, after the tests.") is None


def test_a_reversal_is_not_a_passive_or_a_symmetric_relation() -> None:
    assert reversed_relation("Northwind acquired the company.", "The company acquired Northwind.")
    assert not reversed_relation("Northwind was acquired by the company.", "The company acquired Northwind.")
    assert not reversed_relation("The API key is required for every request.", "Every request requires the API key.")
    assert not reversed_relation("Obesity is associated with diabetes.", "Diabetes is associated with obesity.")


def test_a_name_swap_needs_another_name_in_the_anchor() -> None:
    assert swapped_name("The Billing team owns Atlas.", "Atlas is owned by the Platform team.")
    # A name the anchor lacks, with none in its place, is the name penalty's business, not a swap.
    assert not swapped_name("Atlas, built in Berlin, is owned by the team.", "Atlas is owned by the team.")


def test_a_claim_that_is_no_rewording_of_one_sentence_is_left_to_the_other_checks() -> None:
    source = "The museum opened in 1901. It has a garden. Entry is not free on Sundays."
    text, share = anchor("The garden of the museum is free.", source)
    assert text == "Entry is not free on Sundays." or share < 0.6
    assert contradiction("The museum has a large garden and cafe by the river.", source) is None
    assert contradiction("Open daily.", source) is None  # under two content words: a phrase, not checked


@pytest.fixture(scope="module")
def scorer(embedder) -> HybridSupportScorer:  # noqa: ANN001
    return HybridSupportScorer(embedder.embed_documents)


def test_the_default_scorer_flags_every_planted_twist_and_keeps_the_faithful_claims(scorer: HybridSupportScorer) -> None:
    threshold = VerifierConfig().support_threshold
    planted = [r for r in ROWS if r["twist"] != "demo"]
    missed = [r["id"] for r in planted if scorer.support(r["twisted"], [r["source"]])[0].score >= threshold]
    dropped = [r["id"] for r in ROWS if scorer.support(r["faithful"], [r["source"]])[0].score < threshold]
    assert not missed, f"twisted claims judged supported: {missed}"
    assert len(dropped) <= 0.05 * len(ROWS), f"faithful claims judged unsupported: {dropped}"


@pytest.mark.xfail(strict=True, reason="issue 15: a changed subject and verb ('The service abstains' for 'Ingestion is "
                   "safe') is a change of meaning no rule tells from a rewording; the rule tried fired on 37 faithful "
                   "RAGTruth sentences for 1 hallucinated one")
def test_the_default_scorer_flags_the_demo_claim(scorer: HybridSupportScorer) -> None:
    demo = next(r for r in ROWS if r["twist"] == "demo")
    assert scorer.support(demo["twisted"], [demo["source"]])[0].score < VerifierConfig().support_threshold


def test_the_baseline_without_checks_misses_what_they_catch(scorer: HybridSupportScorer, embedder) -> None:  # noqa: ANN001
    # The same scorer without the contradiction checks (rag eval verifier --compare baseline).
    plain = HybridSupportScorer(embedder.embed_documents, contradictions=False)
    threshold = VerifierConfig().support_threshold
    caught = [r for r in ROWS if r["twist"] in RULES]
    assert sum(plain.support(r["twisted"], [r["source"]])[0].score >= threshold for r in caught) >= len(caught) // 2
    assert all(scorer.support(r["twisted"], [r["source"]])[0].score < threshold for r in caught)
