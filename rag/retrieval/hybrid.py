"""Hybrid retrieval: BM25 and dense search, fused by RRF, with filters applied inside both."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from rag.config import RetrievalConfig
from rag.embedding import Embedder
from rag.errors import InputError
from rag.index.collection import CollectionIndex
from rag.retrieval.fusion import reciprocal_rank_fusion
from rag.types import Filters, Hit, ScoredChunk


@dataclass(frozen=True)
class RetrievalResult:
    """Everything one hybrid retrieval produced.

    Attributes:
        fused: hydrated chunks after RRF, best first (only chunks of active documents).
        bm25: raw BM25 hits, best first.
        dense: raw dense hits, best first.
        timings_ms: ``embed``, ``bm25``, ``dense``, ``fuse`` (fusion plus loading chunk rows).
    """

    fused: list[ScoredChunk]
    bm25: list[Hit]
    dense: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


class HybridRetriever:
    """Runs BM25 and dense retrieval over one collection and fuses them.

    Args:
        config: retrieval settings (candidates per retriever, RRF k, weights).
        embedder: the query embedder (same model as the collection's index).
    """

    def __init__(self, config: RetrievalConfig, embedder: Embedder) -> None:
        self.config = config
        self.embedder = embedder

    def retrieve(
        self,
        index: CollectionIndex,
        query: str,
        *,
        candidates: int | None = None,
        filters: Filters | None = None,
        hydrate: int | None = None,
        query_vector: np.ndarray | None = None,
    ) -> RetrievalResult:
        """Retrieve and fuse.

        Args:
            index: the collection's indexes.
            query: the user's question (untrusted text).
            candidates: hits taken from each retriever before fusion (default from config).
            filters: restrictions applied inside both retrievers, before truncation.
            hydrate: how many fused hits to load from the database (default: all).
            query_vector: a precomputed query embedding (benchmarks), skips embedding.

        Returns:
            The fused, hydrated result with per-stage timings.

        Raises:
            InputError: for an empty query or a filter the database cannot apply.
        """
        if not query or not query.strip():
            raise InputError("query", "must not be empty")
        n = candidates or self.config.candidates
        timings: dict[str, float] = {}
        store = index.store
        t = time.perf_counter()
        allow = deny = None
        if filters is not None and not filters.empty:
            allow = store.allowed_chunk_ids(index.info.id, filters)
        else:
            deny = store.hidden_chunk_ids(index.info.id)
            if not len(deny):
                deny = None
        timings["filter"] = _ms(t)

        t = time.perf_counter()
        if allow is not None and not len(allow):
            bm25: list[Hit] = []
        else:
            bm25 = index.lexical.search(query, n, allow=allow, deny=deny)
        timings["bm25"] = _ms(t)

        t = time.perf_counter()
        vec = query_vector if query_vector is not None else self.embedder.embed_queries([query])[0]
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        dense = [] if allow is not None and not len(allow) else index.dense.search(vec, n, allow=allow, deny=deny)
        timings["dense"] = _ms(t)

        t = time.perf_counter()
        fused = reciprocal_rank_fusion(
            {"bm25": bm25, "dense": dense},
            k=self.config.rrf_k,
            weights={"bm25": self.config.bm25_weight, "dense": self.config.dense_weight},
        )
        head = fused if hydrate is None else fused[:hydrate]
        rows = store.hydrate(index.info.id, (h.chunk_id for h in head))
        out = [ScoredChunk(rows[h.chunk_id], h.score, dict(h.scores)) for h in head if h.chunk_id in rows]
        timings["fuse"] = _ms(t)
        return RetrievalResult(out, bm25, dense, timings)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
