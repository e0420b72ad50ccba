"""Hybrid retrieval: BM25 and dense rankings of one collection, fused by RRF, with filters applied inside both."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from rag.config import RetrievalConfig
from rag.errors import InputError
from rag.interfaces import CollectionView
from rag.retrieval.fusion import reciprocal_rank_fusion
from rag.types import Filters, Hit, Query, ScoredChunk, Stopwatch, Timings


@dataclass(frozen=True)
class RetrievalResult:
    """Everything one hybrid retrieval produced.

    Attributes:
        fused: hydrated chunks after RRF, best first (only chunks of active documents).
        bm25: raw BM25 hits, best first.
        dense: raw dense hits, best first.
        timings: ``embed``, ``bm25``, ``dense`` and ``fuse`` (filters, fusion and loading chunk rows).
    """

    fused: list[ScoredChunk]
    bm25: list[Hit]
    dense: list[Hit]
    timings: Timings


class HybridRetriever:
    """Fuses a collection's BM25 and dense rankings; a :class:`~rag.interfaces.Retriever`.

    Args:
        collection: the collection's two rankings (a :class:`~rag.index.reader.CollectionReader`).
        config: retrieval settings (candidates per ranking, RRF k, weights, top k).

    Example:
        >>> hybrid = HybridRetriever(reader, settings.retrieval)  # doctest: +SKIP
        >>> hybrid.retrieve("Who approves travel?", None, 5)[0].scores.fused  # doctest: +SKIP
    """

    def __init__(self, collection: CollectionView, config: RetrievalConfig) -> None:
        self.collection = collection
        self.config = config

    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None) -> list[ScoredChunk]:
        """The fused ranking's head; see :meth:`run`."""
        k = top_k or self.config.top_k
        return self.run(query, filters=filters, hydrate=k).fused[:k]

    def run(
        self,
        query: str | Query,
        *,
        candidates: int | None = None,
        filters: Filters | None = None,
        hydrate: int | None = None,
    ) -> RetrievalResult:
        """Retrieve from both rankings and fuse, keeping each ranking's raw hits.

        Args:
            query: the user's question (untrusted text), or a :class:`Query` with its vector.
            candidates: hits taken from each ranking before fusion (default from config).
            filters: restrictions applied inside both rankings, before truncation.
            hydrate: how many fused hits to load from the database (default: all).

        Returns:
            The fused, hydrated result with per-stage timings.

        Raises:
            InputError: for an empty query or a filter the database cannot apply.
        """
        q = query if isinstance(query, Query) else Query(query)
        if not q.text or not q.text.strip():
            raise InputError("query", "must not be empty")
        n = candidates or self.config.candidates
        clock = Stopwatch()
        # The query embeds on the batcher's thread while filters resolve and BM25 searches here.
        with clock("embed"):
            q = self.collection.dense_retriever.prepare(q)
        try:
            with clock("fuse"):
                restriction = self.collection.restriction(filters)
            bm25 = self.collection.bm25_retriever.hits(q, restriction, n, clock)
        except BaseException:
            if isinstance(q.vector, Future):
                q.vector.cancel()  # not embedded yet: the batcher skips it
            raise
        dense = self.collection.dense_retriever.hits(q, restriction, n, clock)
        with clock("fuse"):
            fused = reciprocal_rank_fusion(
                {"bm25": bm25, "dense": dense},
                k=self.config.rrf_k,
                weights={"bm25": self.config.bm25_weight, "dense": self.config.dense_weight},
                limit=hydrate,
            )
            out = self.collection.hydrate(fused)
        return RetrievalResult(out, bm25, dense, clock.freeze())
