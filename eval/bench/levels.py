"""Measuring one level: per-stage latency of the search path, the index-only hybrid, memory, and the peers.

``embed``, ``bm25``, ``dense``, ``fuse`` (filters, RRF and loading the chunk rows) and ``total``
come from :meth:`rag.pipeline.RagPipeline.search` with ``rerank=False``, the code behind
``/v1/search``; ``rerank`` is timed when a reranker loads. ``core`` is the index-only hybrid
(BM25 + dense + RRF with a precomputed query vector), the one figure measured at every size; the
reported ``bm25`` and ``dense`` are its stages, so every size reports them the same way. ``served`` is the
same index-only hybrid with the query embedded as ``/v1/search`` embeds it: on the query batcher's thread
while BM25 searches, so the two overlap on a machine with two cores or more; it is what growth to 1M is
measured on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from eval.bench.build import build_index_only
from eval.bench.common import (
    CANDIDATES,
    TOP_K,
    WARM_UP,
    JsonDict,
    LatencyStats,
    dir_bytes,
    recall_at_k,
    rss_mb,
    stats_json,
    timed,
)
from eval.bench.corpus import BaseCorpus, Level, QuerySet
from eval.bench.peers import LevelPeers, level_peers
from eval.bench.plan import BenchPlan
from rag.config import Settings
from rag.embedding import Embedder
from rag.index.dense import DenseIndex
from rag.index.lexical import LexicalIndex
from rag.pipeline import RagPipeline
from rag.retrieval.fusion import reciprocal_rank_fusion
from rag.retrieval.hybrid import HybridRetriever
from rag.threads import query_threads
from rag.types import Query

INDEX_STAGES = ("bm25", "dense", "fusion", "core", "served")
"""The fields of :class:`IndexLatency`, as ``bench.json`` names them."""

RERANK_QUERIES = 30
"""Queries the rerank stage is timed on per size (the cross-encoder is slow on CPU)."""


def _stats(data: Mapping[str, Any], key: str) -> LatencyStats | None:
    return LatencyStats.from_json(data.get(key))


@dataclass(frozen=True)
class IndexLatency:
    """The index-only hybrid, stage by stage: BM25, dense, RRF alone, all three (``core``), and all three with the
    query embedded as the search path does it (``served``; None when no embedder was given)."""

    bm25: LatencyStats | None
    dense: LatencyStats | None
    fusion: LatencyStats | None
    core: LatencyStats | None
    served: LatencyStats | None = None


@dataclass(frozen=True)
class CoreResult:
    """:func:`measure_core`'s latency, and the dense hits' chunk ids per timed query (for recall)."""

    latency: IndexLatency
    dense_ids: list[list[int]]


@dataclass(frozen=True)
class SearchLatency:
    """Stages of ``RagPipeline.search`` without rerank, and the rerank stage timed apart."""

    embed: LatencyStats | None
    bm25: LatencyStats | None
    dense: LatencyStats | None
    fuse: LatencyStats | None
    total: LatencyStats | None
    rerank: LatencyStats | None


@dataclass(frozen=True)
class IndexMemory:
    """Sizes of a level's indexes; ``database_bytes`` is None for an index-only level."""

    dense_bytes_on_disk: int
    dense_bytes_per_vector: float
    lexical_bytes_on_disk: int
    database_bytes: int | None
    process_rss_mb: float | None

    def to_json(self) -> JsonDict:
        """The ``memory`` object of a level."""
        out: JsonDict = {"dense_bytes_on_disk": self.dense_bytes_on_disk,
                         "dense_bytes_per_vector": self.dense_bytes_per_vector,
                         "lexical_bytes_on_disk": self.lexical_bytes_on_disk}
        if self.database_bytes is not None:
            out["database_bytes"] = self.database_bytes
        out["process_rss_mb"] = self.process_rss_mb
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexMemory:
        """The inverse of :meth:`to_json`."""
        return cls(data["dense_bytes_on_disk"], data["dense_bytes_per_vector"], data["lexical_bytes_on_disk"],
                   data.get("database_bytes"), data.get("process_rss_mb"))


@dataclass(frozen=True)
class LevelResult:
    """One size built with a database and both indexes, measured end to end.

    Attributes:
        chunks: chunks in the collection.
        build_s: seconds per write step (``db``, ``dense``, ``lexical``, ``persist``).
        dense_kind: the FAISS index ``auto`` chose.
        memory: index and database sizes.
        search: the ``/v1/search`` path's stages (its ``bm25`` and ``dense`` are not reported).
        index: the index-only hybrid's stages.
        hybrid_no_embed: our hybrid retrieval with a precomputed query vector, chunk rows loaded.
        peers: the peers, when the plan runs them.
    """

    MODE: ClassVar[str] = "database + indexes"

    chunks: int
    build_s: dict[str, float]
    dense_kind: str
    memory: IndexMemory
    search: SearchLatency
    index: IndexLatency
    hybrid_no_embed: LatencyStats | None
    peers: LevelPeers | None = None

    def latency(self) -> dict[str, LatencyStats | None]:
        """Stage name -> latency, in the report's order."""
        s, i = self.search, self.index
        return {"embed": s.embed, "bm25": i.bm25, "dense": i.dense, "fuse": s.fuse, "total": s.total,
                "rerank": s.rerank, "core": i.core, "served": i.served, "fusion": i.fusion,
                "hybrid_no_embed": self.hybrid_no_embed}

    def to_json(self) -> JsonDict:
        """One entry of ``sizes`` in ``bench.json``."""
        out: JsonDict = {"chunks": self.chunks, "mode": self.MODE, "build_s": dict(self.build_s),
                         "dense_kind": self.dense_kind, "memory": self.memory.to_json(),
                         "latency_ms": {k: stats_json(v) for k, v in self.latency().items()}}
        if self.peers is not None:
            out["peers"] = self.peers.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LevelResult:
        """The inverse of :meth:`to_json`."""
        lat = data["latency_ms"]
        search = SearchLatency(*(_stats(lat, k) for k in ("embed", "bm25", "dense", "fuse", "total", "rerank")))
        index = IndexLatency(*(_stats(lat, k) for k in INDEX_STAGES))
        peers = LevelPeers.from_json(data["peers"]) if "peers" in data else None
        return cls(data["chunks"], dict(data["build_s"]), data["dense_kind"], IndexMemory.from_json(data["memory"]),
                   search, index, _stats(lat, "hybrid_no_embed"), peers)


@dataclass(frozen=True)
class IndexOnlyResult:
    """One size measured on bare index files: no database, precomputed query vectors.

    Attributes:
        chunks: vectors in the FAISS index.
        build_s: seconds to build ``lexical`` and ``dense``.
        dense_kind: the FAISS index ``auto`` chose.
        hnsw_ef_construction: the efConstruction it was built with (lowered to keep the build short).
        index: the index-only hybrid's stages.
        dense_recall_at_10: recall@10 of the dense index against exact search.
        memory: index sizes.
    """

    MODE: ClassVar[str] = "index only (no database, precomputed query vectors)"

    chunks: int
    build_s: dict[str, float]
    dense_kind: str
    hnsw_ef_construction: int
    index: IndexLatency
    dense_recall_at_10: float
    memory: IndexMemory
    peers: ClassVar[None] = None

    def latency(self) -> dict[str, LatencyStats | None]:
        """Stage name -> latency, in the report's order."""
        i = self.index
        return {"bm25": i.bm25, "dense": i.dense, "fusion": i.fusion, "core": i.core, "served": i.served}

    def to_json(self) -> JsonDict:
        """One entry of ``sizes`` in ``bench.json``."""
        return {"chunks": self.chunks, "mode": self.MODE, "build_s": dict(self.build_s), "dense_kind": self.dense_kind,
                "hnsw_ef_construction": self.hnsw_ef_construction,
                "latency_ms": {k: stats_json(v) for k, v in self.latency().items()},
                "dense_recall@10": self.dense_recall_at_10, "memory": self.memory.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexOnlyResult:
        """The inverse of :meth:`to_json`."""
        lat = data["latency_ms"]
        index = IndexLatency(*(_stats(lat, k) for k in INDEX_STAGES))
        return cls(data["chunks"], dict(data["build_s"]), data["dense_kind"], data["hnsw_ef_construction"], index,
                   data["dense_recall@10"], IndexMemory.from_json(data["memory"]))


SizeResult = LevelResult | IndexOnlyResult


def size_from_json(data: Mapping[str, Any]) -> SizeResult:
    """A level of ``bench.json``, by its ``mode``."""
    return IndexOnlyResult.from_json(data) if data.get("mode") == IndexOnlyResult.MODE else LevelResult.from_json(data)


def measure_core(dense: DenseIndex, lexical: LexicalIndex, queries: list[str], qvecs: np.ndarray,
                 embedder: Embedder | None = None) -> CoreResult:
    """Index-only hybrid: BM25 + dense + RRF with precomputed query vectors (the first queries warm up).

    With ``embedder``, a second pass times ``served``: the query's vector is asked of
    :meth:`~rag.embedding.Embedder.embed_query_later` first, BM25 searches meanwhile, then dense waits for it,
    as :class:`~rag.retrieval.hybrid.HybridRetriever` runs a search.
    """
    lat: dict[str, list[float]] = {stage: [] for stage in INDEX_STAGES}
    dense_ids: list[list[int]] = []
    for i, (q, v) in enumerate(zip(queries, qvecs, strict=True)):
        t0 = time.perf_counter()
        b_ms, bm25 = timed(lambda q=q: lexical.search(q, CANDIDATES))
        d_ms, dhits = timed(lambda v=v: dense.search(v, CANDIDATES))
        f_ms, _ = timed(lambda b=bm25, d=dhits: reciprocal_rank_fusion({"bm25": b, "dense": d}))
        total = (time.perf_counter() - t0) * 1000.0
        if i < WARM_UP:
            continue
        for stage, ms in (("bm25", b_ms), ("dense", d_ms), ("fusion", f_ms), ("core", total)):
            lat[stage].append(ms)
        dense_ids.append([h.chunk_id for h in dhits])
    if embedder is not None:
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            vector = embedder.embed_query_later(q)
            bm25 = lexical.search(q, CANDIDATES)
            dhits = dense.search(vector.result(), CANDIDATES)
            reciprocal_rank_fusion({"bm25": bm25, "dense": dhits})
            if i >= WARM_UP:
                lat["served"].append((time.perf_counter() - t0) * 1000.0)
    latency = IndexLatency(*(LatencyStats.of(lat[k]) for k in INDEX_STAGES))
    return CoreResult(latency, dense_ids)


def measure_pipeline(pipeline: RagPipeline, name: str, queries: list[str], rerank_queries: int) -> SearchLatency:
    """Per-stage latency of ``RagPipeline.search`` (the code behind ``/v1/search``), rerank off; rerank timed apart."""
    stages = ("embed", "bm25", "dense", "fuse", "total")
    lat: dict[str, list[float]] = {s: [] for s in stages}
    for i, q in enumerate(queries):
        timings = pipeline.search(name, q, top_k=TOP_K, rerank=False).timings
        if i >= WARM_UP:
            for s in stages:
                lat[s].append(getattr(timings, s))
    rerank: list[float] = []
    if pipeline.reranker is not None:
        for q in queries[:rerank_queries]:
            rerank.append(pipeline.search(name, q, top_k=TOP_K, rerank=True).timings.rerank)
    return SearchLatency(*(LatencyStats.of(lat[s]) for s in stages), LatencyStats.of(rerank))


def measure_no_embed(retriever: HybridRetriever, queries: QuerySet) -> LatencyStats | None:
    """Our hybrid retrieval with precomputed query vectors, the top 10 rows loaded: the like-for-like peer figure."""
    ms = [timed(lambda q=q, v=v: retriever.run(Query(q, v), candidates=CANDIDATES, hydrate=TOP_K))[0]
          for q, v in zip(queries.texts, queries.vectors, strict=True)]
    return LatencyStats.of(ms[WARM_UP:])


def measure_level(plan: BenchPlan, base: BaseCorpus, level: Level, pipeline: RagPipeline, name: str,
                  queries: QuerySet, build_s: dict[str, float], *, first: bool, label: str,
                  say: Callable[[str], None]) -> LevelResult:
    """Memory, per-stage latency and (when planned) the peers of a level written to collection ``name``."""
    reader = pipeline.reader(name)
    memory = IndexMemory(reader.dense.bytes_on_disk, round(reader.dense.bytes_per_vector, 1),
                         dir_bytes(reader.directory / "lexical"),
                         dir_bytes(pipeline.settings.data_dir) - dir_bytes(reader.directory), rss_mb())
    say(f"{label}: per-stage latency over {len(queries.texts)} queries")
    # Queries run as under `rag serve`: one torch and one FAISS thread each (rag.threads);
    # peers are measured under the same setting. Index builds keep every core.
    with query_threads():
        search = measure_pipeline(pipeline, name, queries.texts, RERANK_QUERIES)
        core = measure_core(reader.dense, reader.lexical, queries.texts, queries.vectors, pipeline.embedder)
        no_embed = measure_no_embed(pipeline.retriever(name), queries)
        peers = None
        if plan.peers:
            peers = level_peers(plan, base, level, pipeline, name, queries, core.latency.dense, first=first,
                                say=say, label=label)
    return LevelResult(level.n, build_s, reader.dense.kind, memory, search, core.latency, no_embed, peers)


def measure_index_only_level(settings: Settings, plan: BenchPlan, base: BaseCorpus, target: int, directory: Path,
                             queries: QuerySet, model_id: str, dim: int,
                             embedder: Embedder | None = None) -> IndexOnlyResult:
    """Build bare indexes of at least ``target`` chunks in ``directory`` and time the index-only hybrid on them
    (``served`` too, with the query embedding of ``embedder``)."""
    dense_cfg = settings.dense.model_copy(update={"hnsw_ef_construction": plan.large_ef_construction})
    built = build_index_only(directory, settings, dense_cfg, base, target, model_id, dim)
    with query_threads():
        core = measure_core(built.dense, built.lexical, queries.texts, queries.vectors, embedder)
    flat = faiss.IndexFlatIP(dim)
    flat.add(built.vectors)
    _, truth = flat.search(queries.vectors[WARM_UP:], TOP_K)
    del flat
    recall = float(np.mean([recall_at_k(f, t) for f, t in zip(core.dense_ids, truth.tolist(), strict=True)]))
    dense = built.dense
    memory = IndexMemory(dense.bytes_on_disk, round(dense.bytes_per_vector, 1), dir_bytes(directory / "lexical"),
                         None, rss_mb())
    return IndexOnlyResult(int(dense.ntotal), built.build_s, dense.kind, dense_cfg.hnsw_ef_construction, core.latency,
                           round(recall, 4), memory)
