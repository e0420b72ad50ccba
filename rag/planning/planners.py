"""The planners: which retrievals a question gets, each run through the search the answerer binds.

Four modes (``RAG_PLANNER__MODE`` or per request):

* ``direct``: one retrieval of the question's own text.
* ``iterative``: retrieve; ask the generator, with the passages found so far, which entity they
  reveal that the question describes (the bridge), what to search about it, and whether they
  already answer the question; retrieve that; stop when the generator says the evidence
  suffices (on the first check, only if it names nothing new to search), when it names nothing
  new, at ``max_hops`` retrievals, or when a budget is spent. When the first check names
  nothing to search, one *expansion* step searches the question with its best passage
  (``RAG_PLANNER__EXPAND``): a 0.5B model names no bridge for half of HotpotQA's questions.
  This is IRCoT's interleaving of retrieval and reasoning (Trivedi et al., ACL 2023), one short
  constrained decision per hop instead of a chain of thought.
* ``decompose``: retrieve the question, then split it into sub-questions (one per entity of a
  comparison) and retrieve each.
* ``auto``: :func:`rag.planning.routing.route_question` decides from the question's words, with
  no generator call, and sends single-hop questions down ``direct``.

Every generator call of a plan goes through ``generate_json`` with a schema. A call that fails
or whose reply does not parse ends planning: with only the question's own retrieval done, the
plan is ``direct`` and :attr:`Plan.fallback` says why. Budgets (``RAG_PLANNER__MAX_HOPS``,
``__MAX_PROMPT_TOKENS``, ``__MAX_WALL_S``) are checked before each call and each retrieval.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from rag.config import PlannerConfig
from rag.errors import GeneratorUnavailableError, StructuredOutputError
from rag.generation.prompts import (
    NEXT_HOP_SCHEMA,
    decompose_messages,
    decompose_schema,
    next_hop_messages,
    passage_prefix,
)
from rag.interfaces import Generator, Planner, StepSearch
from rag.planning.routing import route_question
from rag.types import Evidence, JsonDict, JsonReply, Plan, PlanStep, ScoredChunk, Timings, Usage

CountTokens = Callable[[str], int]

NEXT_HOP_MAX_TOKENS = 80
"""Completion tokens of the iterative check (an entity of <= 60 characters, a query of <= 120, a boolean)."""
DECOMPOSE_MAX_TOKENS = 40
"""Completion tokens per sub-question of a decomposition (each at most 120 characters)."""


def interleave(steps: Sequence[PlanStep]) -> list[Evidence]:
    """Every step's chunks as one list: each step's first, then each step's second, and so on.

    A chunk found by several steps appears once, under the first step that reaches it in this
    order. Round-robin order shares the context budget fairly between steps: packing the list
    greedily hands the generator the top hits of *every* hop, so a second hop's passage (which
    the question's own words could not find) is not crowded out by the first hop's tail. Steps
    that found ``[a, b]`` and ``[c, a]`` give ``a`` (step 0), ``c`` (step 1), ``b`` (step 0).
    """
    out: list[Evidence] = []
    seen: set[int] = set()
    depth = max((len(s.found) for s in steps), default=0)
    for rank in range(depth):
        for index, step in enumerate(steps):
            if rank < len(step.found):
                found = step.found[rank]
                if found.chunk.chunk_id not in seen:
                    seen.add(found.chunk.chunk_id)
                    out.append(Evidence(found, index, step.query))
    return out


def handed(steps: Sequence[PlanStep], min_similarity: float) -> list[Evidence]:
    """The evidence an answer is handed: :func:`interleave` order, without a later step's off-topic finds.

    A retrieval returns its top k whether or not they match: in a corpus of many subjects a hop
    or an expansion brings, below its first few hits, passages about something else, which
    change a small generator's answer although they cannot support it. So a step after the
    question's own keeps only the chunks whose dense score against its query (the inner
    product of normalised vectors) reaches ``min_similarity``; one found by the lexical side
    alone has no dense score and is dropped. The question's own step is handed as ``direct``
    hands it. ``min_similarity <= 0`` keeps everything.

    Example:
        >>> from rag.types import Chunk, StageScores
        >>> def hit(i, dense):
        ...     chunk = Chunk(i, i, "c", str(i), "s", "", "", 0, 0, 1, "x")
        ...     return ScoredChunk(chunk, 1.0, StageScores(dense=dense))
        >>> steps = [PlanStep("q", "question", (hit(1, 0.1),)), PlanStep("h", "hop", (hit(2, 0.6), hit(3, 0.1)))]
        >>> [(e.found.chunk.chunk_id, e.step) for e in handed(steps, 0.25)]
        [(1, 0), (2, 1)]
    """
    if min_similarity <= 0 or len(steps) < 2:
        return interleave(steps)
    kept = [steps[0]] + [
        replace(s, found=tuple(f for f in s.found if f.scores.dense is not None and f.scores.dense >= min_similarity))
        for s in steps[1:]
    ]
    return interleave(kept)


class _Stop(Exception):
    """Planning ends here; ``fallback`` when a call failed rather than a budget or a decision."""

    def __init__(self, reason: str, fallback: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fallback = fallback


class _Run:
    """One plan being built: its steps, its budgets and why it stopped."""

    def __init__(self, config: PlannerConfig, search: StepSearch, requested: str) -> None:
        self.config = config
        self._search = search
        self.requested = requested
        self.steps: list[PlanStep] = []
        self.stop = ""
        self.fallback = ""
        self.prompt_tokens = 0
        self.t0 = time.perf_counter()

    @property
    def question(self) -> str:
        return self.steps[0].query

    def seconds_left(self) -> float:
        return self.config.max_wall_s - (time.perf_counter() - self.t0)

    def searched(self, query: str) -> bool:
        key = _key(query)
        return any(_key(s.query) == key for s in self.steps)

    def search(self, query: str, purpose: str) -> None:
        """Retrieve ``query`` as the next step, when the hop and time budgets allow."""
        if self.steps and len(self.steps) >= self.config.max_hops:
            raise _Stop("max_hops")
        if self.steps and self.seconds_left() <= 0:
            raise _Stop("wall time budget")
        found, timings = self._search(query)
        self.steps.append(PlanStep(query, purpose, tuple(found), timings.with_(total=0.0)))

    def call(
        self, generator: Generator | None, messages: list[dict[str, str]], schema: JsonDict, max_tokens: int,
        name: str, count_tokens: CountTokens,
    ) -> tuple[JsonReply, float]:
        """One constrained call within the budgets, or :class:`_Stop`."""
        if self.seconds_left() <= 0:
            raise _Stop("wall time budget")
        estimate = sum(count_tokens(m["content"]) for m in messages)
        if self.prompt_tokens + estimate > self.config.max_prompt_tokens:
            raise _Stop("prompt token budget")
        generate_json = getattr(generator, "generate_json", None)
        if generate_json is None:
            raise _Stop("the generator cannot reply in JSON", fallback=True)
        t0 = time.perf_counter()
        try:
            reply = generate_json(messages, schema, max_tokens, name=name, timeout_s=self.seconds_left())
        except (StructuredOutputError, GeneratorUnavailableError) as exc:
            self.decide(f"failed: {exc}", Usage(), (time.perf_counter() - t0) * 1000.0)
            raise _Stop(f"{name}: {exc}", fallback=True) from None
        self.prompt_tokens += reply.prompt_tokens
        return reply, (time.perf_counter() - t0) * 1000.0

    def decide(self, decision: str, usage: Usage, ms: float) -> None:
        """Record a planning call on the last step (the one whose evidence it read)."""
        last = self.steps[-1]
        self.steps[-1] = replace(
            last, timings=last.timings.plus(Timings(plan=ms)), usage=last.usage.plus(usage), decision=decision
        )

    def finish(self, mode: str) -> Plan:
        """The plan; ``direct`` when a failed call left only the question's own retrieval."""
        if self.fallback and len(self.steps) == 1:
            mode = "direct"
        return Plan(tuple(self.steps), mode, self.requested, self.stop, self.fallback)


def _key(query: str) -> str:
    return " ".join(re.findall(r"\w+", query.lower()))


def _hop_query(entity: str, query: str, question: str) -> str:
    """The next search: the check's query, led by the entity it named when the query leaves it out.

    An "entity" the question itself names is no bridge (a small model copies the question's own
    subject), so it is left out.
    """
    entity, query = " ".join(entity.split()), " ".join(query.split())
    if entity and _key(entity) not in _key(question) and _key(entity) not in _key(query):
        return f"{entity} {query}".strip()
    return query or entity


def expansion_query(run: _Run, passage_tokens: int, count_tokens: CountTokens) -> str:
    """The question followed by the title and first ``passage_tokens`` tokens of its best passage.

    Nothing but the search reads it: the passage's words find the documents it mentions (the
    bridge of a two-hop question) while the question's keep them on topic.
    """
    best = run.steps[0].found[0].chunk
    text = passage_prefix(" ".join(best.text.split()), passage_tokens, count_tokens).removesuffix(" …")
    title = " ".join(best.title.split())
    return " ".join(part for part in (run.question, f"{title}:" if title else "", text) if part)


def _run_steps(run: _Run, body: Callable[[_Run], None]) -> None:
    """Run the planner's ``body``; a :class:`_Stop` ends it with its reason."""
    try:
        body(run)
    except _Stop as stop:
        run.stop = run.stop or stop.reason
        if stop.fallback:
            run.fallback = stop.reason


class DirectPlanner:
    """One retrieval of the question's own text (a :class:`~rag.interfaces.Planner`).

    Example:
        >>> plan = DirectPlanner().plan("Who approves travel?", lambda q: ([], Timings()))
        >>> [s.query for s in plan.steps], plan.mode
        (['Who approves travel?'], 'direct')
    """

    mode = "direct"

    def plan(self, question: str, search: StepSearch) -> Plan:
        """A one-step plan searching ``question``."""
        found, timings = search(question)
        return Plan((PlanStep(question, "question", tuple(found), timings.with_(total=0.0)),), self.mode, self.mode)


class IterativePlanner:
    """Hops chosen by the generator from the evidence so far (a :class:`~rag.interfaces.Planner`).

    Args:
        config: hops, budgets, and how much of each passage the check reads.
        generator: answers the check in JSON (``generate_json``).
        count_tokens: tokens of a text, for the prompt budget and the passage cut.
    """

    mode = "iterative"

    def __init__(self, config: PlannerConfig, generator: Generator | None, count_tokens: CountTokens) -> None:
        self.config = config
        self.generator = generator
        self.count_tokens = count_tokens

    def plan(self, question: str, search: StepSearch) -> Plan:
        """Retrieve ``question``, then hop while the generator names something missing."""
        run = _Run(self.config, search, self.mode)
        run.search(question, "question")
        _run_steps(run, self.hops)
        return run.finish(self.mode)

    def hops(self, run: _Run) -> None:
        """Add hops to ``run`` until the check says enough, repeats itself, or a budget ends it."""
        while True:
            if len(run.steps) >= self.config.max_hops:
                raise _Stop("max_hops")
            shown = [e.chunk for e in interleave(run.steps)[: self.config.passages]]
            messages = next_hop_messages(
                run.question, shown, [s.query for s in run.steps], self.config.passage_tokens, self.count_tokens
            )
            reply, ms = run.call(
                self.generator, messages, NEXT_HOP_SCHEMA, NEXT_HOP_MAX_TOKENS, "next_hop", self.count_tokens
            )
            query = _hop_query(str(reply.data["entity"]), str(reply.data["query"]), run.question)
            new = bool(query) and not run.searched(query)
            first = len(run.steps) == 1
            # The first check's "enough" stands only when it names nothing new to search: a 0.5B
            # model says "enough" to every first check (20 of 20 HotpotQA questions), bridge or
            # not, while a hop costs one retrieval and no generator call.
            if new and (first or not reply.data["enough"]):
                run.decide(f"next: {query}" + (" (said enough)" if reply.data["enough"] else ""), reply.usage, ms)
                run.search(query, "hop")
                continue
            reason = "enough" if reply.data["enough"] else "no new query"
            run.decide(reason if new or not query else f"{reason} ({query!r})", reply.usage, ms)
            if first and self.config.expand and run.steps[0].found:
                # The check named no bridge after the question's own retrieval: search the
                # question together with its best passage (Xiong et al.'s multi-hop dense
                # retrieval), which finds what that passage is about without naming it.
                run.search(expansion_query(run, self.config.passage_tokens, self.count_tokens), "expansion")
                raise _Stop(f"{reason}; expanded by the best passage")
            raise _Stop(reason)


class DecomposePlanner:
    """Sub-questions retrieved one by one after the question itself (a :class:`~rag.interfaces.Planner`).

    Args:
        config: how many sub-questions and retrievals, and the budgets.
        generator: splits the question in JSON (``generate_json``).
        count_tokens: tokens of a text, for the prompt budget.
    """

    mode = "decompose"

    def __init__(self, config: PlannerConfig, generator: Generator | None, count_tokens: CountTokens) -> None:
        self.config = config
        self.generator = generator
        self.count_tokens = count_tokens

    def plan(self, question: str, search: StepSearch) -> Plan:
        """Retrieve ``question``, split it, retrieve each new sub-question."""
        run = _Run(self.config, search, self.mode)
        run.search(question, "question")
        _run_steps(run, self.split)
        return run.finish(self.mode)

    def split(self, run: _Run) -> None:
        """Add one step per sub-question that differs from every query searched."""
        if len(run.steps) >= self.config.max_hops:
            raise _Stop("max_hops")
        n = self.config.max_sub_questions
        reply, ms = run.call(
            self.generator, decompose_messages(run.question), decompose_schema(n), DECOMPOSE_MAX_TOKENS * n,
            "decompose", self.count_tokens,
        )
        new: list[str] = []
        for part in (" ".join(str(p).split()) for p in reply.data["sub_questions"]):
            if part and not run.searched(part) and _key(part) not in {_key(q) for q in new}:
                new.append(part)
        run.decide(f"split into {len(new)}" if new else "no split", reply.usage, ms)
        if not new:
            raise _Stop("one question")
        for part in new:
            run.search(part, "sub-question")
        run.stop = "sub-questions searched"


class AutoPlanner:
    """``direct`` for single-hop questions, ``iterative`` or ``decompose`` for the rest, by rules.

    The question's own retrieval runs first whatever the route, so a question sent on to
    another planner loses nothing: that planner continues from it.

    Args:
        iterative: the planner for bridge-like questions.
        decompose: the planner for comparisons.
    """

    mode = "auto"

    def __init__(self, iterative: IterativePlanner, decompose: DecomposePlanner) -> None:
        self.iterative = iterative
        self.decompose = decompose

    def plan(self, question: str, search: StepSearch) -> Plan:
        """Route ``question`` (:func:`route_question`), then plan it that way."""
        routing = route_question(question)
        run = _Run(self.iterative.config, search, self.mode)
        run.search(question, "question")
        if routing.mode == "direct":
            run.stop = routing.reason
            return run.finish("direct")
        more = self.iterative.hops if routing.mode == "iterative" else self.decompose.split
        _run_steps(run, more)
        return run.finish(routing.mode)


PLANNER_MODES: tuple[str, ...] = ("auto", "direct", "iterative", "decompose")
"""The valid values of ``RAG_PLANNER__MODE`` and of a request's ``planner``."""


def build_planners(config: PlannerConfig, generator: Generator | None, count_tokens: CountTokens) -> dict[str, Planner]:
    """One planner per mode, sharing the generator, by the names of :data:`PLANNER_MODES`.

    Args:
        config: the planner settings.
        generator: the chat model (planning calls use its ``generate_json``; without one,
            every multi-step plan falls back to ``direct``).
        count_tokens: tokens of a text under the generator's budget tokenizer.
    """
    iterative = IterativePlanner(config, generator, count_tokens)
    decompose = DecomposePlanner(config, generator, count_tokens)
    return {
        "auto": AutoPlanner(iterative, decompose),
        "direct": DirectPlanner(),
        "iterative": iterative,
        "decompose": decompose,
    }


def union(steps: Sequence[PlanStep]) -> list[ScoredChunk]:
    """Every chunk the steps found, once, in :func:`interleave` order."""
    return [e.found for e in interleave(steps)]
