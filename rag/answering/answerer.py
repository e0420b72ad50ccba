"""Answering a question as one stream of events: plan, retrieve, generate, verify."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from rag.answering.events import AnswerEvent, AskEvent, SourcesEvent, TokenEvent
from rag.answering.text import drop_unfinished, tidy
from rag.config import Settings
from rag.errors import GeneratorUnavailableError, InputError
from rag.generation.prompts import build_messages
from rag.interfaces import Generator, Planner, Verifier
from rag.types import (
    Answer,
    Chunk,
    Citation,
    Claim,
    Evidence,
    Filters,
    JsonDict,
    Plan,
    ScoredChunk,
    Stopwatch,
    Timings,
    Usage,
    Verification,
)
from rag.verify.spans import short_answer
from rag.verify.verifier import is_abstention

NOT_ENOUGH_EVIDENCE = "Not enough evidence in the indexed sources to answer this question."


@dataclass(frozen=True)
class Found:
    """What one search returned, as answering needs it."""

    results: list[ScoredChunk]
    timings: Timings
    pipeline: JsonDict


Search = Callable[[str, str, "int | None", "Filters | None"], Found]
"""``search(collection, query, top_k, filters)``: the ranked chunks of one retrieval."""


@dataclass
class _Draft:
    """The state of one answer between its events."""

    question: str
    plan: Plan
    found: Found
    evidence: tuple[Evidence, ...]
    messages: list[dict[str, str]]
    clock: Stopwatch
    t0: float


class Answerer:
    """Answers with checked citations, as events (:meth:`ask_events`) or at once (:meth:`ask`).

    Args:
        settings: service settings (context budget, answer style, abstention thresholds).
        search: runs one retrieval (the pipeline's hybrid search with reranking).
        generator: the chat model, or None (then asking raises :class:`GeneratorUnavailableError`).
        verifier: checks the answer claim by claim.
        planner: chooses the retrievals for a question.
        count_tokens: tokens of a text, for packing sources into the context budget.

    Example:
        >>> answerer = Answerer(settings, pipeline.found, generator, verifier, DirectPlanner(), count)  # doctest: +SKIP
        >>> for event in answerer.ask_events("handbook", "Who approves travel?"):  # doctest: +SKIP
        ...     print(type(event).__name__)
        SourcesEvent
        TokenEvent
        AnswerEvent
    """

    def __init__(
        self,
        settings: Settings,
        search: Search,
        generator: Generator | None,
        verifier: Verifier,
        planner: Planner,
        count_tokens: Callable[[str], int],
    ) -> None:
        self.settings = settings
        self.search = search
        self.generator = generator
        self.verifier = verifier
        self.planner = planner
        self.count_tokens = count_tokens

    def ask(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
    ) -> Answer:
        """The final answer of :meth:`ask_events`, generated in one request rather than streamed.

        Raises:
            GeneratorUnavailableError: the generator is missing, down or timed out.
        """
        events = self.ask_events(collection, question, top_k, filters, strict, stream=False)
        for event in events:
            if isinstance(event, AnswerEvent):
                return event.answer
        raise AssertionError("ask_events ended without an answer")  # pragma: no cover - a bug, not input

    def ask_events(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
        *,
        stream: bool = True,
    ) -> Iterator[AskEvent]:
        """Answer as events: one :class:`SourcesEvent`, :class:`TokenEvent`\\ s, then one :class:`AnswerEvent`.

        Planning and retrieval run before the first event, so their errors (an unknown collection,
        a bad filter, no generator) raise from the first ``next()``, where a caller can still turn
        them into an HTTP error.

        Args:
            collection: collection name.
            question: the user's question.
            top_k: sources retrieved (default from config).
            filters: restrictions applied inside retrieval.
            strict: drop unsupported claims from the answer (default from config).
            stream: stream the generator's reply (True) or take it in one request (False: one token event).

        Raises:
            GeneratorUnavailableError: the generator is missing, down or timed out.
        """
        draft = self._prepare(collection, question, top_k, filters)
        yield SourcesEvent(draft.evidence)
        if not draft.evidence:
            yield AnswerEvent(self._abstained(draft, Usage()))
            return
        parts: list[str] = []
        usage = Usage()
        with draft.clock("generate"):
            if stream:
                for delta in self.generator.stream(draft.messages):
                    if delta.done:
                        usage = Usage(delta.prompt_tokens, delta.completion_tokens)
                    elif delta.text:
                        parts.append(delta.text)
                        yield TokenEvent(delta.text)
                text = tidy("".join(parts))
            else:
                gen = self.generator.generate(draft.messages)
                usage = Usage(gen.prompt_tokens, gen.completion_tokens)
                text = tidy(drop_unfinished(gen.text) if gen.finish_reason == "length" else gen.text)
                yield TokenEvent(text)
        yield AnswerEvent(self._finish(draft, text, strict, usage))

    # steps ---------------------------------------------------------------------------------

    def _prepare(self, collection: str, question: str, top_k: int | None, filters: Filters | None) -> _Draft:
        if self.generator is None:
            raise GeneratorUnavailableError("no generator is configured; /v1/search still works")
        t0 = time.perf_counter()
        if not question or not question.strip():
            raise InputError("query", "must not be empty")
        plan = self.planner.plan(question)
        step = plan.steps[0]
        found = self.search(collection, step.query, top_k, filters)
        clock = Stopwatch()
        for stage, ms in found.timings.as_dict(digits=12).items():
            if stage != "total":
                clock.add(stage, ms)
        draft = _Draft(question, plan, found, (), [], clock, t0)
        if not found.results or self._weak_evidence(found.results):
            return draft
        messages, packed = build_messages(
            question,
            [s.chunk for s in found.results],
            self.settings.generator.context_tokens,
            self.count_tokens,
            self.settings.generator.answer_style,
        )
        by_id = {s.chunk.chunk_id: s for s in found.results}
        draft.evidence = tuple(
            Evidence(replace(by_id[c.chunk_id], chunk=c), 0, step.query) for c in packed
        )
        draft.messages = messages
        return draft

    def _weak_evidence(self, sources: list[ScoredChunk]) -> bool:
        best = sources[0].scores
        cfg = self.settings.verifier
        if best.rerank is not None:
            return best.rerank < cfg.min_retrieval_score
        return (best.fused or 0.0) < cfg.min_fusion_score

    def _abstained(self, draft: _Draft, usage: Usage, verification: Verification | None = None,
                   text: str = NOT_ENOUGH_EVIDENCE) -> Answer:
        v = verification or Verification((), 0.0)
        return Answer(
            text, (), v.claims, v.faithfulness, True, draft.found.pipeline, self._timings(draft), usage,
            tuple(draft.found.results), draft.plan, v.invalid_citations,
        )

    def _timings(self, draft: _Draft) -> Timings:
        return draft.clock.freeze().with_(total=(time.perf_counter() - draft.t0) * 1000.0)

    def _finish(self, draft: _Draft, text: str, strict: bool | None, usage: Usage) -> Answer:
        packed = [e.chunk for e in draft.evidence]
        short = self.settings.generator.answer_style == "short"
        with draft.clock("verify"):
            if short and not is_abstention(text):
                span = short_answer(draft.question, text, [c.text for c in packed])
                text = f"{span.text} [{span.source}]" if span.source else span.text
            verification = self.verifier.verify(
                text, packed, strict=strict, question=draft.question if short else None
            )
        model_abstained = is_abstention(text) or text.strip().lower().startswith(("i don't know", "i do not know"))
        if model_abstained:
            return self._abstained(draft, usage, verification, text)
        if self._unfaithful(verification):
            return self._abstained(draft, usage, verification)
        kept = verification.answer or text
        if is_abstention(kept):  # strict mode kept no claim
            return self._abstained(draft, usage, verification, kept)
        return Answer(
            kept,
            _citations(verification.claims, packed),
            verification.claims,
            verification.faithfulness,
            False,
            draft.found.pipeline,
            self._timings(draft),
            usage,
            tuple(draft.found.results),
            draft.plan,
            verification.invalid_citations,
        )

    def _unfaithful(self, verification: Verification) -> bool:
        """Too little of the answer is supported to show it (``min_faithfulness``, ``abstain_unsupported``)."""
        if not verification.claims:
            return False
        cfg = self.settings.verifier
        if cfg.abstain_unsupported and not any(c.verdict == "supported" for c in verification.claims):
            return True
        return verification.faithfulness < cfg.min_faithfulness


def _citations(claims: tuple[Claim, ...], packed: list[Chunk]) -> tuple[Citation, ...]:
    kinds: dict[int, str] = {}
    for claim in claims:
        for i, n in enumerate(claim.citations):
            kind = claim.kinds[i] if i < len(claim.kinds) else "generated"
            if 1 <= n <= len(packed) and kinds.get(n) != "generated":
                kinds[n] = kind
    return tuple(Citation(n, packed[n - 1], kinds[n]) for n in sorted(kinds))  # type: ignore[arg-type]
