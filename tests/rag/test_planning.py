"""Query planning: the planners with a scripted generator, the JSON contract, budgets, fallbacks, and plans on real servers.

Most tests script the planning replies (a stand-in with ``generate_json``), so each controls
exactly what a planner sees. Two tests talk HTTP: one to a small fake OpenAI-compatible server
that replies malformed JSON to planning calls, one to the real local llama.cpp server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from indexer.pipeline import Ingestor
from rag.config import PlannerConfig, load_settings
from rag.errors import InputError, StructuredOutputError
from rag.generation.client import Generator, parse_json_reply, schema_problem
from rag.generation.prompts import NEXT_HOP_SCHEMA, REWRITE_SCHEMA, decompose_schema
from rag.index.store import Store
from rag.answering.answerer import source_budget
from rag.pipeline import RagPipeline
from rag.planning import (
    AutoPlanner,
    ConversationRewriter,
    DecomposePlanner,
    DirectPlanner,
    IterativePlanner,
    handed,
    interleave,
    route_question,
)
from rag.planning.rewrite import splice
from rag.types import Chunk, Generation, JsonReply, PlanStep, ScoredChunk, StageScores, StreamDelta, Timings, Turn
from tests.api.conftest import local_generator  # noqa: F401 - the session fixture of the real server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "planning"
TWO_HOP = "Who manages the team that owns Harbor Lights?"


def chunk(cid: int, title: str = "", text: str = "") -> Chunk:
    return Chunk(cid, cid, "c", f"d{cid}", f"d{cid}", title or f"t{cid}", "", 0, 0, len(text), text or f"text {cid}")


def scored(cid: int, score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(chunk(cid), score)


class FakeSearch:
    """``search(query)`` from a table of query -> chunk ids; records the queries searched."""

    def __init__(self, table: dict[str, list[int]], default: list[int] | None = None) -> None:
        self.table = table
        self.default = default or []
        self.queries: list[str] = []

    def __call__(self, query: str) -> tuple[list[ScoredChunk], Timings]:
        self.queries.append(query)
        ids = self.table.get(query, self.default)
        return [scored(i, 1.0 / (r + 1)) for r, i in enumerate(ids)], Timings(bm25=1.0, dense=2.0)


class ScriptedGenerator:
    """A generator whose planning replies come from a script; answers are one fixed text.

    A script entry is a dict (returned when it matches the call's schema, as a constrained
    server would) or an exception (raised).
    """

    model = "scripted"

    def __init__(self, replies: list[dict | Exception] | None = None, answer: str = "") -> None:
        self.replies = list(replies or [])
        self.answer = answer
        self.calls: list[tuple[str, list[dict[str, str]]]] = []

    def generate_json(self, messages, schema, max_tokens, *, name="reply", timeout_s=None):  # noqa: ANN001, ANN201
        self.calls.append((name, messages))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if schema_problem(reply, schema):
            raise StructuredOutputError(schema_problem(reply, schema))
        return JsonReply(reply, prompt_tokens=100, completion_tokens=10)

    def generate(self, messages: list[dict[str, str]]) -> Generation:
        self.calls.append(("answer", messages))
        return Generation(self.answer, 50, 5, self.model, "stop")

    def stream(self, messages: list[dict[str, str]]) -> Iterator[StreamDelta]:
        self.calls.append(("answer", messages))
        yield StreamDelta(self.answer)
        yield StreamDelta("", 50, 5, done=True)


def count(text: str) -> int:
    return len(text.split())


CONFIG = PlannerConfig()
HOP_THEN_ENOUGH = [
    {"entity": "Tidewater team", "query": "Tidewater team manager", "enough": False},
    {"entity": "", "query": "", "enough": True},
]


# the order evidence is packed in ---------------------------------------------------------------


@pytest.mark.parametrize(
    "found,expected",
    [
        ([], []),
        ([[1, 2, 3]], [(1, 0), (2, 0), (3, 0)]),
        ([[1, 2], [3, 1]], [(1, 0), (3, 1), (2, 0)]),
        ([[1], [2, 3, 4], [5]], [(1, 0), (2, 1), (5, 2), (3, 1), (4, 1)]),
        ([[], [7]], [(7, 1)]),
    ],
)
def test_interleave_is_round_robin_and_keeps_the_first_step_of_a_repeat(found, expected) -> None:  # noqa: ANN001
    steps = [PlanStep(f"q{i}", "hop", tuple(scored(c) for c in ids)) for i, ids in enumerate(found)]
    before = [s.found for s in steps]
    order = interleave(steps)
    assert [(e.chunk.chunk_id, e.step) for e in order] == expected
    assert all(e.query == f"q{e.step}" for e in order)
    assert [s.found for s in steps] == before, "steps are not changed"


def near(cid: int, dense: float | None) -> ScoredChunk:
    return ScoredChunk(chunk(cid), 1.0, StageScores(dense=dense))


@pytest.mark.parametrize(
    "floor,expected",
    [
        (0.25, [(1, 0), (3, 1), (2, 0)]),
        (0.0, [(1, 0), (3, 1), (2, 0), (4, 1), (5, 1)]),
        (0.7, [(1, 0), (2, 0)]),
    ],
)
def test_a_later_step_hands_on_only_what_matches_its_query(floor: float, expected: list) -> None:
    """The question's own finds are handed as direct hands them; a hop's off-topic tail is not."""
    steps = [
        PlanStep("q", "question", (near(1, 0.05), near(2, None))),
        PlanStep("h", "hop", (near(3, 0.6), near(4, 0.1), near(5, None), near(1, 0.9))),
    ]
    assert [(e.chunk.chunk_id, e.step) for e in handed(steps, floor)] == expected
    assert handed(steps[:1], 0.9) == interleave(steps[:1]), "a one-step plan is handed whole"



# auto's rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question,mode",
    [
        ("Which is older, the Old Pier or the New Pier?", "decompose"),
        ("Were Scott Derrickson and Ed Wood of the same nationality?", "decompose"),
        ("Which genus contains more species, Crowea or Dracula?", "decompose"),
        ("What is the former name of the animal whose habitat the reserve was established to protect?", "iterative"),
        ("Who manages the team that owns Harbor Lights?", "iterative"),
        ("The Heart Never Lies is an album by the author of a state ballad entitled what?", "iterative"),
        ("How many points did the Panthers defense surrender?", "direct"),
        ("Who won Super Bowl XLIX?", "direct"),
        ("When was Warsaw's first stock exchange established?", "direct"),
    ],
)
def test_route_question(question: str, mode: str) -> None:
    assert route_question(question).mode == mode


# the JSON contract ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,schema,problem",
    [
        ('{"entity": "Tidewater team", "query": "Tidewater team manager", "enough": false}', NEXT_HOP_SCHEMA, ""),
        ('```json\n{"entity": "", "query": "", "enough": true}\n```', NEXT_HOP_SCHEMA, ""),
        ('{"entity": "x", "enough": tru', NEXT_HOP_SCHEMA, "not JSON"),
        ("", NEXT_HOP_SCHEMA, "not JSON"),
        ('{"entity": "x", "query": "x", "enough": "no"}', NEXT_HOP_SCHEMA, "$.enough should be boolean"),
        ('{"entity": "x", "query": "x"}', NEXT_HOP_SCHEMA, "lacks 'enough'"),
        ('{"entity": "x", "query": "x", "enough": false, "why": "y"}', NEXT_HOP_SCHEMA, "unexpected 'why'"),
        ('{"entity": "x", "query": "' + "x" * 121 + '", "enough": false}', NEXT_HOP_SCHEMA, "121 characters"),
        ('["a"]', NEXT_HOP_SCHEMA, "should be object"),
        ('{"sub_questions": []}', decompose_schema(3), "0 items"),
        ('{"sub_questions": ["a", "b", "c", "d"]}', decompose_schema(3), "4 items"),
        ('{"sub_questions": ["a", 2]}', decompose_schema(3), "[1] should be string"),
        ('{"question": ""}', REWRITE_SCHEMA, "0 characters"),
    ],
)
def test_replies_are_parsed_and_checked_against_their_schema(text: str, schema: dict, problem: str) -> None:
    if not problem:
        assert isinstance(parse_json_reply(text, schema), dict)
        return
    with pytest.raises(StructuredOutputError, match=problem.replace("$", r"\$").replace("[", r"\[")):
        parse_json_reply(text, schema)


# the planners, with scripted replies ------------------------------------------------------------


def test_direct_searches_the_question_once() -> None:
    search = FakeSearch({"q": [1, 2]})
    plan = DirectPlanner().plan("q", search)
    assert search.queries == ["q"] and plan.mode == "direct" and plan.requested == "direct"
    assert [f.chunk.chunk_id for f in plan.steps[0].found] == [1, 2] and plan.steps[0].purpose == "question"


def test_iterative_hops_until_the_generator_says_enough() -> None:
    gen = ScriptedGenerator(HOP_THEN_ENOUGH)
    search = FakeSearch({TWO_HOP: [1, 2], "Tidewater team manager": [3, 1]})
    plan = IterativePlanner(CONFIG, gen, count).plan(TWO_HOP, search)
    assert search.queries == [TWO_HOP, "Tidewater team manager"]
    assert [s.purpose for s in plan.steps] == ["question", "hop"]
    assert plan.mode == "iterative" and plan.stop == "enough" and not plan.fallback
    assert [s.decision for s in plan.steps] == ["next: Tidewater team manager", "enough"]
    assert all(s.usage.prompt_tokens == 100 and s.timings.plan > 0 for s in plan.steps)
    assert plan.usage.prompt_tokens == 200 and plan.timings.bm25 == 2.0, "per-step costs add up"
    # the second check read the evidence of both steps, round-robin, and the searches made
    second = gen.calls[1][1][1]["content"]
    assert "Tidewater team manager" in second and "[2] t3" in second


def test_a_first_enough_that_names_a_new_entity_still_hops() -> None:
    """A small model says "enough" to every first check; the entity it names is looked up all the same."""
    gen = ScriptedGenerator([
        {"entity": "Tidewater team", "query": "manager", "enough": True},
        {"entity": "Ines Okafor", "query": "Ines Okafor", "enough": True},
    ])
    search = FakeSearch({}, [1])
    plan = IterativePlanner(CONFIG, gen, count).plan(TWO_HOP, search)
    assert search.queries == [TWO_HOP, "Tidewater team manager"]
    assert plan.stop == "enough" and plan.steps[0].decision == "next: Tidewater team manager (said enough)"
    gen = ScriptedGenerator([{"entity": "Harbor Lights", "query": "Who manages the team that owns Harbor Lights", "enough": True}])
    plan = IterativePlanner(PlannerConfig(expand=False), gen, count).plan(TWO_HOP, FakeSearch({}, [1]))
    assert len(plan.steps) == 1 and plan.stop == "enough", "nothing new named: the first enough stands"


@pytest.mark.parametrize(
    "reply,reason",
    [
        ({"entity": "Harbor Lights", "query": TWO_HOP, "enough": True}, "enough"),
        ({"entity": "", "query": "", "enough": False}, "no new query"),
    ],
)
def test_a_first_check_that_names_nothing_expands_by_the_best_passage(reply: dict, reason: str) -> None:
    """No bridge named after the question's retrieval: one more search, of the question with its best passage."""
    text = "Harbor   Lights is a ferry app owned by the Tidewater team, whose manager since the spring of 2019 is Ines Okafor."
    best = Chunk(4, 4, "c", "d4", "d4", "Harbor Lights", "", 0, 0, len(text), text)
    expansion = f"{TWO_HOP} Harbor Lights: Harbor Lights is a ferry app owned by the Tidewater team, whose manager since the spring"
    gen = ScriptedGenerator([reply])

    class Search(FakeSearch):
        def __call__(self, query: str) -> tuple[list[ScoredChunk], Timings]:
            self.queries.append(query)
            return ([ScoredChunk(best, 1.0), scored(2, 0.5)] if query == TWO_HOP else [scored(3)]), Timings(bm25=1.0)

    search = Search({})
    plan = IterativePlanner(PlannerConfig(passage_tokens=16), gen, count).plan(TWO_HOP, search)
    assert search.queries == [TWO_HOP, expansion], "the passage is cut to passage_tokens, its spaces collapsed"
    assert [s.purpose for s in plan.steps] == ["question", "expansion"] and len(gen.calls) == 1
    assert plan.stop == f"{reason}; expanded by the best passage" and plan.steps[0].decision.startswith(reason)
    assert [e.found.chunk.chunk_id for e in interleave(plan.steps)] == [4, 3, 2], "the expansion's finds are handed on"
    assert IterativePlanner(PlannerConfig(max_hops=1), ScriptedGenerator([reply]), count).plan(TWO_HOP, Search({})).steps[-1].purpose == "question"
    nothing = IterativePlanner(CONFIG, ScriptedGenerator([reply]), count).plan(TWO_HOP, FakeSearch({}))
    assert len(nothing.steps) == 1 and nothing.stop == reason, "no passage found: nothing to expand by"


def test_iterative_stops_at_max_hops_and_on_a_repeated_query() -> None:
    gen = ScriptedGenerator([{"entity": "", "query": f"hop {i}", "enough": False} for i in range(5)])
    plan = IterativePlanner(PlannerConfig(max_hops=3), gen, count).plan("q", FakeSearch({}, [1]))
    assert [s.query for s in plan.steps] == ["q", "hop 0", "hop 1"] and plan.stop == "max_hops"
    assert len(gen.calls) == 2, "no check is made when no hop may follow"

    gen = ScriptedGenerator([{"entity": "", "query": "hop 0", "enough": False}, {"entity": "q", "query": "Q ", "enough": False}])
    plan = IterativePlanner(CONFIG, gen, count).plan("q", FakeSearch({}, [1]))
    assert len(plan.steps) == 2 and plan.stop == "no new query" and not plan.fallback


@pytest.mark.parametrize(
    "config,stop",
    [
        (PlannerConfig(max_prompt_tokens=10), "prompt token budget"),
        (PlannerConfig(max_wall_s=1e-9), "wall time budget"),
        (PlannerConfig(max_hops=1), "max_hops"),
    ],
)
def test_budgets_bound_a_plan_before_any_call(config: PlannerConfig, stop: str) -> None:
    gen = ScriptedGenerator([])
    for planner in (IterativePlanner(config, gen, count), DecomposePlanner(config, gen, count)):
        plan = planner.plan("q", FakeSearch({}, [1]))
        assert len(plan.steps) == 1 and plan.stop == stop and not plan.fallback
    assert gen.calls == []


@pytest.mark.parametrize(
    "reply",
    [
        StructuredOutputError("the reply is not JSON: '{\"enough\": tru'"),
        {"entity": "x", "query": 3, "enough": "maybe"},
    ],
)
@pytest.mark.parametrize("planner", [IterativePlanner, DecomposePlanner])
def test_a_reply_that_does_not_parse_falls_back_to_direct(planner, reply) -> None:  # noqa: ANN001
    plan = planner(CONFIG, ScriptedGenerator([reply]), count).plan("q", FakeSearch({"q": [1, 2]}))
    assert plan.mode == "direct" and plan.requested == planner.mode
    assert len(plan.steps) == 1 and [f.chunk.chunk_id for f in plan.steps[0].found] == [1, 2]
    assert plan.fallback and plan.steps[0].decision.startswith("failed")


def test_a_generator_without_json_falls_back_to_direct() -> None:
    class Plain:
        model = "plain"

    plan = IterativePlanner(CONFIG, Plain(), count).plan("q", FakeSearch({}, [1]))
    assert plan.mode == "direct" and "cannot reply in JSON" in plan.fallback


def test_decompose_searches_each_new_sub_question() -> None:
    parts = ["When was the Old Pier built?", "when was the old pier built", "When was the New Pier built?"]
    gen = ScriptedGenerator([{"sub_questions": parts}])
    question = "Which is older, the Old Pier or the New Pier?"
    search = FakeSearch({}, [1])
    plan = DecomposePlanner(CONFIG, gen, count).plan(question, search)
    assert search.queries == [question, "When was the Old Pier built?", "When was the New Pier built?"]
    assert [s.purpose for s in plan.steps] == ["question", "sub-question", "sub-question"]
    assert plan.steps[0].decision == "split into 2" and plan.stop == "sub-questions searched"


def test_auto_sends_single_hop_questions_direct_without_a_call() -> None:
    gen = ScriptedGenerator([{"sub_questions": ["When was the Old Pier built?", "When was the New Pier built?"]}])
    auto = AutoPlanner(IterativePlanner(CONFIG, gen, count), DecomposePlanner(CONFIG, gen, count))
    plan = auto.plan("When was the Old Pier built?", FakeSearch({}, [1]))
    assert plan.mode == "direct" and plan.requested == "auto" and gen.calls == [] and len(plan.steps) == 1
    plan = auto.plan("Which is older, the Old Pier or the New Pier?", FakeSearch({}, [1]))
    assert plan.mode == "decompose" and plan.requested == "auto" and len(plan.steps) == 3


def test_the_rewrite_of_a_follow_up() -> None:
    gen = ScriptedGenerator([{"question": "What is the vacation policy for part-time staff?"}, StructuredOutputError("not JSON")])
    rewriter = ConversationRewriter(CONFIG, gen, count)
    assert rewriter.rewrite("What is the vacation policy?", []) is None, "a first question is not rewritten"
    assert gen.calls == []
    history = [Turn("What is the vacation policy?", "Full-time staff get 25 days [1].")]
    rewrite = rewriter.rewrite("And for part-time staff?", history)
    assert rewrite.question == "What is the vacation policy for part-time staff?"
    assert rewrite.original == "And for part-time staff?"
    prompt = gen.calls[0][1][-1]["content"]
    assert "User: What is the vacation policy?" in prompt and "[1]" not in prompt
    assert "Last question: And for part-time staff?" in prompt
    failed = rewriter.rewrite("And for part-time staff?", history)
    assert failed.question == "What is the vacation policy for part-time staff?", "a failed call still gets the splice"
    assert "not JSON" in failed.fallback and "put into the earlier question" in failed.fallback


def test_a_rewrite_that_copies_or_drops_is_replaced() -> None:
    history = [Turn("Who manages the Tidewater team?", "Ines Okafor [1].")]
    # a copy of the follow-up adds nothing; a clause is not spliced, so both questions are searched
    gen = ScriptedGenerator([{"question": "When did she join?"}])
    copied = ConversationRewriter(CONFIG, gen, count).rewrite("When did she join?", history)
    assert copied.question == "Who manages the Tidewater team? When did she join?"
    assert copied.fallback.startswith("rewrite: the reply added nothing")
    # a copy of the earlier question drops what the follow-up asks about; the fragment is spliced in
    gen = ScriptedGenerator([{"question": "Who manages the Tidewater team?"}])
    dropped = ConversationRewriter(CONFIG, gen, count).rewrite("And the Quayside team?", history)
    assert dropped.question == "Who manages the Quayside team?"
    assert dropped.fallback.startswith("rewrite: the reply dropped words of the follow-up")
    # a real rewrite keeps the follow-up's words and adds the conversation's
    gen = ScriptedGenerator([{"question": "When did Ines Okafor join?"}])
    resolved = ConversationRewriter(CONFIG, gen, count).rewrite("When did she join?", history)
    assert resolved.question == "When did Ines Okafor join?" and resolved.fallback == ""
    # the splice goes into the last question that stands alone, not into "Thanks." or an earlier follow-up
    turns = [Turn("What is the vacation policy?", "25 days [1]."), Turn("And for part-time staff?", "Pro rata [2]."),
             Turn("Thanks.")]
    gen = ScriptedGenerator([{"question": "And for interns?"}])
    chained = ConversationRewriter(CONFIG, gen, count).rewrite("And for interns?", turns)
    assert chained.question == "What is the vacation policy for interns?", chained


@pytest.mark.parametrize(("follow_up", "earlier", "spliced"), [
    ("And for part-time staff?", "What is the vacation policy?", "What is the vacation policy for part-time staff?"),
    ("and in 2020", "How many people lived in Oslo?", "How many people lived in Oslo in 2020?"),
    # a phrase with the same preposition and a like object is replaced, not doubled
    ("And in 2020?", "How many people lived in Oslo in 2019?", "How many people lived in Oslo in 2020?"),
    ("And for part-time staff?", "What is the vacation policy for full-time staff?",
     "What is the vacation policy for part-time staff?"),
    ("And by train?", "How long does it take from Vienna to Prague by car?",
     "How long does it take from Vienna to Prague by train?"),
    ("And the New Pier?", "When was the Old Pier built?", "When was the New Pier built?"),
    ("And the New Pier?", "When was the pier built?", "When was the New Pier built?"),
    ("And the sick leave policy?", "What is the vacation policy?", "What is the sick leave policy?"),
    ("And part-time staff?", "How many vacation days do full-time staff get?",
     "How many vacation days do part-time staff get?"),
    ("What about Prague?", "Which river flows through Vienna, and how long is it?",
     "Which river flows through Prague, and how long is it?"),
    ("And Germany?", "What is the capital of France?", "What is the capital of Germany?"),
    ("And for the U.S.?", "What is the tax rate?", "What is the tax rate for the U.S.?"),
    # not spliced: a clause, a pronoun, no lead word, no place for it, already asked
    ("And when did she join?", "Who manages the Tidewater team?", None),
    ("And its length?", "What is the length of the Old Pier?", None),
    ("and the one in Paris?", "Which museum in London is the largest?", None),
    ("The premium plan?", "How much does the basic plan cost?", None),
    ("And the policy for interns?", "What is the vacation policy?", None),
    ("How about the Beacon app?", "Which team owns Harbor Lights?", None),
    ("And the Quayside Team?", "Who manages the Quayside team?", None),
    # a name replaces only a name after a preposition
    ("And Germany?", "Who won the 2014 World Cup?", None),
    ("What about Prague?", "When did Vienna host the Olympics?", None),
    ("What about in Prague?", "Which river flows through Vienna?", None),
])
def test_an_elliptical_follow_up_is_spliced_into_the_earlier_question(follow_up, earlier, spliced) -> None:  # noqa: ANN001
    assert splice(follow_up, earlier) == spliced


# answering from a plan, over a real index ----------------------------------------------------------


@pytest.fixture(scope="module")
def planning_corpus(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("planning")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""})
    store = Store(settings.sqlalchemy_url)
    Ingestor(settings, store, embedder, "plan").ingest([FIXTURES / "corpus.jsonl"])
    yield settings, store
    store.close()


def test_an_iterative_answer_cites_evidence_of_every_step(planning_corpus, embedder) -> None:  # noqa: ANN001
    settings, store = planning_corpus
    gen = ScriptedGenerator(
        HOP_THEN_ENOUGH,
        answer="The Tidewater team is managed by Ines Okafor [2].",
    )
    pipeline = RagPipeline(settings, store, embedder, generator=gen)
    answer = pipeline.ask("plan", TWO_HOP, 1, planner="iterative")
    assert [(e.chunk.external_id, e.step, e.query) for e in answer.evidence] == [
        ("harbor-lights", 0, TWO_HOP),
        ("tidewater-team", 1, "Tidewater team manager"),
    ]
    assert not answer.abstained and [c.chunk.external_id for c in answer.citations] == ["tidewater-team"]
    assert answer.claims[0].verdict == "supported", "verified against the second step's evidence"
    assert answer.plan.mode == "iterative" and len(answer.plan.steps) == 2
    assert answer.usage.prompt_tokens == 50 + 200, "the answer's tokens and the plan's"
    assert answer.timings.plan > 0 and answer.timings.total >= answer.timings.plan
    sources = gen.calls[-1][1][1]["content"]
    assert sources.index("Harbor Lights") < sources.index("Ines Okafor"), "both steps' passages, in step order"


class RecordingVerifier:
    """Hands every call on to the real verifier and records the steps it was given."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner
        self.steps: list[list[int] | None] = []

    def verify(self, answer, sources, *, strict=None, question=None, steps=None):  # noqa: ANN001, ANN201
        self.steps.append(None if steps is None else list(steps))
        return self.inner.verify(answer, sources, strict=strict, question=question, steps=steps)


def test_the_verifier_is_handed_the_step_of_each_source(planning_corpus, embedder) -> None:  # noqa: ANN001
    settings, store = planning_corpus
    gen = ScriptedGenerator(HOP_THEN_ENOUGH, answer="Ines Okafor [2].")
    pipeline = RagPipeline(settings, store, embedder, generator=gen)
    recorder = RecordingVerifier(pipeline.answerer.verifier)
    pipeline.answerer.verifier = recorder
    answer = pipeline.ask("plan", TWO_HOP, 1, planner="iterative")
    assert recorder.steps == [[e.step for e in answer.evidence]] == [[0, 1]]


OFF_TOPIC_HOP = [
    {"entity": "Serengeti zebra herds", "query": "zebra migration across the Serengeti plains", "enough": False},
    {"entity": "", "query": "", "enough": True},
]


def test_a_hop_that_finds_nothing_on_topic_hands_on_what_direct_does(planning_corpus, embedder) -> None:  # noqa: ANN001
    """An off-topic hop neither adds passages nor widens the budget: the generator sees direct's prompt."""
    settings, store = planning_corpus
    narrow = settings.model_copy(update={"generator": settings.generator.model_copy(update={"context_tokens": 64})})
    direct_gen = ScriptedGenerator(answer="x")
    RagPipeline(narrow, store, embedder, generator=direct_gen).ask("plan", TWO_HOP, 3, planner="direct")
    gen = ScriptedGenerator(list(OFF_TOPIC_HOP), answer="x")
    answer = RagPipeline(narrow, store, embedder, generator=gen).ask("plan", TWO_HOP, 3, planner="iterative")
    hop = answer.plan.steps[1]
    assert hop.purpose == "hop" and hop.found, "the hop was searched and found something"
    assert all((f.scores.dense or 0.0) < narrow.planner.min_step_similarity for f in hop.found)
    assert {e.step for e in answer.evidence} == {0}
    assert gen.calls[-1] == direct_gen.calls[-1], "the answer's prompt is direct's"
    everything = narrow.model_copy(update={"planner": narrow.planner.model_copy(update={"min_step_similarity": 0.0})})
    _, offered = RagPipeline(everything, store, embedder, generator=ScriptedGenerator(list(OFF_TOPIC_HOP))).evidence(
        "plan", TWO_HOP, 3, planner="iterative"
    )
    assert 1 in {e.step for e in offered}, "with no floor the hop's finds are handed on"


@pytest.mark.parametrize("step_tokens", [0, 500])
def test_each_step_after_the_first_widens_the_sources_budget(planning_corpus, embedder, step_tokens: int) -> None:  # noqa: ANN001
    settings, store = planning_corpus
    narrow = settings.model_copy(update={
        "generator": settings.generator.model_copy(update={"context_tokens": 64}),
        "planner": settings.planner.model_copy(update={"step_context_tokens": step_tokens}),
    })
    assert source_budget(narrow, 1) == 64 and source_budget(narrow, 3) == 64 + 2 * step_tokens
    pipeline = RagPipeline(narrow, store, embedder, generator=ScriptedGenerator(HOP_THEN_ENOUGH))
    _, direct = pipeline.evidence("plan", TWO_HOP, 3, planner="direct")
    plan, handed = pipeline.evidence("plan", TWO_HOP, 3, planner="iterative")
    assert len(plan.steps) == 2 and len(direct) <= 2
    found = {s.chunk.chunk_id for step in plan.steps for s in step.found}
    if step_tokens:
        assert {e.chunk.chunk_id for e in handed} == found and "tidewater-team" in {e.chunk.external_id for e in handed}
    else:
        assert len(handed) <= 2 < len(found), "one budget for both steps hands on what one step would"


def test_a_follow_up_is_searched_as_its_rewrite(planning_corpus, embedder) -> None:  # noqa: ANN001
    settings, store = planning_corpus
    gen = ScriptedGenerator(
        [{"question": "What is the vacation policy for part-time staff?"}],
        answer="A member of staff working half time gets 12.5 days of paid vacation per year [1].",
    )
    pipeline = RagPipeline(settings, store, embedder, generator=gen)
    history = (Turn("What is the vacation policy?", "Full-time staff get 25 days of paid vacation per year [1]."),)
    answer = pipeline.ask("plan", "And for part-time staff?", 1, history=history, planner="direct")
    assert answer.plan.rewrite.question == "What is the vacation policy for part-time staff?"
    assert answer.plan.steps[0].query == "What is the vacation policy for part-time staff?"
    assert [c.chunk.external_id for c in answer.citations] == ["vacation-part-time"]
    assert answer.claims[0].verdict == "supported"


def test_an_unknown_planner_is_an_input_error_naming_it(planning_corpus, embedder) -> None:  # noqa: ANN001
    settings, store = planning_corpus
    pipeline = RagPipeline(settings, store, embedder, generator=ScriptedGenerator())
    with pytest.raises(InputError, match="planner.*valid: auto | direct | iterative | decompose"):
        pipeline.ask("plan", "q", planner="sideways")


# a fake OpenAI-compatible server that breaks the JSON of planning calls ----------------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    """``/v1/models`` owned by ``owner``; chat completions that break the JSON of planning calls."""

    owner = "me"
    seen: ClassVar[list[dict]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": type(self).owner}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append(request)
        planning = "response_format" in request
        content = '{"entity": "Old Pier", "enough": fals' if planning else "The Old Pier was built in 1887 from cast iron [1]."
        self._send({
            "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48},
        })


@pytest.mark.parametrize("owner,form", [("me", "json_object"), ("vllm", "json_schema")])
def test_malformed_json_from_the_server_falls_back_to_direct_and_the_answer_arrives(
    planning_corpus, embedder, owner: str, form: str  # noqa: ANN001
) -> None:
    handler = type("Handler", (_FakeOpenAI,), {"owner": owner, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings, store = planning_corpus
        gen = Generator(settings.generator, base_url=f"http://127.0.0.1:{server.server_port}/v1")
        pipeline = RagPipeline(settings, store, embedder, generator=gen)
        answer = pipeline.ask("plan", "When was the Old Pier built, and what is it made of?", 2, planner="iterative")
    finally:
        server.shutdown()
    assert gen.structured_output() == form
    planning = [r for r in handler.seen if "response_format" in r]
    assert len(planning) == 1 and planning[0]["response_format"]["type"] == form
    sent = planning[0]["response_format"]
    schema = sent["schema"] if form == "json_object" else sent["json_schema"]["schema"]
    assert schema == NEXT_HOP_SCHEMA and planning[0]["temperature"] == 0.0
    assert answer.plan.mode == "direct" and answer.plan.requested == "iterative"
    assert "not JSON" in answer.plan.fallback
    assert not answer.abstained and "1887" in answer.answer and answer.citations[0].chunk.external_id == "old-pier"


# the real local server ------------------------------------------------------------------------------


@pytest.mark.generator
def test_a_plan_against_the_real_local_server(planning_corpus, embedder, local_generator) -> None:  # noqa: ANN001, F811
    settings, store = planning_corpus
    # a loaded CPU may take minutes per call; the budget here is not what is tested
    settings = settings.model_copy(update={"planner": PlannerConfig(max_wall_s=900)})
    gen = Generator(settings.generator.model_copy(update={"timeout_s": 900}), base_url=local_generator)
    assert gen.structured_output() == "json_object", "llama-cpp-python's server takes the schema as json_object"
    pipeline = RagPipeline(settings, store, embedder, generator=gen)
    plan, evidence = pipeline.evidence("plan", TWO_HOP, 1, planner="iterative")
    assert plan.fallback == "", "the constrained reply parsed"
    assert plan.mode == "iterative" and plan.steps[0].decision and plan.steps[0].usage.completion_tokens > 0
    if len(plan.steps) > 1:
        assert plan.steps[1].purpose == "hop" and plan.steps[1].query != TWO_HOP
    assert evidence and evidence[0].chunk.external_id == "harbor-lights"
    split = pipeline.evidence("plan", "Which is older, the Old Pier or the New Pier?", 1, planner="decompose")[0]
    assert split.fallback == "" and split.mode == "decompose"
