"""Embedding backends on CPU (torch, ONNX Runtime fp32 and int8) and, where one is visible, the GPU.

The ONNX models are the service's own cached exports (:mod:`rag.embedding.onnx`); each backend embeds the same
sample of chunks and is compared with torch (mean cosine) and on the adi dataset (dense nDCG@10).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from eval.bench.common import (
    CANDIDATES,
    REPO,
    JsonDict,
    LatencyStats,
    stats_json,
    timed,
)
from eval.bench.corpus import BaseCorpus, iter_replicas, read_records
from eval.datasets import load_beir
from eval.metrics import ndcg
from rag.chunking import embedding_text
from rag.config import Settings
from rag.embedding import Embedder

ADI_DATASET = REPO.parent / "shared" / "datasets" / "adi"
GPU_FLAT_VECTORS = 100_000
Encoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class BackendResult:
    """One embedding backend on the sample: throughput, agreement with torch, and adi nDCG@10 (None without adi)."""

    name: str
    chunks_per_s: float
    mean_cosine_to_torch: float
    adi_ndcg_at_10: float | None = None

    def to_json(self) -> JsonDict:
        """``{"chunks_per_s", "mean_cosine_to_torch"[, "adi_dense_ndcg@10"]}``."""
        out: JsonDict = {"chunks_per_s": self.chunks_per_s, "mean_cosine_to_torch": self.mean_cosine_to_torch}
        if self.adi_ndcg_at_10 is not None:
            out["adi_dense_ndcg@10"] = self.adi_ndcg_at_10
        return out

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> BackendResult:
        """The inverse of :meth:`to_json`."""
        return cls(name, data["chunks_per_s"], data["mean_cosine_to_torch"], data.get("adi_dense_ndcg@10"))


@dataclass(frozen=True)
class BackendsResult:
    """Every embedding backend measured, and whether ours and the ONNX export could run.

    Attributes:
        sample_chunks: chunks embedded per backend.
        rag_onnx_backend: the backend the configured embedder runs on here (``onnx`` by default).
        onnx: how the ONNX models were made, or why they were skipped.
        backends: torch first, then the ONNX models that were exported.
    """

    sample_chunks: int
    rag_onnx_backend: str
    onnx: str
    backends: tuple[BackendResult, ...]

    def to_json(self) -> JsonDict:
        """The ``embedding_backends`` object of ``bench.json``."""
        return {"sample_chunks": self.sample_chunks, "rag_onnx_backend": self.rag_onnx_backend, "onnx": self.onnx,
                **{b.name: b.to_json() for b in self.backends}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackendsResult:
        """The inverse of :meth:`to_json`."""
        backends = tuple(BackendResult.from_json(k, v) for k, v in data.items() if isinstance(v, Mapping))
        return cls(data["sample_chunks"], data["rag_onnx_backend"], data["onnx"], backends)


@dataclass(frozen=True)
class GpuResult:
    """GPU embedding and faiss-gpu search, or why none ran (``skipped``)."""

    gpu: str | None = None
    embedding_chunks_per_s: float | None = None
    faiss_flat_vectors: int | None = None
    faiss_flat_latency: LatencyStats | None = None
    skipped: str | None = None

    def to_json(self) -> JsonDict:
        """The ``gpu`` object of ``bench.json``."""
        if self.gpu is None:
            return {"skipped": self.skipped}
        out: JsonDict = {"gpu": self.gpu}
        if self.embedding_chunks_per_s is not None:
            out["embedding_chunks_per_s"] = self.embedding_chunks_per_s
        if self.faiss_flat_vectors is not None:
            out["faiss_gpu_flat_100k"] = {"vectors": self.faiss_flat_vectors, "latency_ms": stats_json(self.faiss_flat_latency)}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GpuResult:
        """The inverse of :meth:`to_json`."""
        flat = data.get("faiss_gpu_flat_100k") or {}
        return cls(data.get("gpu"), data.get("embedding_chunks_per_s"), flat.get("vectors"),
                   LatencyStats.from_json(flat.get("latency_ms")), data.get("skipped"))


def _encoders(settings: Settings) -> tuple[dict[str, Encoder], str]:
    """torch, and the service's own ONNX exports (fp32, int8) of the configured model, on CPU."""
    base = settings.embedding.model_copy(update={"device": "cpu"})
    encoders: dict[str, Encoder] = {"torch": Embedder(base.model_copy(update={"backend": "torch"})).embed_documents}
    notes = []
    for name, backend in (("onnx_fp32", "onnx"), ("onnx_int8", "onnx-int8")):
        emb = Embedder(base.model_copy(update={"backend": backend})).warm_up()
        if emb.backend != backend:  # the export failed its check or could not be made: the log says why
            notes.append(f"{backend} unavailable (fell back to {emb.backend})")
            continue
        encoders[name] = emb.embed_documents
        notes.append(f"{backend}: cosine to torch on the load check {emb.onnx_cosine}")
    return encoders, "the service's export (rag/embedding/onnx.py); " + "; ".join(notes)


def measure_backends(settings: Settings, embedder: Embedder, sample: list[str], work: Path) -> BackendsResult:
    """Embedding throughput of torch, ONNX Runtime fp32 and int8 on CPU, with their agreement and adi nDCG@10."""
    ours = embedder.warm_up().backend
    encoders, onnx = _encoders(settings)
    reference = None
    rows = []
    for name, encode in encoders.items():
        encode(sample[:8])  # warm-up
        t = time.perf_counter()
        vecs = encode(sample)
        secs = time.perf_counter() - t
        if reference is None:
            reference = vecs
        adi = _adi_ndcg(ADI_DATASET, encode, embedder) if ADI_DATASET.is_dir() else None
        rows.append(BackendResult(name, round(len(sample) / secs, 2), round(float((vecs * reference).sum(1).mean()), 4), adi))
    return BackendsResult(len(sample), ours, onnx, tuple(rows))


def _adi_ndcg(directory: Path, encode: Encoder, embedder: Embedder) -> float:
    data = load_beir(directory)
    docs = read_records(data.corpus_path)
    dvec = encode([embedding_text(d.get("title") or "", d.get("text") or "") for d in docs])
    qids = list(data.queries)
    qvec = encode([embedder.config.query_prefix + data.queries[q] for q in qids])
    sims = qvec @ dvec.T
    run = {q: {str(docs[j]["_id"]): float(sims[i, j]) for j in np.argsort(-sims[i])[:100]} for i, q in enumerate(qids)}
    return round(ndcg(data.qrels, run, k=10), 4)


def _cuda() -> tuple[bool, Any]:
    try:
        import torch
    except ImportError:
        return False, None
    return torch.cuda.is_available(), torch


def measure_gpu(settings: Settings, base: BaseCorpus, sample: list[str]) -> GpuResult:
    """faiss-gpu search and GPU embedding, when a GPU is visible; ``skipped`` otherwise."""
    cuda, torch = _cuda()
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if not cuda and not n_gpus:
        return GpuResult(skipped="no GPU visible (torch.cuda and faiss)")
    name = torch.cuda.get_device_name(0) if cuda else f"{n_gpus} FAISS GPU(s)"
    chunks_per_s = None
    if cuda:
        emb = Embedder(settings.embedding.model_copy(update={"device": "cuda"})).warm_up()
        emb.embed_documents(sample[:16])
        t = time.perf_counter()
        emb.embed_documents(sample)
        chunks_per_s = round(len(sample) / (time.perf_counter() - t), 1)
    if not n_gpus:
        return GpuResult(name, chunks_per_s)
    level_vectors = np.concatenate([rep.vectors for rep in iter_replicas(base, GPU_FLAT_VECTORS)])
    cpu = faiss.IndexFlatIP(level_vectors.shape[1])
    cpu.add(level_vectors)
    gpu = faiss.index_cpu_to_all_gpus(cpu)
    lat = [timed(lambda q=q: gpu.search(q[None, :], CANDIDATES))[0] for q in base.query_vectors]
    return GpuResult(name, chunks_per_s, len(level_vectors), LatencyStats.of(lat))
