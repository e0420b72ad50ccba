"""Wires the stages of the query path: retrieve, rerank, then answering. No stage imports this module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.answering import AnswerEvent, Answerer, AskEvent, Found, SourcesEvent, TokenEvent
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import InputError, NotFoundError
from rag.index.reader import CollectionReader, ReaderCache
from rag.index.fanout import Fanout
from rag.index.store import CollectionInfo, Store
from rag.interfaces import Generator, Planner, Reranker
from rag.planning import ConversationRewriter, build_planners
from rag.privacy import KINDS, AnswerPolicy, Redactor, StreamGuard
from rag.retrieval.hybrid import HybridRetriever, RetrievalResult
from rag.types import Answer, Chunk, Evidence, Filters, Plan, ScoredChunk, Timings, Turn
from rag.verify.verifier import Verifier, build_scorer


@dataclass(frozen=True)
class SearchResult:
    """Ranked chunks with per-stage timings and a description of the pipeline that ran."""

    results: list[ScoredChunk]
    timings: Timings
    pipeline: dict[str, Any]
    retrieval: RetrievalResult | None = None


@dataclass
class ComponentStatus:
    """State of an optional component, for ``/health`` and each response's ``pipeline`` field.

    Attributes:
        enabled: the component runs.
        model: its model, if any.
        detail: one line on how it runs, or why it is off.
        extra: more facts for ``/health``.
    """

    enabled: bool
    model: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """``on``, or ``off`` (by configuration or a missing optional model: not a fault)."""
        return "on" if self.enabled else "off"


class RagPipeline:
    """The query path over every collection in one data dir.

    Args:
        settings: service settings.
        store: the database.
        embedder: the embedding model (warmed up on first use).
        reranker: a loaded reranker, or None.
        reranker_status: why the reranker is on or off.
        generator: the chat-completions client, or None (``/v1/search`` still works).
        planner: the default planner (default: the one of ``RAG_PLANNER__MODE``); a request may
            still ask for another mode by name.
        fanout: how a collection's shards are searched (default: in this process, by threads when
            it has several); ``rag serve --engine ray`` gives Ray actors.

    Example:
        >>> with open_runtime(settings) as runtime:  # doctest: +SKIP
        ...     answer = runtime.pipeline.ask("handbook", "Who approves travel?")
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        reranker: Reranker | None = None,
        reranker_status: ComponentStatus | None = None,
        generator: Generator | None = None,
        planner: Planner | None = None,
        fanout: Callable[[CollectionInfo], Fanout] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.reranker_status = reranker_status or ComponentStatus(reranker is not None)
        self.generator = generator
        self.verifier = Verifier(
            settings.verifier, build_scorer(settings.verifier, embedder.embed_documents), self._stored_vectors
        )
        self.planners = build_planners(settings.planner, generator, self._count_tokens)
        self.answerer = Answerer(
            settings,
            self._found,
            generator,
            self.verifier,
            planner or self.planners[settings.planner.mode],
            self._count_tokens,
            planners=self.planners,
            rewriter=ConversationRewriter(settings.planner, generator, self._count_tokens),
        )
        self._readers = ReaderCache(
            lambda info: CollectionReader(
                self.settings, self.store, info, self.embedder, fanout(info) if fanout is not None else None
            ),
            lambda: {c.id for c in self.store.collections()},
        )

    # collections ---------------------------------------------------------------------------

    def reader(self, collection: str) -> CollectionReader:
        """The collection's reader, opened once and refreshed when another process committed.

        Raises:
            NotFoundError: the collection does not exist.
        """
        try:
            info = self.store.collection(collection)
        except NotFoundError:
            self._readers.discard(collection)  # a dropped collection's indexes leave memory
            raise
        return self._readers.get(info)

    def retriever(self, collection: str) -> HybridRetriever:
        """Hybrid retrieval over the collection (fresh as of this call)."""
        return HybridRetriever(self.reader(collection), self.settings.retrieval)

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
        retriever = self.retriever(collection)
        use_rerank = rerank and self.reranker is not None
        n_rerank = max(self.reranker.top_n, k) if use_rerank else k
        candidates = max(self.settings.retrieval.candidates, k)
        result = retriever.run(query, candidates=candidates, filters=filters, hydrate=max(n_rerank, k))
        timings = result.timings
        ranked = result.fused
        if use_rerank:
            t = time.perf_counter()
            ranked = self.reranker.rerank(query, ranked[:n_rerank], top_k=k)
            timings = timings.with_(rerank=(time.perf_counter() - t) * 1000.0)
        else:
            ranked = ranked[:k]
        timings = timings.with_(total=(time.perf_counter() - t0) * 1000.0)
        return SearchResult(ranked, timings, self.pipeline_info(), result)

    def _found(self, collection: str, query: str, top_k: int | None, filters: Filters | None) -> Found:
        found = self.search(collection, query, top_k, filters)
        return Found(found.results, found.timings, found.pipeline)

    def _stored_vectors(self, chunks: Sequence[Chunk]) -> list[np.ndarray | None]:
        """The vector stored with each chunk (decrypted by the store), or None when there is none.

        The verifier uses them instead of embedding the cited chunks again; a vector of another
        dimension than the embedder's (a chunk not from a collection of this model) is left out.
        """
        stored = self.store.chunk_vectors(c.chunk_id for c in chunks)
        dim = self.embedder.dim
        return [v if (v := stored.get(c.chunk_id)) is not None and v.shape == (dim,) else None for c in chunks]

    def _count_tokens(self, text: str) -> int:
        return len(self.embedder.tokenizer.tokenize(text))

    # ask -----------------------------------------------------------------------------------

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
        """Answer a question with checked citations (see :meth:`rag.answering.Answerer.ask`).

        The answer then passes the privacy check (:meth:`answer_policy`).
        """
        answer = self.answerer.ask(collection, question, top_k, filters, strict, history=history, planner=planner)
        policy = self.answer_policy(collection)
        return policy.apply(answer) if policy is not None else answer

    def ask_events(
        self,
        collection: str,
        question: str,
        top_k: int | None = None,
        filters: Filters | None = None,
        strict: bool | None = None,
        *,
        history: Sequence[Turn] = (),
        planner: str | None = None,
    ) -> Iterator[AskEvent]:
        """The answer as typed events (see :meth:`rag.answering.Answerer.ask_events`).

        Under the privacy check (:meth:`answer_policy`) in ``remove`` mode, tokens are held back
        to sentence ends and each sentence is checked before it is sent, so a streamed answer
        cannot leak what the final one removes.
        """
        events = self.answerer.ask_events(
            collection, question, top_k, filters, strict, history=history, planner=planner
        )
        return self._checked_events(collection, events)

    def answer_policy(self, collection: str) -> AnswerPolicy | None:
        """The privacy check of a collection's answers, or None when none runs.

        It runs for a collection that redacts personal data at ingestion (its kinds), and for
        every collection (all kinds) with ``RAG_PRIVACY__ALL_COLLECTIONS``; ``RAG_PRIVACY__ANSWER_POLICY``
        chooses remove, flag or off.
        """
        cfg = self.settings.privacy
        if cfg.answer_policy == "off":
            return None
        kinds = self.store.collection(collection).settings.get("redact") or (KINDS if cfg.all_collections else ())
        if not kinds:
            return None
        return AnswerPolicy(Redactor(kinds, region=cfg.phone_region), cfg.answer_policy)

    def _checked_events(self, collection: str, events: Iterator[AskEvent]) -> Iterator[AskEvent]:
        policy: AnswerPolicy | None = None
        guard: StreamGuard | None = None
        for event in events:
            if isinstance(event, SourcesEvent):
                policy = self.answer_policy(collection)
                if policy is not None:
                    guard = StreamGuard(policy, [e.chunk.text for e in event.evidence])
            elif isinstance(event, TokenEvent) and guard is not None:
                text = guard.feed(event.text)
                if text:
                    yield TokenEvent(text)
                continue
            elif isinstance(event, AnswerEvent) and policy is not None:
                rest = guard.flush() if guard is not None else ""
                if rest:
                    yield TokenEvent(rest)
                event = AnswerEvent(policy.apply(event.answer))
            yield event

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
        """The plan and the sources an answer would be given (see :meth:`rag.answering.Answerer.evidence`)."""
        return self.answerer.evidence(collection, question, top_k, filters, history=history, planner=planner)
