"""Lexical and hybrid peers on a level's chunks, and nDCG@10 of every hybrid.

Lexical: rank-bm25 (BM25Okapi) and bm25s over the same chunk bodies. Hybrid: rank-bm25 + numpy +
our RRF, and Haystack's in-memory BM25 + embedding retrievers with its RRF joiner. Every hybrid gets
precomputed query vectors, so none of them pays for query embedding.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from eval.bench.ann import DensePeer, DensePeers, measure_dense_peers
from eval.bench.common import (
    CANDIDATES,
    TOP_K,
    JsonDict,
    LatencyStats,
    recall_at_k,
    stats_json,
    timed,
    tokens,
)
from eval.bench.corpus import BaseCorpus, Level, QuerySet
from eval.bench.plan import BenchPlan
from eval.metrics import max_pool, ndcg
from rag.pipeline import RagPipeline
from rag.retrieval.fusion import reciprocal_rank_fusion
from rag.retrieval.hybrid import HybridRetriever
from rag.types import Hit, Query

HAYSTACK_PIPELINE = "InMemoryBM25Retriever + InMemoryEmbeddingRetriever + DocumentJoiner(rrf)"


@dataclass(frozen=True)
class PeerResult:
    """One peer system on one level, or why it could not run.

    Attributes:
        latency: per-query latency (top 100).
        queries: queries timed.
        build_s: index build seconds, for peers that build one.
        pipeline: the peer's components, where it has several.
        error: why the peer did not run (then nothing else is set).
        runs: fused chunk positions per timed query (hybrid peers, for nDCG; not in the report).
    """

    latency: LatencyStats | None = None
    queries: int | None = None
    build_s: float | None = None
    pipeline: str | None = None
    error: str | None = None
    runs: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    @property
    def p50(self) -> float | None:
        """Median latency, or None."""
        return None if self.latency is None else self.latency.p50

    def to_json(self) -> JsonDict:
        """``{"error"}``, or ``build_s``, ``latency_ms``, ``queries`` and ``pipeline`` where set."""
        if self.error is not None:
            return {"error": self.error}
        out: JsonDict = {} if self.build_s is None else {"build_s": self.build_s}
        out.update({"latency_ms": stats_json(self.latency), "queries": self.queries})
        if self.pipeline is not None:
            out["pipeline"] = self.pipeline
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PeerResult | None:
        """The inverse of :meth:`to_json`; None stays None."""
        if data is None:
            return None
        return cls(LatencyStats.from_json(data.get("latency_ms")), data.get("queries"), data.get("build_s"),
                   data.get("pipeline"), data.get("error"))


def _peers_json(peers: Mapping[str, PeerResult | None]) -> JsonDict:
    return {k: p.to_json() for k, p in peers.items() if p is not None}


@dataclass(frozen=True)
class LexicalPeers:
    """rank-bm25 and bm25s on one level."""

    rank_bm25: PeerResult
    bm25s: PeerResult

    def to_json(self) -> JsonDict:
        """The ``lexical`` object of a level's peers."""
        return _peers_json({"rank_bm25": self.rank_bm25, "bm25s": self.bm25s})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LexicalPeers:
        """The inverse of :meth:`to_json`."""
        return cls(PeerResult.from_json(data["rank_bm25"]), PeerResult.from_json(data["bm25s"]))


@dataclass(frozen=True)
class HybridPeers:
    """The hybrid peers that ran on one level (None: not run)."""

    rank_bm25_numpy: PeerResult | None = None
    haystack: PeerResult | None = None

    def to_json(self) -> JsonDict:
        """The ``hybrid`` object of a level's peers."""
        return _peers_json({"rank_bm25_numpy": self.rank_bm25_numpy, "haystack": self.haystack})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HybridPeers:
        """The inverse of :meth:`to_json`."""
        return cls(PeerResult.from_json(data.get("rank_bm25_numpy")), PeerResult.from_json(data.get("haystack")))

    def ran(self) -> dict[str, PeerResult]:
        """The peers that produced rankings, by report name."""
        found = {"rank_bm25_numpy": self.rank_bm25_numpy, "haystack": self.haystack}
        return {k: p for k, p in found.items() if p is not None and p.error is None}


@dataclass(frozen=True)
class Quality:
    """nDCG@10 of each hybrid on the first level's queries, chunks max-pooled to documents.

    Attributes:
        queries: queries scored.
        ndcg_at_10: system (``ours``, ``rank_bm25_numpy``, ``haystack``) -> nDCG@10, for those that ran.
    """

    queries: int
    ndcg_at_10: dict[str, float | None]

    def to_json(self) -> JsonDict:
        """``{"queries", <system>: nDCG@10, ...}``."""
        return {"queries": self.queries, **self.ndcg_at_10}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quality:
        """The inverse of :meth:`to_json`."""
        return cls(data["queries"], {k: v for k, v in data.items() if k != "queries"})


def measure_rank_bm25(bodies: list[str], queries: list[str]) -> tuple[PeerResult, Any | None]:
    """rank-bm25's BM25Okapi: build time and top-100 latency; also returns the index (None when missing)."""
    try:
        from rank_bm25 import BM25Okapi
    except ImportError as exc:
        return PeerResult(error=str(exc)), None
    t = time.perf_counter()
    bm = BM25Okapi([tokens(b) for b in bodies])
    build = time.perf_counter() - t
    lat = []
    for q in queries:
        def run(q: str = q) -> np.ndarray:
            s = bm.get_scores(tokens(q))
            top = np.argpartition(-s, CANDIDATES)[:CANDIDATES]
            return top[np.argsort(-s[top])]
        lat.append(timed(run)[0])
    return PeerResult(LatencyStats.of(lat), len(lat), round(build, 2)), bm


def measure_bm25s(bodies: list[str], queries: list[str]) -> PeerResult:
    """bm25s (English stopwords, one thread): build time and top-100 latency."""
    try:
        import bm25s
    except ImportError as exc:
        return PeerResult(error=str(exc))
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    t = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(bodies, stopwords="en", show_progress=False), show_progress=False)
    build = time.perf_counter() - t
    lat = []
    for q in queries:
        def run(q: str = q) -> Any:
            toks = bm25s.tokenize([q], stopwords="en", show_progress=False)
            return retriever.retrieve(toks, k=min(CANDIDATES, len(bodies)), show_progress=False, n_threads=1)
        lat.append(timed(run)[0])
    return PeerResult(LatencyStats.of(lat), len(lat), round(build, 2))


def measure_lexical_peers(bodies: list[str], queries: list[str], slow_n: int) -> tuple[LexicalPeers, Any | None]:
    """rank-bm25 on the first ``slow_n`` queries and bm25s on all of them, over the same chunk bodies.

    Returns:
        The peers, and rank-bm25's index for the hybrid peer (None when rank-bm25 is missing).
    """
    rank_bm25, index = measure_rank_bm25(bodies, queries[:slow_n])
    return LexicalPeers(rank_bm25, measure_bm25s(bodies, queries)), index


def _haystack_pipeline(level: Level) -> tuple[Any, float]:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.getLogger("haystack").setLevel(logging.WARNING)  # it logs every component run at INFO
    from haystack import Document as HDoc
    from haystack import Pipeline
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import (
        InMemoryBM25Retriever,
        InMemoryEmbeddingRetriever,
    )
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    t = time.perf_counter()
    store = InMemoryDocumentStore(embedding_similarity_function="dot_product")
    store.write_documents([HDoc(id=str(i), content=b, embedding=level.vectors[i].tolist()) for i, b in enumerate(level.bodies)])
    pipe = Pipeline()
    pipe.add_component("bm25", InMemoryBM25Retriever(store, top_k=CANDIDATES))
    pipe.add_component("dense", InMemoryEmbeddingRetriever(store, top_k=CANDIDATES))
    pipe.add_component("join", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=CANDIDATES))
    pipe.connect("bm25", "join")
    pipe.connect("dense", "join")
    return pipe, time.perf_counter() - t


def _top(scores: np.ndarray) -> np.ndarray:
    top = np.argpartition(-scores, CANDIDATES)[:CANDIDATES]
    return top[np.argsort(-scores[top], kind="stable")]


def measure_rank_bm25_numpy(level: Level, queries: list[str], qvecs: np.ndarray, rank_bm25: Any) -> PeerResult:
    """rank-bm25 + numpy brute force + our RRF, as a peer hybrid."""
    lat, runs = [], []
    for q, v in zip(queries, qvecs, strict=True):
        def run(q: str = q, v: np.ndarray = v) -> tuple[int, ...]:
            s = rank_bm25.get_scores(tokens(q))
            d = level.vectors @ v
            fused = reciprocal_rank_fusion({
                "bm25": [Hit(int(i), float(s[i])) for i in _top(s)],
                "dense": [Hit(int(i), float(d[i])) for i in _top(d)],
            })
            return tuple(h.chunk_id for h in fused[:CANDIDATES])
        ms, ranking = timed(run)
        lat.append(ms)
        runs.append(ranking)
    return PeerResult(LatencyStats.of(lat), len(lat), runs=tuple(runs))


def measure_haystack(level: Level, queries: list[str], qvecs: np.ndarray, warm_up: tuple[str, np.ndarray] | None) -> PeerResult:
    """Haystack's in-memory BM25 + embedding retrievers and RRF joiner; ``warm_up`` runs first, untimed."""
    try:
        pipe, build = _haystack_pipeline(level)
    except ImportError as exc:
        return PeerResult(error=f"haystack-ai not installed: {exc}")

    def ask(q: str, v: np.ndarray) -> Any:
        return pipe.run({"bm25": {"query": q}, "dense": {"query_embedding": v.tolist()}})

    if warm_up is not None:
        ask(*warm_up)  # the first run builds Haystack's BM25 statistics
    lat, runs = [], []
    for q, v in zip(queries, qvecs, strict=True):
        ms, res = timed(lambda q=q, v=v: ask(q, v))
        lat.append(ms)
        runs.append(tuple(int(d.id) for d in res["join"]["documents"]))
    return PeerResult(LatencyStats.of(lat), len(lat), round(build, 2), HAYSTACK_PIPELINE, runs=tuple(runs))


def measure_hybrid_peers(
    level: Level, queries: list[str], qvecs: np.ndarray, slow_n: int, rank_bm25: Any | None, haystack: bool
) -> HybridPeers:
    """The same hybrid from rank-bm25 + numpy + RRF, and from Haystack, on the first ``slow_n`` queries.

    Both get precomputed query vectors. Each result keeps, per query, the fused chunk positions (top 100).
    """
    rbn = None
    if rank_bm25 is not None:
        rbn = measure_rank_bm25_numpy(level, queries[:slow_n], qvecs[:slow_n], rank_bm25)
    hay = None
    if haystack:
        warm_up = (queries[0], qvecs[0]) if len(queries) else None
        hay = measure_haystack(level, queries[:slow_n], qvecs[:slow_n], warm_up)
    return HybridPeers(rbn, hay)


def level_ndcg(level: Level, runs: Sequence[Sequence[int]], qids: Sequence[str],
               qrels: Mapping[str, Mapping[str, int]]) -> float | None:
    """nDCG@10 of rankings of chunk positions, max-pooled to base documents (top 100 documents per query).

    Returns:
        The mean over the judged queries among ``qids``, rounded to 4 places; None without any.
    """
    if not qrels or not runs:
        return None
    run = {}
    for qid, ranking in zip(qids, runs, strict=False):
        run[qid] = dict(list(max_pool((level.doc_of[c], 1.0 / (1 + r)) for r, c in enumerate(ranking)).items())[:100])
    scored = {q: qrels[q] for q in run if q in qrels}
    return round(ndcg(scored, run, k=10), 4) if scored else None


@dataclass(frozen=True)
class LevelPeers:
    """Every peer measured on one level; ``quality`` only on the first level of a corpus with qrels."""

    lexical: LexicalPeers
    dense: DensePeers
    hybrid: HybridPeers
    quality: Quality | None = None

    def to_json(self) -> JsonDict:
        """The ``peers`` object of a level."""
        out: JsonDict = {"lexical": self.lexical.to_json(), "dense": self.dense.to_json()}
        if self.quality is not None:
            out["ndcg@10"] = self.quality.to_json()
        out["hybrid"] = self.hybrid.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LevelPeers:
        """The inverse of :meth:`to_json`."""
        quality = Quality.from_json(data["ndcg@10"]) if "ndcg@10" in data else None
        return cls(LexicalPeers.from_json(data["lexical"]), DensePeers.from_json(data["dense"]),
                   HybridPeers.from_json(data["hybrid"]), quality)


def measure_quality(plan: BenchPlan, base: BaseCorpus, level: Level, retriever: HybridRetriever,
                    position: Mapping[int, int], rank_bm25: Any | None, say: Callable[[str], None]) -> Quality:
    """nDCG@10 of our hybrid and of each hybrid peer on the first ``plan.quality_queries`` queries.

    Args:
        position: chunk id -> the chunk's position in the level (the peers rank positions).
        rank_bm25: rank-bm25's index of the level, or None.
        say: where the progress line goes.
    """
    qids = list(base.queries)
    nq = plan.quality_queries or len(qids)
    texts = [base.queries[q] for q in qids[:nq]]
    vectors = base.query_vectors[:nq]
    say(f"nDCG@10 of each hybrid on {len(texts)} queries")
    ours = []
    for q, v in zip(texts, vectors, strict=True):
        res = retriever.run(Query(q, v), candidates=CANDIDATES, hydrate=CANDIDATES)
        ours.append([position[s.chunk.chunk_id] for s in res.fused])
    scores = {"ours": level_ndcg(level, ours, qids[:nq], base.qrels)}
    for key, peer in measure_hybrid_peers(level, texts, vectors, nq, rank_bm25, plan.haystack).ran().items():
        scores[key] = level_ndcg(level, peer.runs, qids[:nq], base.qrels)
    return Quality(len(texts), scores)


def level_peers(plan: BenchPlan, base: BaseCorpus, level: Level, pipeline: RagPipeline, name: str, queries: QuerySet,
                ours_dense: LatencyStats | None, *, first: bool, label: str, say: Callable[[str], None]) -> LevelPeers:
    """Lexical, dense and hybrid peers on the chunks of collection ``name``; nDCG@10 on the first level.

    Args:
        ours_dense: our dense stage's latency on this level, reported beside the dense peers.
        first: whether this is the first level (the only one scored for quality).
    """
    say(f"{label}: lexical peers (rank-bm25, bm25s)")
    lexical, rank_bm25 = measure_lexical_peers(level.bodies, queries.texts, plan.slow_queries)
    say(f"{label}: dense peers (flat, numpy, HNSW sweep, IVF-PQ sweep)")
    reader = pipeline.reader(name)
    ours = reader.dense
    hnsw_file = ours.directory / f"dense.{ours.generation}.faiss" if ours.kind == "hnsw" else None
    dense, truth = measure_dense_peers(level.vectors, base.query_vectors, ours.config, hnsw_file)
    # our configured dense index on the collection (chunk ids map to level order by position)
    position = {int(c): k for k, c in enumerate(ours.ids())}
    recall = [recall_at_k([position[h.chunk_id] for h in ours.search(v, TOP_K)], truth[qi].tolist())
              for qi, v in enumerate(base.query_vectors)]
    mine = DensePeer(ours_dense, round(float(np.mean(recall)), 4), round(ours.bytes_per_vector, 1), kind=ours.kind)
    dense = replace(dense, ours=mine)
    say(f"{label}: hybrid peers (rank-bm25 + numpy, Haystack) on {plan.slow_queries} queries")
    hybrid = measure_hybrid_peers(level, queries.texts, queries.vectors, plan.slow_queries, rank_bm25, plan.haystack)
    quality = None
    if first and base.qrels:
        quality = measure_quality(plan, base, level, pipeline.retriever(name), position, rank_bm25,
                                  lambda m: say(f"{label}: {m}"))
    return LevelPeers(lexical, dense, hybrid, quality)
