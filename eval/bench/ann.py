"""Dense peers on a level's vectors: exact FAISS flat and numpy (the ground truth), and the ANN sweeps.

The sweeps measure HNSW over efSearch and IVF-PQ with an exact re-check over nprobe, each as
recall@10 against exact search, single-query latency and bytes per vector.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from eval.bench.common import (
    CANDIDATES,
    HNSW_EF_SWEEP,
    IVF_NPROBE_SWEEP,
    TOP_K,
    JsonDict,
    LatencyStats,
    recall_at_k,
    stats_json,
    timed,
)
from rag.config import DenseConfig
from rag.index.dense import ivf_nlist


@dataclass(frozen=True)
class SweepPoint:
    """One ANN setting: the swept parameter's value, recall@10 against exact search, and latency."""

    value: int
    recall_at_10: float
    latency: LatencyStats | None

    def to_json(self, param: str) -> JsonDict:
        """``{param, "recall@10", "latency_ms"}``."""
        return {param: self.value, "recall@10": self.recall_at_10, "latency_ms": stats_json(self.latency)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], param: str) -> SweepPoint:
        """The inverse of :meth:`to_json`."""
        return cls(data[param], data["recall@10"], LatencyStats.from_json(data["latency_ms"]))


@dataclass(frozen=True)
class HnswSweep:
    """HNSW over :data:`HNSW_EF_SWEEP`; ``build_s`` is None when the collection's saved graph was reused."""

    m: int
    ef_construction: int
    build_s: float | None
    bytes_per_vector: float
    sweep: tuple[SweepPoint, ...]

    def to_json(self) -> JsonDict:
        """The ``hnsw`` object of a level's dense peers."""
        return {"m": self.m, "ef_construction": self.ef_construction, "build_s": self.build_s,
                "bytes_per_vector": self.bytes_per_vector, "sweep": [p.to_json("ef_search") for p in self.sweep]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HnswSweep:
        """The inverse of :meth:`to_json`."""
        return cls(data["m"], data["ef_construction"], data["build_s"], data["bytes_per_vector"],
                   tuple(SweepPoint.from_json(p, "ef_search") for p in data["sweep"]))


@dataclass(frozen=True)
class IvfPqSweep:
    """IVF-PQ with an exact re-check of ``refine_factor * k`` candidates, over :data:`IVF_NPROBE_SWEEP`."""

    nlist: int
    pq_m: int
    pq_nbits: int
    refine_factor: int
    build_s: float
    train_vectors: int
    code_bytes_per_vector: float
    bytes_per_vector_with_recheck: float
    sweep: tuple[SweepPoint, ...]
    configured_nprobe: int

    def at_configured_nprobe(self) -> SweepPoint | None:
        """The sweep point of the configured nprobe, when it was swept."""
        return next((p for p in self.sweep if p.value == self.configured_nprobe), None)

    def to_json(self) -> JsonDict:
        """The ``ivfpq`` object of a level's dense peers."""
        return {"nlist": self.nlist, "pq_m": self.pq_m, "pq_nbits": self.pq_nbits, "refine_factor": self.refine_factor,
                "build_s": self.build_s, "train_vectors": self.train_vectors,
                "code_bytes_per_vector": self.code_bytes_per_vector,
                "bytes_per_vector_with_recheck": self.bytes_per_vector_with_recheck,
                "sweep": [p.to_json("nprobe") for p in self.sweep], "configured_nprobe": self.configured_nprobe}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IvfPqSweep:
        """The inverse of :meth:`to_json`."""
        sweep = tuple(SweepPoint.from_json(p, "nprobe") for p in data["sweep"])
        return cls(data["nlist"], data["pq_m"], data["pq_nbits"], data["refine_factor"], data["build_s"],
                   data["train_vectors"], data["code_bytes_per_vector"], data["bytes_per_vector_with_recheck"],
                   sweep, data["configured_nprobe"])


@dataclass(frozen=True)
class AnnSweep:
    """Both ANN sweeps on one set of vectors."""

    hnsw: HnswSweep
    ivfpq: IvfPqSweep

    def to_json(self) -> JsonDict:
        """``{"hnsw", "ivfpq"}``."""
        return {"hnsw": self.hnsw.to_json(), "ivfpq": self.ivfpq.to_json()}


@dataclass(frozen=True)
class DensePeer:
    """A dense index searched for the top 100: exact peers, or ours (``kind`` set) for the top 10."""

    latency: LatencyStats | None
    recall_at_10: float
    bytes_per_vector: float
    kind: str | None = None

    def to_json(self) -> JsonDict:
        """``{"latency_ms", "recall@10", "bytes_per_vector"}``, led by ``kind`` for ours."""
        if self.kind is not None:
            return {"kind": self.kind, "recall@10": self.recall_at_10, "latency_ms": stats_json(self.latency),
                    "bytes_per_vector": self.bytes_per_vector}
        return {"latency_ms": stats_json(self.latency), "recall@10": self.recall_at_10,
                "bytes_per_vector": self.bytes_per_vector}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DensePeer:
        """The inverse of :meth:`to_json`."""
        return cls(LatencyStats.from_json(data.get("latency_ms")), data["recall@10"], data["bytes_per_vector"],
                   data.get("kind"))


@dataclass(frozen=True)
class DensePeers:
    """Every dense index measured on one level; ``ours`` is the collection's configured index."""

    faiss_flat: DensePeer
    numpy: DensePeer
    hnsw: HnswSweep
    ivfpq: IvfPqSweep
    ours: DensePeer | None = None

    def to_json(self) -> JsonDict:
        """The ``dense`` object of a level's peers."""
        out = {"faiss_flat": self.faiss_flat.to_json(), "numpy": self.numpy.to_json(), "hnsw": self.hnsw.to_json(),
               "ivfpq": self.ivfpq.to_json()}
        if self.ours is not None:
            out["ours"] = self.ours.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DensePeers:
        """The inverse of :meth:`to_json`."""
        ours = DensePeer.from_json(data["ours"]) if "ours" in data else None
        return cls(DensePeer.from_json(data["faiss_flat"]), DensePeer.from_json(data["numpy"]),
                   HnswSweep.from_json(data["hnsw"]), IvfPqSweep.from_json(data["ivfpq"]), ours)


def _sweep(index: Any, qvecs: np.ndarray, truth: np.ndarray, params: Any, value: int) -> SweepPoint:
    lat, rec = [], []
    for qi, q in enumerate(qvecs):
        ms, (_, labels) = timed(lambda q=q: index.search(q[None, :], TOP_K, params=params))
        lat.append(ms)
        rec.append(recall_at_k(labels[0].tolist(), truth[qi].tolist()))
    return SweepPoint(value, round(float(np.mean(rec)), 4), LatencyStats.of(lat))


def _hnsw_params(ef: int) -> Any:
    params = faiss.SearchParametersHNSW()
    params.efSearch = max(ef, TOP_K)
    return params


def _ivf_params(nprobe: int, refine_factor: int) -> Any:
    base = faiss.SearchParametersIVF()
    base.nprobe = nprobe
    params = faiss.IndexRefineSearchParameters()
    params.k_factor = float(refine_factor)
    # The refine parameters hold a pointer to the base ones: keep them alive together.
    params.base_index_params = base
    params._base = base
    return params


def hnsw_sweep(vectors: np.ndarray, qvecs: np.ndarray, truth: np.ndarray, dense_cfg: DenseConfig,
               hnsw_file: Path | None) -> HnswSweep:
    """HNSW over efSearch; reuses the collection's saved index when there is one (same build), else builds."""
    n, dim = vectors.shape
    t = time.perf_counter()
    outer = None
    if hnsw_file is not None:
        # Keep the IndexIDMap2 alive: the inner index is owned by it, and freeing it would free the graph.
        outer = faiss.read_index(str(hnsw_file))
        hnsw = faiss.downcast_index(outer.index)
        build_s = None
    else:
        hnsw = faiss.IndexHNSWFlat(dim, dense_cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = dense_cfg.hnsw_ef_construction
        hnsw.add(vectors)
        build_s = round(time.perf_counter() - t, 2)
    hnsw_bytes = len(faiss.serialize_index(hnsw)) / n
    points = [_sweep(hnsw, qvecs, truth, _hnsw_params(ef), ef) for ef in HNSW_EF_SWEEP]
    del hnsw, outer
    # efConstruction is not saved by FAISS: the report gives the configured one.
    return HnswSweep(dense_cfg.hnsw_m, dense_cfg.hnsw_ef_construction, build_s, round(hnsw_bytes, 1), tuple(points))


def ivfpq_sweep(vectors: np.ndarray, qvecs: np.ndarray, truth: np.ndarray, dense_cfg: DenseConfig) -> IvfPqSweep:
    """IVF-PQ wrapped in an exact re-check, as :class:`rag.index.dense.DenseIndex` builds it, over nprobe."""
    n, dim = vectors.shape
    nlist = ivf_nlist(dense_cfg, min(n, dense_cfg.train_sample))
    # k-means needs 39 points per list; training on more only costs time on this CPU.
    train_n = min(n, dense_cfg.train_sample, max(2**dense_cfg.pq_nbits, 39 * nlist))
    pq_m = max(m for m in range(1, dense_cfg.pq_m + 1) if dim % m == 0)
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, dense_cfg.pq_nbits, faiss.METRIC_INNER_PRODUCT)
    refine = faiss.IndexRefineFlat(ivf)
    rng = np.random.default_rng(0)
    train = vectors if n <= train_n else vectors[np.sort(rng.choice(n, train_n, replace=False))]
    refine.train(np.ascontiguousarray(train))
    refine.add(vectors)
    build_s = round(time.perf_counter() - t, 2)
    total_bytes = len(faiss.serialize_index(refine)) / n
    points = [_sweep(refine, qvecs, truth, _ivf_params(nprobe, dense_cfg.refine_factor), nprobe)
              for nprobe in IVF_NPROBE_SWEEP]
    return IvfPqSweep(nlist, pq_m, dense_cfg.pq_nbits, dense_cfg.refine_factor, build_s, len(train),
                      pq_m * dense_cfg.pq_nbits / 8, round(total_bytes, 1), tuple(points), dense_cfg.ivf_nprobe)


def ann_sweep(vectors: np.ndarray, qvecs: np.ndarray, truth: np.ndarray, dense_cfg: DenseConfig,
              hnsw_file: Path | None) -> AnnSweep:
    """HNSW (efSearch sweep) and IVF-PQ with exact recheck (nprobe sweep) on the same vectors and queries.

    Args:
        vectors: the indexed vectors, L2-normalised.
        qvecs: query vectors.
        truth: exact top-10 positions per query.
        dense_cfg: HNSW and IVF-PQ parameters.
        hnsw_file: the collection's saved HNSW index, reused instead of building one (None: build).
    """
    return AnnSweep(hnsw_sweep(vectors, qvecs, truth, dense_cfg, hnsw_file), ivfpq_sweep(vectors, qvecs, truth, dense_cfg))


def measure_dense_peers(vectors: np.ndarray, qvecs: np.ndarray, dense_cfg: DenseConfig,
                        hnsw_file: Path | None) -> tuple[DensePeers, np.ndarray]:
    """Exact FAISS flat and numpy brute force, then the ANN sweeps.

    Returns:
        The peers (``ours`` not set) and the exact top-10 positions per query (the ground truth).
    """
    dim = vectors.shape[1]
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    _, truth = flat.search(qvecs, TOP_K)
    lat_flat, lat_np = [], []
    for q in qvecs:
        lat_flat.append(timed(lambda q=q: flat.search(q[None, :], CANDIDATES))[0])

        def brute(q: np.ndarray = q) -> np.ndarray:
            s = vectors @ q
            top = np.argpartition(-s, CANDIDATES)[:CANDIDATES]
            return top[np.argsort(-s[top])]

        lat_np.append(timed(brute)[0])
    sweep = ann_sweep(vectors, qvecs, truth, dense_cfg, hnsw_file)
    exact = 4.0 * dim
    peers = DensePeers(DensePeer(LatencyStats.of(lat_flat), 1.0, exact), DensePeer(LatencyStats.of(lat_np), 1.0, exact),
                       sweep.hnsw, sweep.ivfpq)
    return peers, truth
