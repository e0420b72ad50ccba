"""Answering a question as one stream of events: plan, retrieve, generate, verify."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from rag.answering.events import AnswerEvent, AskEvent, SourcesEvent, TokenEvent
from rag.answering.text import drop_unfinished, tidy
from rag.config import Settings
from rag.errors import GeneratorUnavailableError, InputError
from rag.generation.prompts import build_messages
from rag.interfaces import Generator, Planner, Verifier
from rag.planning import PLANNER_MODES, ConversationRewriter, handed, interleave
from rag.types import (
    Answer,
    Chunk,
    Citation,
    CitedSpan,
    Claim,
    Evidence,
    Filters,
    JsonDict,
    Plan,
    ScoredChunk,
    Stopwatch,
    Timings,
    Turn,
    Usage,
    Verification,
    page_of,
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
        planner: chooses and runs the retrievals for a question (the default mode).
        count_tokens: tokens of a text, for packing sources into the context budget.
        planners: the planner of each mode a request may ask for by name (``planner=``).
        rewriter: makes a follow-up standalone when a request carries ``history``; None keeps
            follow-ups as asked.

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
        *,
        planners: Mapping[str, Planner] | None = None,
        rewriter: ConversationRewriter | None = None,
    ) -> None:
        self.settings = settings
        self.search = search
        self.generator = generator
        self.verifier = verifier
        self.planner = planner
        self.count_tokens = count_tokens
        self.planners = dict(planners or {})
        self.rewriter = rewriter

    def ask(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
        *,
        history: Sequence[Turn] = (),
        planner: str | None = None,
    ) -> Answer:
        """The final answer of :meth:`ask_events`, generated in one request rather than streamed.

        Raises:
            GeneratorUnavailableError: the generator is missing, down or timed out.
            InputError: an empty question or an unknown ``planner``.
        """
        events = self.ask_events(
            collection, question, top_k, filters, strict, stream=False, history=history, planner=planner
        )
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
        history: Sequence[Turn] = (),
        planner: str | None = None,
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
            history: the conversation's earlier turns, oldest first; with any, the question is
                rewritten to stand alone before retrieval (:attr:`Plan.rewrite`).
            planner: the planning mode for this question (default: the configured one).

        Raises:
            GeneratorUnavailableError: the generator is missing, down or timed out.
            InputError: an empty question or an unknown ``planner``.
        """
        draft = self._prepare(collection, question, top_k, filters, history, planner)
        yield SourcesEvent(draft.evidence)
        if not draft.evidence:
            yield AnswerEvent(self._planned(draft, self._abstained(draft, Usage())))
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
        yield AnswerEvent(self._planned(draft, self._finish(draft, text, strict, usage)))

    # steps ---------------------------------------------------------------------------------

    def _prepare(
        self,
        collection: str,
        question: str,
        top_k: int | None,
        filters: Filters | None,
        history: Sequence[Turn] = (),
        mode: str | None = None,
    ) -> _Draft:
        """Rewrite a follow-up, run the plan, and pack the evidence of all its steps.

        The steps' chunks are packed in :func:`rag.planning.interleave` order (each step's best,
        then each step's second, ...), so every hop gets a share of the context budget; a later
        step's chunks that do not match its query are left out (:func:`rag.planning.handed`).
        """
        if self.generator is None:
            raise GeneratorUnavailableError("no generator is configured; /v1/search still works")
        return self._gather(collection, question, top_k, filters, history, mode)

    def evidence(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        *,
        history: Sequence[Turn] = (),
        planner: str | None = None,
    ) -> tuple[Plan, tuple[Evidence, ...]]:
        """The plan and the evidence the generator would be handed, without generating an answer.

        Evaluation scores retrieval this way (``rag eval retrieval --planner``). Without a
        generator, planners that need one fall back to ``direct``.

        Returns:
            The plan run, and the packed sources in their order (empty when the answer would abstain
            for weak evidence).

        Raises:
            InputError: an empty question or an unknown ``planner``.
        """
        draft = self._gather(collection, question, top_k, filters, history, planner)
        return draft.plan, draft.evidence

    def _gather(
        self,
        collection: str,
        question: str,
        top_k: int | None,
        filters: Filters | None,
        history: Sequence[Turn],
        mode: str | None,
    ) -> _Draft:
        t0 = time.perf_counter()
        if not question or not question.strip():
            raise InputError("query", "must not be empty")
        planner = self._planner(mode)
        rewrite = self.rewriter.rewrite(question, history) if history and self.rewriter is not None else None
        standalone = rewrite.question if rewrite is not None else question
        pipelines: list[JsonDict] = []

        def step_search(query: str) -> tuple[list[ScoredChunk], Timings]:
            found = self.search(collection, query, top_k, filters)
            pipelines.append(found.pipeline)
            return found.results, found.timings

        plan = replace(planner.plan(standalone, step_search), rewrite=rewrite)
        clock = Stopwatch()
        for stage, ms in plan.timings.as_dict(digits=12).items():
            if stage != "total":
                clock.add(stage, ms)
        ordered = interleave(plan.steps)
        found = Found([e.found for e in ordered], plan.timings, pipelines[0] if pipelines else {})
        draft = _Draft(standalone, plan, found, (), [], clock, t0)
        if not ordered or self._weak_evidence(found.results):
            return draft
        offered = handed(plan.steps, self.settings.planner.min_step_similarity)
        messages, packed = build_messages(
            standalone,
            [e.chunk for e in offered],
            source_budget(self.settings, 1 + len({e.step for e in offered if e.step > 0})),
            self.count_tokens,
            self.settings.generator.answer_style,
        )
        by_id = {e.chunk.chunk_id: e for e in offered}
        draft.evidence = tuple(
            replace(by_id[c.chunk_id], found=replace(by_id[c.chunk_id].found, chunk=c)) for c in packed
        )
        draft.messages = messages
        return draft

    def _planner(self, mode: str | None) -> Planner:
        if mode is None:
            return self.planner
        if mode not in self.planners:
            valid = " | ".join(m for m in PLANNER_MODES if m in self.planners) or "none configured"
            raise InputError("planner", f"unknown planner {mode!r}; valid: {valid}")
        return self.planners[mode]

    def _planned(self, draft: _Draft, answer: Answer) -> Answer:
        """The answer with its packed evidence, and the plan's tokens added to its usage."""
        return replace(answer, evidence=draft.evidence, usage=answer.usage.plus(draft.plan.usage))

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
                text, packed, strict=strict, question=draft.question if short else None,
                steps=[e.step for e in draft.evidence],
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


def source_budget(settings: Settings, steps: int) -> int:
    """Tokens of sources an answer gets from ``steps`` retrievals that hand on passages.

    The generator's ``context_tokens``, plus ``planner.step_context_tokens`` for each step after
    the first. A step none of whose finds is handed on adds nothing, so that a plan whose hops
    found nothing on topic gives the generator what ``direct`` gives it. One budget for every
    plan would split the same room between more retrievals: on HotpotQA a direct retrieval hands
    on about 7 passages, and a two-hop plan, packed round-robin, would then hand on the top 3 or 4
    of each, dropping a first hop's gold passage at rank 5.
    """
    return settings.generator.context_tokens + max(0, steps - 1) * settings.planner.step_context_tokens


def _citations(claims: tuple[Claim, ...], packed: list[Chunk]) -> tuple[Citation, ...]:
    """One citation per cited source, with the spans that back the claims citing it.

    A span enters its citation only from a claim it supports (an unsupported claim's best
    sentence backs nothing); its section and page are those of the span's own start.
    """
    kinds: dict[int, str] = {}
    spans: dict[int, dict[tuple[int, int], None]] = {}
    for claim in claims:
        for i, n in enumerate(claim.citations):
            kind = claim.kinds[i] if i < len(claim.kinds) else "generated"
            if 1 <= n <= len(packed) and kinds.get(n) != "generated":
                kinds[n] = kind
            if 1 <= n <= len(packed) and claim.verdict == "supported" and i < len(claim.spans):
                start, end = claim.spans[i]
                if end > start:
                    spans.setdefault(n, {})[(start, end)] = None
    out = []
    for n in sorted(kinds):
        chunk = packed[n - 1]
        cited = tuple(
            CitedSpan(a, b, chunk.section_at(a), page_of(chunk.section_at(a))) for a, b in sorted(spans.get(n, {}))
        )
        out.append(Citation(n, chunk, kinds[n], cited))  # type: ignore[arg-type]
    return tuple(out)
