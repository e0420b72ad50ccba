"""Wires the stages: retrieve, rerank, generate, verify. No stage imports this module."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import GeneratorUnavailableError, InputError, ModelLoadError
from rag.generation.client import Generator
from rag.generation.prompts import build_messages
from rag.index.collection import CollectionIndex
from rag.index.store import Store
from rag.rerank.cross_encoder import Reranker
from rag.retrieval.hybrid import HybridRetriever, RetrievalResult
from rag.types import Answer, Citation, Claim, Filters, ScoredChunk, Verification
from rag.verify.spans import short_answer
from rag.verify.support import HybridSupportScorer
from rag.verify.verifier import Verifier, is_abstention

log = logging.getLogger(__name__)

NOT_ENOUGH_EVIDENCE = "Not enough evidence in the indexed sources to answer this question."


@dataclass(frozen=True)
class SearchResult:
    """Ranked chunks with per-stage timings and a description of the pipeline that ran."""

    results: list[ScoredChunk]
    timings_ms: dict[str, float]
    pipeline: dict[str, Any]
    retrieval: RetrievalResult | None = None


@dataclass
class ComponentStatus:
    """State of an optional component, for ``/health`` and each response's ``pipeline`` field."""

    enabled: bool
    model: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_reranker(settings: Settings) -> tuple[Reranker | None, ComponentStatus]:
    """Load the configured reranker.

    The default model may be missing on an offline machine: then reranking is off, with one
    warning. A reranker the user chose explicitly must load.

    Raises:
        ModelLoadError: an explicitly configured reranker could not be loaded.
    """
    if not settings.reranker.model:
        return None, ComponentStatus(False, "", "disabled by configuration (RAG_RERANKER__MODEL is empty)")
    reranker = Reranker(settings.reranker)
    try:
        reranker.warm_up()
    except ModelLoadError as exc:
        if settings.reranker_explicit:
            raise
        log.warning("reranking is off: the default reranker could not be loaded (%s)", exc)
        return None, ComponentStatus(False, settings.reranker.model, f"default reranker unavailable: {exc}")
    detail = f"top {reranker.top_n} on {reranker.device}, {reranker.max_length} tokens"
    if reranker.weight < 1.0:
        detail += f", blended with retrieval (cross-encoder weight {reranker.weight:g}, BM25 share {reranker.lexical_share:g})"
    return reranker, ComponentStatus(True, settings.reranker.model, detail)


class RagPipeline:
    """The query path over every collection in one data dir.

    Args:
        settings: service settings.
        store: the database.
        embedder: the embedding model (warmed up on first use).
        reranker: a loaded reranker, or None.
        reranker_status: why the reranker is on or off.
        generator: the chat-completions client, or None (``/v1/search`` still works).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        reranker: Reranker | None = None,
        reranker_status: ComponentStatus | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.reranker_status = reranker_status or ComponentStatus(reranker is not None)
        self.generator = generator
        self.retriever = HybridRetriever(settings.retrieval, embedder)
        self.verifier = Verifier(settings.verifier, HybridSupportScorer(embedder.embed_documents))
        self._indexes: dict[str, CollectionIndex] = {}
        self._lock = threading.Lock()

    # collections ---------------------------------------------------------------------------

    def index(self, collection: str) -> CollectionIndex:
        """The collection's indexes, opened once and refreshed when another process committed.

        Raises:
            NotFoundError: the collection does not exist.
        """
        info = self.store.collection(collection)
        with self._lock:
            idx = self._indexes.get(collection)
            if idx is None or idx.info.id != info.id:
                idx = CollectionIndex(self.settings, self.store, info, self.embedder.model_id, self.embedder.dim)
                self._indexes[collection] = idx
            else:
                idx.refresh()
        return idx

    def pipeline_info(self) -> dict[str, Any]:
        """Which stages run, and with which models."""
        return {
            "retrieval": "hybrid",
            "bm25": "tantivy",
            "dense": self.settings.dense.index,
            "fusion": f"rrf(k={self.settings.retrieval.rrf_k})",
            "embedding_model": self.embedder.model_id,
            "rerank": self.reranker_status.enabled,
            "reranker_model": self.reranker_status.model if self.reranker_status.enabled else None,
            "rerank_detail": self.reranker_status.detail,
            "generator": self.generator.model if self.generator is not None else None,
        }

    # search --------------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        *,
        rerank: bool = True,
    ) -> SearchResult:
        """Hybrid retrieval, then the cross-encoder when one is loaded.

        Args:
            collection: collection name.
            query: the question.
            top_k: results to return (default from config).
            filters: restrictions applied inside both retrievers.
            rerank: whether to apply the reranker, when loaded.

        Returns:
            The ranked chunks, timings per stage and the pipeline description.
        """
        k = top_k or self.settings.retrieval.top_k
        if k < 1:
            raise InputError("top_k", "must be at least 1")
        t0 = time.perf_counter()
        idx = self.index(collection)
        use_rerank = rerank and self.reranker is not None
        n_rerank = max(self.reranker.top_n, k) if use_rerank else k
        candidates = max(self.settings.retrieval.candidates, k)
        result = self.retriever.retrieve(idx, query, candidates=candidates, filters=filters, hydrate=max(n_rerank, k))
        timings = dict(result.timings_ms)
        ranked = result.fused
        if use_rerank:
            t = time.perf_counter()
            ranked = self.reranker.rerank(query, ranked[:n_rerank], top_k=k)
            timings["rerank"] = (time.perf_counter() - t) * 1000.0
        else:
            ranked = ranked[:k]
        timings["total"] = (time.perf_counter() - t0) * 1000.0
        return SearchResult(ranked, timings, self.pipeline_info(), result)

    # ask -----------------------------------------------------------------------------------

    def _prepare(self, collection: str, question: str, top_k: int | None, filters: Filters | None):
        if self.generator is None:
            raise GeneratorUnavailableError("no generator is configured; /v1/search still works")
        found = self.search(collection, question, top_k, filters)
        sources = found.results
        abstain = not sources or self._weak_evidence(sources)
        messages: list[dict[str, str]] = []
        packed: list = []
        if not abstain:
            messages, packed = build_messages(
                question,
                [s.chunk for s in sources],
                self.settings.generator.context_tokens,
                self._count_tokens,
                self.settings.generator.answer_style,
            )
        return found, abstain, messages, packed

    def _weak_evidence(self, sources: list[ScoredChunk]) -> bool:
        best = sources[0].scores
        cfg = self.settings.verifier
        if "rerank" in best:
            return best["rerank"] < cfg.min_retrieval_score
        return best.get("rrf", 0.0) < cfg.min_fusion_score

    def _count_tokens(self, text: str) -> int:
        return len(self.embedder.tokenizer.tokenize(text))

    def ask(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
    ) -> Answer:
        """Answer a question with checked citations.

        Raises:
            GeneratorUnavailableError: the generator is missing, down or timed out.
        """
        t0 = time.perf_counter()
        found, abstain, messages, packed = self._prepare(collection, question, top_k, filters)
        timings = dict(found.timings_ms)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        if abstain:
            return self._abstained(found, timings, usage, t0)
        t = time.perf_counter()
        gen = self.generator.generate(messages)
        timings["generate"] = (time.perf_counter() - t) * 1000.0
        usage = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens}
        text = _tidy(_drop_unfinished(gen.text) if gen.finish_reason == "length" else gen.text)
        return self._finish(question, found, packed, text, strict, timings, usage, t0)

    def ask_events(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """Answer as a stream of events: ``sources``, ``token`` (many), then ``answer`` (the final :class:`Answer`).

        Errors before the first event raise; the caller maps them to HTTP errors.
        """
        t0 = time.perf_counter()
        found, abstain, messages, packed = self._prepare(collection, question, top_k, filters)
        timings = dict(found.timings_ms)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        if abstain:
            yield "sources", []
            yield "answer", self._abstained(found, timings, usage, t0)
            return
        yield "sources", packed
        t = time.perf_counter()
        parts: list[str] = []
        for delta in self.generator.stream(messages):
            if delta.done:
                usage = {"prompt_tokens": delta.prompt_tokens, "completion_tokens": delta.completion_tokens}
            elif delta.text:
                parts.append(delta.text)
                yield "token", delta.text
        timings["generate"] = (time.perf_counter() - t) * 1000.0
        yield "answer", self._finish(question, found, packed, _tidy("".join(parts)), strict, timings, usage, t0)

    def _abstained(self, found: SearchResult, timings: dict[str, float], usage: dict[str, int], t0: float) -> Answer:
        timings.setdefault("generate", 0.0)
        timings.setdefault("verify", 0.0)
        timings["total"] = (time.perf_counter() - t0) * 1000.0
        return Answer(NOT_ENOUGH_EVIDENCE, (), (), 0.0, True, found.pipeline, _stage_timings(timings), usage, tuple(found.results))

    def _finish(
        self,
        question: str,
        found: SearchResult,
        packed: list,
        text: str,
        strict: bool | None,
        timings: dict[str, float],
        usage: dict[str, int],
        t0: float,
    ) -> Answer:
        t = time.perf_counter()
        short = self.settings.generator.answer_style == "short"
        if short and not is_abstention(text):
            span = short_answer(question, text, [c.text for c in packed])
            text = f"{span.text} [{span.source}]" if span.source else span.text
        verification: Verification = self.verifier.verify(
            text, packed, strict=strict, question=question if short else None
        )
        timings["verify"] = (time.perf_counter() - t) * 1000.0
        timings["total"] = (time.perf_counter() - t0) * 1000.0
        model_abstained = is_abstention(text) or text.strip().lower().startswith(("i don't know", "i do not know"))
        cfg = self.settings.verifier
        low_faith = bool(verification.claims) and verification.faithfulness < cfg.min_faithfulness
        if model_abstained or low_faith:
            reason = NOT_ENOUGH_EVIDENCE if low_faith else text
            return Answer(
                reason, (), verification.claims, verification.faithfulness, True, found.pipeline,
                _stage_timings(timings), usage, tuple(found.results),
            )
        citations = _citations(verification.claims, packed)
        return Answer(
            verification.answer or text,
            citations,
            verification.claims,
            verification.faithfulness,
            False,
            found.pipeline,
            _stage_timings(timings),
            usage,
            tuple(found.results),
        )


def _citations(claims: tuple[Claim, ...], packed: list) -> tuple[Citation, ...]:
    kinds: dict[int, str] = {}
    for claim in claims:
        for i, n in enumerate(claim.citations):
            kind = claim.kinds[i] if i < len(claim.kinds) else "generated"
            if 1 <= n <= len(packed) and kinds.get(n) != "generated":
                kinds[n] = kind
    return tuple(Citation(n, packed[n - 1], kinds[n]) for n in sorted(kinds))  # type: ignore[arg-type]


def _drop_unfinished(text: str) -> str:
    """Cut an answer that hit the token limit back to its last complete sentence (and its citations)."""
    # a sentence end, not a list number such as "3."
    ends = list(re.finditer(r"(?<!\s\d)(?<!^\d)[.!?](?:\s*\[[\d,\s\-–]+\])*(?=\s|$)", text))
    return text[: ends[-1].end()].strip() if ends else text


# Trailing lines with nothing to say: a list number or bullet the model opened and never filled.
_EMPTY_ITEM = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•+])?[ \t]*\Z")
_LAST_FENCE = re.compile(r"\n[ \t]*`{3,}[\w-]*[ \t]*\Z")


def _tidy(text: str) -> str:
    """The answer without trailing empty list items or an unclosed code fence (e.g. "...renamed.\n3.\n```")."""
    text = text.strip()
    while True:
        before = text
        text = _EMPTY_ITEM.sub("", text).rstrip()
        fence = _LAST_FENCE.search(text)
        if fence and len(re.findall(r"^[ \t]*`{3,}", text, re.MULTILINE)) % 2:
            text = text[: fence.start()].rstrip()
        if text == before:
            return text


STAGE_KEYS = ("embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total")


def _stage_timings(t: dict[str, float]) -> dict[str, float]:
    out = {k: round(t.get(k, 0.0), 3) for k in STAGE_KEYS}
    out["fuse"] = round(t.get("fuse", 0.0) + t.get("filter", 0.0), 3)
    return out
