"""What a benchmark run measures (:class:`BenchPlan`) and the machine it runs on (:class:`MachineInfo`)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from eval.bench.common import DEFAULT_DATASET, JsonDict
from rag.config import cpu_count

VERSIONED_PACKAGES = ("faiss-cpu", "faiss-gpu-cu12", "tantivy", "torch", "sentence-transformers", "numpy", "rank-bm25",
                      "bm25s", "haystack-ai", "onnxruntime")


@dataclass(frozen=True)
class BenchPlan:
    """What one benchmark run measures.

    Attributes:
        sizes: corpus sizes (chunks) built with a database and measured end to end.
            A size below the base corpus is raised to the whole base corpus.
        index_only_sizes: sizes measured index-only (tantivy + FAISS, no database).
        queries: latency queries per size (cycled when the dataset has fewer).
        slow_queries: queries for the slow peers (rank-bm25, Haystack) per size.
        quality_queries: queries scored for nDCG@10 at the first size (0: all).
        dataset: BEIR directory of real text; None: a synthetic corpus.
        synthetic_docs: documents of the synthetic corpus.
        api_seconds: seconds per client count against the running API (0: skip).
        ingest_docs: documents ingested through ``rag ingest`` (0: skip).
        backend_sample: chunks embedded per embedding backend (0: skip).
        verify_runs: fresh runtimes in which the demo's answer is verified cold (0: skip).
        large_ef_construction: HNSW efConstruction for index-only sizes (build time).
        peers: run the peer systems.
        haystack: include Haystack when it is installed.
        scale: run the ``scale`` stage (:mod:`eval.bench.scale`): Ray ingestion against local, 1 shard against
            ``scale_shards``; off unless asked for (it starts a Ray cluster and builds ``scale_chunks`` twice).
        scale_chunks: chunks in the 1-shard and the sharded collection (0: no search part).
        scale_shards: shards of the sharded collection.
        scale_queries: queries timed on both.
        scale_ingest_docs: documents ingested per configuration (0: no ingest part).
        scale_ingest_rounds: interleaved rounds of the ingest configurations (their medians are reported).
    """

    sizes: tuple[int, ...] = (10_000, 100_000)
    index_only_sizes: tuple[int, ...] = (1_000_000,)
    queries: int = 300
    slow_queries: int = 12
    quality_queries: int = 150
    dataset: Path | None = DEFAULT_DATASET
    synthetic_docs: int = 0
    api_seconds: float = 8.0
    ingest_docs: int = 100
    backend_sample: int = 64
    verify_runs: int = 5
    large_ef_construction: int = 32
    peers: bool = True
    haystack: bool = True
    scale: bool = False
    scale_chunks: int = 100_000
    scale_shards: int = 4
    scale_queries: int = 200
    scale_ingest_docs: int = 400
    scale_ingest_rounds: int = 3

    @classmethod
    def full(cls) -> BenchPlan:
        """10k, 100k and 1M chunks with every peer, and the scale stage."""
        return cls(scale=True)

    @classmethod
    def quick(cls) -> BenchPlan:
        """10k chunks and the peers, no 1M, no scale stage (under 10 minutes once the corpus vectors are cached)."""
        return cls(sizes=(10_000,), index_only_sizes=(), queries=150, slow_queries=10, quality_queries=100,
                   api_seconds=4.0, ingest_docs=40, backend_sample=48, verify_runs=3)


@dataclass(frozen=True)
class MachineInfo:
    """Platform, CPU model, cores, memory and library versions of the machine a run measured.

    Attributes:
        name: one line for the report, e.g. ``AMD EPYC, 2 cores, 23.5 GB RAM, Linux x86_64``.
        platform: ``platform.platform()``.
        cpu: CPU model name.
        cores: usable cores (``rag.config.cpu_count``).
        memory_gb: total memory, or None where unknown.
        python: Python version.
        load_average_at_start: the 1, 5 and 15 minute load averages, or None.
        versions: package -> installed version, for the packages measured.
    """

    name: str
    platform: str
    cpu: str
    cores: int
    memory_gb: float | None
    python: str
    load_average_at_start: list[float] | None
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> JsonDict:
        """The ``machine`` object of ``bench.json``."""
        return {"name": self.name, "platform": self.platform, "cpu": self.cpu, "cores": self.cores,
                "memory_gb": self.memory_gb, "python": self.python,
                "load_average_at_start": self.load_average_at_start, "versions": dict(self.versions)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MachineInfo:
        """The inverse of :meth:`to_json`."""
        return cls(data.get("name", ""), data.get("platform", ""), data.get("cpu", ""), data.get("cores", 0),
                   data.get("memory_gb"), data.get("python", ""), data.get("load_average_at_start"),
                   dict(data.get("versions") or {}))


def _proc_line(path: str, prefix: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line
    return None


def machine_info() -> MachineInfo:
    """Describe this machine (``/proc`` on Linux, ``platform`` elsewhere)."""
    cpu = platform.processor() or ""
    line = _proc_line("/proc/cpuinfo", "model name")
    if line is not None:
        cpu = line.split(":", 1)[1].strip()
    mem_gb = None
    line = _proc_line("/proc/meminfo", "MemTotal")
    with contextlib.suppress(ValueError, IndexError, AttributeError):
        mem_gb = round(int(line.split()[1]) / 1024**2, 1)  # type: ignore[union-attr]
    versions = {}
    for pkg in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    load = None
    with contextlib.suppress(OSError):
        load = [round(x, 2) for x in os.getloadavg()]
    return MachineInfo(
        name=f"{cpu}, {cpu_count()} cores, {mem_gb} GB RAM, {platform.system()} {platform.machine()}",
        platform=platform.platform(), cpu=cpu, cores=cpu_count(), memory_gb=mem_gb,
        python=platform.python_version(), load_average_at_start=load, versions=versions,
    )
