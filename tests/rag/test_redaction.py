"""PII redaction: the detectors on fixtures, the answer-time policy, and the pipeline step that applies it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from indexer.pipeline import Ingestor
from rag.answering import AnswerEvent, SourcesEvent, TokenEvent
from rag.errors import InputError
from rag.index.store import Store
from rag.pipeline import RagPipeline
from rag.privacy import KINDS, PLACEHOLDERS, AnswerPolicy, Redactor, StreamGuard, luhn_valid, parse_kinds
from rag.privacy.redact import redact_document
from rag.types import Document
from tests.rag.test_answering import PlantedGenerator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pii"
VALUES = json.loads((FIXTURES / "values.json").read_text())
VALID = [(kind, v) for kind, values in VALUES["valid"].items() for v in values]


@pytest.mark.parametrize(("kind", "value"), VALID)
def test_each_valid_value_is_found_whole_as_its_kind(kind: str, value: str) -> None:
    text = f"See {value} for details."
    found = Redactor(KINDS).find(text)
    assert [(m.kind, text[m.start : m.end]) for m in found] == [(kind, value)]
    assert Redactor(KINDS).redact(text).text == f"See {PLACEHOLDERS[kind]} for details."


@pytest.mark.parametrize(("kind", "value"), VALID)
def test_a_value_next_to_a_citation_marker_or_placeholder_is_still_found(kind: str, value: str) -> None:
    text = f"[EMAIL] wrote {value} [1, 2]. Also [{value}]."
    assert Redactor(KINDS).redact(text).text == f"[EMAIL] wrote {PLACEHOLDERS[kind]} [1, 2]. Also [{PLACEHOLDERS[kind]}]."


@pytest.mark.parametrize("value", VALUES["invalid"])
def test_look_alikes_and_version_numbers_are_kept(value: str) -> None:
    text = f"See {value} for details."
    assert Redactor(KINDS).redact(text).text == text


def test_the_fixture_document_keeps_only_its_look_alikes() -> None:
    text = (FIXTURES / "contacts.md").read_text()
    result = Redactor(KINDS).redact(text)
    for _kind, value in VALID:
        assert value not in result.text
    for value in VALUES["invalid"]:
        assert value in result.text
    assert result.counts == {"email": 5, "phone": 4, "credit_card": 3, "iban": 3, "ip": 3}


def test_only_the_chosen_kinds_are_redacted() -> None:
    text = "Mail zelda.quux@example.com from 203.0.113.42."
    assert Redactor(["email"]).redact(text).text == "Mail [EMAIL] from 203.0.113.42."
    assert Redactor([]).redact(text).text == text


def test_placeholders_are_not_personal_data() -> None:
    text = " ".join(PLACEHOLDERS.values())
    assert Redactor(KINDS).find(text) == []


def test_luhn_against_known_numbers() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")


def test_random_card_numbers_are_redacted_exactly_when_luhn_valid() -> None:
    rng = random.Random(42)
    redactor = Redactor(["credit_card"])
    seen = {True: 0, False: 0}
    for _ in range(500):
        digits = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(15))
        grouped = " ".join(digits[i : i + 4] for i in range(0, 16, 4))
        valid = luhn_valid(digits)
        seen[valid] += 1
        assert (redactor.redact(f"card {grouped}.").text == "card [CREDIT_CARD].") is valid, grouped
    assert seen[True] > 20 and seen[False] > 400, "both sides were tried"


@pytest.mark.parametrize("iban", VALUES["valid"]["iban"])
def test_only_the_right_check_digits_make_an_iban(iban: str) -> None:
    redactor = Redactor(["iban"])
    kept = [f"{iban[:2]}{n:02d}{iban[4:]}" for n in range(100) if f"{n:02d}" != iban[2:4]]
    assert all(redactor.redact(f"to {other}.").text == f"to {other}." for other in kept)
    assert redactor.redact(f"to {iban}.").text == "to [IBAN]."


def test_unknown_kinds_are_named_with_the_valid_ones() -> None:
    assert parse_kinds("ip, Email,email") == ("email", "ip")
    with pytest.raises(InputError) as err:
        parse_kinds("email,ssn", "--redact")
    assert str(err.value) == "--redact: unknown kind 'ssn'; valid kinds: email, phone, credit_card, iban, ip"


def test_a_document_is_redacted_in_title_text_headings_and_metadata_with_sections_moved() -> None:
    text = "Call +44 20 7946 0958 now.\nPayments\nUse 4111 1111 1111 1111 please."
    doc = Document(
        "d", "src.md", "Mail zelda.quux@example.com", text,
        {"owner": "zelda.quux@example.com", "tags": ["a", "203.0.113.42"], "path": "/x/203.0.113.42.md", "n": 3},
        ((0, "Top"), (text.index("Payments"), "Payments for 4111 1111 1111 1111")),
    )
    out, counts = redact_document(Redactor(KINDS), doc, keep=("path",))
    assert out.title == "Mail [EMAIL]"
    assert out.text == "Call [PHONE] now.\nPayments\nUse [CREDIT_CARD] please."
    assert out.metadata == {"owner": "[EMAIL]", "tags": ["a", "[IP]"], "path": "/x/203.0.113.42.md", "n": 3}
    assert out.sections == ((0, "Top"), (out.text.index("Payments"), "Payments for [CREDIT_CARD]"))
    assert counts == {"email": 2, "phone": 1, "credit_card": 1, "ip": 1}, "a heading repeats its line of the text"
    assert doc.text == text, "the input is not changed"
    same, none = redact_document(Redactor(KINDS), Document("e", "s", "t", "nothing here"))
    assert none == {} and same.text == "nothing here"


# answer time -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["remove", "flag", "off"])
def test_the_policy_removes_or_flags_values_that_are_not_in_the_sources(mode: str) -> None:
    policy = AnswerPolicy(Redactor(KINDS), mode)  # type: ignore[arg-type]
    sources = ["The help desk is on +44 20 7946 0958.", "Wire to [IBAN]."]
    answer = "Call +44 (0)20 7946 0958 or 415-555-0132, and wire to GB82 WEST 1234 5698 7654 32."
    result = policy.check(answer, sources)
    if mode == "off":
        assert (result.text, result.found, result.action) == (answer, {}, "none")
        return
    assert result.found == {"phone": 1, "iban": 1}, "the desk's number is in a source, however it is written"
    if mode == "flag":
        assert (result.text, result.action) == (answer, "flagged")
    else:
        assert result.text == "Call +44 (0)20 7946 0958 or [PHONE], and wire to [IBAN]."
        assert result.action == "removed"
    assert result.note() == {"action": result.action, "kinds": {"iban": 1, "phone": 1}}


def test_a_streamed_answer_is_released_by_sentences_and_never_leaks_a_value() -> None:
    policy = AnswerPolicy(Redactor(KINDS), "remove")
    guard = StreamGuard(policy, ["Nothing personal here."])
    answer = "Mail zelda.quux@example.com today. Or call +33 1 42 68 53 00 if it is urgent"
    sent = [guard.feed(ch) for ch in answer] + [guard.flush()]
    assert "".join(sent) == "Mail [EMAIL] today. Or call [PHONE] if it is urgent"
    assert sent[len("Mail zelda.quux@example.com today.")] == "Mail [EMAIL] today. "
    for value in ("zelda", "+33 1 42"):
        assert not any(value in piece for piece in sent)


DOCS = [
    {"_id": "h1", "title": "Help desk", "text": "The help desk answers mail at zelda.quux@example.com on weekdays."},
    {"_id": "h2", "title": "Parking", "text": "Bicycles can be parked for free in the courtyard behind building B."},
]


@pytest.fixture(scope="module")
def redacting(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    from rag.config import load_settings

    root = tmp_path_factory.mktemp("privacy")
    # The planted reply's phone number is in no source: keep the answer, so the check is what removes it.
    settings = load_settings(data_dir=root / "data", reranker={"model": ""}, verifier={"abstain_unsupported": False})
    path = root / "desk.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    store = Store(settings.sqlalchemy_url)
    for name, kinds in (("private", ["email", "phone"]), ("open", [])):
        store.ensure_collection(name)
        if kinds:
            store.update_collection_settings(name, {"redact": kinds})
        report = Ingestor(settings, store, embedder, name).ingest([path])
        assert report.redactions == ({"email": 1} if kinds else {})
    yield settings, store
    store.close()


REPLY = "Mail the help desk at zelda.quux@example.com on weekdays [1]. Or call 415-555-0132 [1]."


def test_an_answer_cannot_repeat_a_redacted_value(redacting, embedder) -> None:  # noqa: ANN001
    settings, store = redacting
    pipeline = RagPipeline(settings, store, embedder, generator=PlantedGenerator(REPLY))
    question = "How do I reach the help desk at zelda.quux@example.com?"
    answer = pipeline.ask("private", question, 2)
    assert "zelda" not in answer.answer and "555-0132" not in answer.answer
    assert "[EMAIL]" in answer.answer
    assert all("zelda" not in c.text and "555-0132" not in c.text for c in answer.claims)
    assert answer.pipeline["privacy"]["action"] == "removed"
    assert answer.pipeline["privacy"]["kinds"] == {"email": 1, "phone": 1}
    assert all("zelda" not in e.chunk.text for e in answer.evidence), "the sources hold the placeholder"

    events = list(pipeline.ask_events("private", question, 2))
    assert isinstance(events[0], SourcesEvent) and isinstance(events[-1], AnswerEvent)
    streamed = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert "zelda" not in streamed and "555-0132" not in streamed and "[EMAIL]" in streamed
    assert events[-1].answer.answer == answer.answer


def test_other_collections_are_checked_only_when_configured(redacting, embedder) -> None:  # noqa: ANN001
    settings, store = redacting
    question = "How do I reach the help desk?"
    plain = RagPipeline(settings, store, embedder, generator=PlantedGenerator(REPLY)).ask("open", question, 2)
    assert "zelda.quux@example.com" in plain.answer and "privacy" not in plain.pipeline
    every = settings.model_copy(update={"privacy": settings.privacy.model_copy(update={"all_collections": True})})
    checked = RagPipeline(every, store, embedder, generator=PlantedGenerator(REPLY)).ask("open", question, 2)
    assert "zelda.quux@example.com" in checked.answer, "the address is in the cited source"
    assert "415-555-0132" not in checked.answer and checked.pipeline["privacy"]["kinds"] == {"phone": 1}
    off = settings.model_copy(update={"privacy": settings.privacy.model_copy(update={"answer_policy": "off"})})
    raw = RagPipeline(off, store, embedder, generator=PlantedGenerator(REPLY)).ask("private", question, 2)
    assert "415-555-0132" in raw.answer and "privacy" not in raw.pipeline
