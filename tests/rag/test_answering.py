"""Answering over a real store, indexes and verifier, with answers planted by a scripted generator.

The generator here is a stand-in that returns a fixed reply, so each test controls exactly what
the verifier and the abstention rules see; the real llama.cpp server is exercised in tests/api.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from indexer.pipeline import Ingestor
from rag.answering import AnswerEvent, SourcesEvent, TokenEvent
from rag.index.store import Store
from rag.pipeline import RagPipeline
from rag.types import ABSTAIN_TEXT, Generation, StreamDelta

DOCS = [
    {"_id": "p1", "title": "Parking", "text": "Bicycles can be parked for free in the courtyard behind building B."},
    {"_id": "p2", "title": "Dogs", "text": "Dogs are not allowed in the office, except assistance dogs."},
    {"_id": "p3", "title": "Travel", "text": "Travel above 500 EUR needs approval from the team lead."},
]


class PlantedGenerator:
    """Replies with ``text`` to every request (a :class:`rag.interfaces.Generator`)."""

    model = "planted"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, messages: list[dict[str, str]]) -> Generation:
        return Generation(self.text, prompt_tokens=11, completion_tokens=7, model=self.model, finish_reason="stop")

    def stream(self, messages: list[dict[str, str]]) -> Iterator[StreamDelta]:
        for word in self.text.split(" "):
            yield StreamDelta(word + " ")
        yield StreamDelta("", 11, 7, done=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    from rag.config import load_settings

    root = tmp_path_factory.mktemp("answering")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""})
    path = root / "office.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    store = Store(settings.sqlalchemy_url)
    Ingestor(settings, store, embedder, "office").ingest([path])
    yield settings, store
    store.close()


def ask(corpus, embedder, reply: str, question: str, **verifier):  # noqa: ANN001, ANN003, ANN201
    settings, store = corpus
    if verifier:
        settings = settings.model_copy(update={"verifier": settings.verifier.model_copy(update=verifier)})
    return RagPipeline(settings, store, embedder, generator=PlantedGenerator(reply)).ask("office", question, 3)


def test_an_answer_with_no_supported_claim_abstains_by_default(corpus, embedder) -> None:  # noqa: ANN001
    answer = ask(corpus, embedder, "Employees may bring their dogs 16 days per week [2].", "How many days a week may employees bring dogs?")
    assert answer.abstained
    assert answer.faithfulness == 0.0 and answer.claims, "the unsupported claim is still reported"
    assert answer.citations == ()
    kept = ask(corpus, embedder, "Employees may bring their dogs 16 days per week [2].", "How many days?", abstain_unsupported=False)
    assert not kept.abstained, "the setting turns the rule off"


def test_strict_mode_that_keeps_nothing_is_an_abstention(corpus, embedder) -> None:  # noqa: ANN001
    answer = ask(
        corpus, embedder, "Employees may bring their dogs 16 days per week [2].", "How many days?",
        strict=True, abstain_unsupported=False,
    )
    assert answer.answer == ABSTAIN_TEXT
    assert answer.abstained, "the text is the abstention, so abstained must say so"


def test_an_invalid_citation_is_reported_and_not_shown(corpus, embedder) -> None:  # noqa: ANN001
    answer = ask(corpus, embedder, "Bicycles can be parked for free in the courtyard [9].", "Where can I park my bicycle?")
    assert not answer.abstained
    assert answer.invalid_citations == (9,)
    assert "[9]" not in answer.answer
    claim = answer.claims[0]
    assert claim.kinds == ("attributed",) and f"[{claim.citations[0]}]" in answer.answer, "replaced by the attributed source"
    assert [c.n for c in answer.citations] == list(claim.citations)


def test_events_come_in_order_and_ask_collects_the_same_answer(corpus, embedder) -> None:  # noqa: ANN001
    settings, store = corpus
    pipeline = RagPipeline(settings, store, embedder, generator=PlantedGenerator("Travel above 500 EUR needs approval [1]."))
    events = list(pipeline.ask_events("office", "Which travel needs approval?", 3))
    assert isinstance(events[0], SourcesEvent) and isinstance(events[-1], AnswerEvent)
    assert all(isinstance(e, TokenEvent) for e in events[1:-1]) and len(events) > 3
    streamed, collected = events[-1].answer, pipeline.ask("office", "Which travel needs approval?", 3)
    assert streamed.answer == collected.answer and streamed.claims == collected.claims
    assert events[0].evidence[0].chunk.external_id == "p3"
    assert not collected.abstained and [c.chunk.external_id for c in collected.citations] == ["p3"]
    assert collected.usage.prompt_tokens == 11 and streamed.usage.completion_tokens == 7
    assert all(e.step == 0 and e.query == "Which travel needs approval?" for e in events[0].evidence)


HANDBOOK_MD = """# Handbook

Welcome to the office handbook. It covers pets and parking.

## Pets

Dogs stay at home, except assistance dogs.

## Parking

Bicycles can be parked for free in the courtyard. Cars need a permit from reception.
"""


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    """Two collections of one document each: a small Markdown file and a two-page PDF."""
    from rag.config import load_settings
    from tests.indexer.badfiles import make_text_pdf

    root = tmp_path_factory.mktemp("paged")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""})
    (root / "md").mkdir()
    (root / "md" / "handbook.md").write_text(HANDBOOK_MD)
    (root / "pdf").mkdir()
    (root / "pdf" / "rules.pdf").write_bytes(
        make_text_pdf(["Visitors sign in at reception.", "Visitors must wear a badge at all times."], title="Rules")
    )
    store = Store(settings.sqlalchemy_url)
    Ingestor(settings, store, embedder, "md").ingest([root / "md"])
    Ingestor(settings, store, embedder, "pdf").ingest([root / "pdf"])
    yield settings, store
    store.close()


def test_a_citation_points_at_the_supporting_sentence_with_its_own_section(paged, embedder) -> None:  # noqa: ANN001
    settings, store = paged
    reply = "Bicycles can be parked for free in the courtyard [1]."
    answer = RagPipeline(settings, store, embedder, generator=PlantedGenerator(reply)).ask("md", "Where can I park my bike?", 3)
    (citation,) = answer.citations
    assert citation.chunk.section == "Handbook", "the whole file is one chunk, starting under the top heading"
    (span,) = citation.spans
    assert citation.chunk.text[span.start : span.end] == "Bicycles can be parked for free in the courtyard."
    assert span.section == "Handbook > Parking" and span.page is None
    assert answer.claims[0].spans == ((span.start, span.end),)


def test_a_citation_names_the_page_of_its_sentence(paged, embedder) -> None:  # noqa: ANN001
    from api.convert import citations_out

    settings, store = paged
    reply = "Visitors must wear a badge at all times [1]."
    answer = RagPipeline(settings, store, embedder, generator=PlantedGenerator(reply)).ask("pdf", "Do visitors wear a badge?", 3)
    (citation,) = answer.citations
    assert citation.chunk.section == "page 1", "the chunk starts on page 1"
    (span,) = citation.spans
    assert span.page == 2 and span.section == "page 2"
    (out,) = citations_out(answer)
    assert (out.page, out.section) == (2, "page 2")
    assert out.spans[0].text == "Visitors must wear a badge at all times."
    assert out.spans[0].char_start == citation.chunk.char_start + span.start
