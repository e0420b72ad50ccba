"""The whole report of one run (:class:`BenchReport`) and its ``bench.json`` form.

Each measurement is a frozen dataclass with ``to_json`` (the shape ``bench.json`` has always had,
which ``docs/benchmarks`` and its readers rely on) and ``from_json`` (so a saved report can be
rendered again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from eval.bench.api_load import ApiLoadResult
from eval.bench.backends import BackendsResult, GpuResult
from eval.bench.common import JsonDict
from eval.bench.ingest import IngestResult
from eval.bench.levels import SizeResult, size_from_json
from eval.bench.plan import MachineInfo
from eval.bench.scale import ScaleResult
from eval.bench.targets import Ratio, Target, ratios_from_json, ratios_json
from eval.bench.verify import VerifyResult
from rag.errors import InputError

BENCH_KEYS: tuple[str, ...] = ("machine", "corpus", "sizes", "targets", "ratios")
"""Keys a saved report must have to be rendered."""


@dataclass(frozen=True)
class CorpusInfo:
    """The base corpus of a run and how larger sizes were made from it."""

    dataset: str
    base_documents: int
    base_chunks: int
    queries: int
    embedded_this_run: int
    embed_seconds_this_run: float
    replication: str
    embedding_model: str
    chunk_size: int

    def to_json(self) -> JsonDict:
        """The ``corpus`` object of ``bench.json``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CorpusInfo:
        """The inverse of :meth:`to_json` (missing fields are None)."""
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class BenchConfig:
    """The search settings every system was measured with."""

    candidates: int
    top_k: int
    rrf_k: int
    dense: dict[str, Any]
    large_ef_construction: int

    def to_json(self) -> JsonDict:
        """The ``config`` object of ``bench.json``."""
        return {"candidates": self.candidates, "top_k": self.top_k, "rrf_k": self.rrf_k, "dense": dict(self.dense),
                "large_ef_construction": self.large_ef_construction}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchConfig:
        """The inverse of :meth:`to_json`."""
        return cls(data.get("candidates"), data.get("top_k"), data.get("rrf_k"), dict(data.get("dense") or {}),
                   data.get("large_ef_construction"))


@dataclass(frozen=True)
class RerankerInfo:
    """The reranker the search path ran with (``enabled`` False: none, and ``detail`` says why)."""

    enabled: bool
    model: str
    detail: str
    backend: str | None
    max_length: int | None
    weight: float | None

    def to_json(self) -> JsonDict:
        """The ``reranker`` object of ``bench.json``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RerankerInfo:
        """The inverse of :meth:`to_json` (missing fields are None)."""
        return cls(bool(data.get("enabled")), data.get("model") or "", data.get("detail") or "", data.get("backend"),
                   data.get("max_length"), data.get("weight"))


@dataclass(frozen=True)
class BenchReport:
    """Everything one ``rag bench`` run measured, in ``bench.json`` order.

    Attributes:
        mode: ``full``, ``quick`` or ``custom`` (a plan given by the caller).
        machine: the machine.
        started: local start time, ISO 8601.
        corpus: the base corpus.
        config: the search settings.
        reranker: the reranker.
        sizes: size label -> that level's result, in the order measured.
        api_throughput: the API load test.
        ingestion: ingestion through ``rag ingest`` (None: not planned).
        embedding_backends: embedding backends (None: not planned).
        gpu: the GPU measurements, or why there are none.
        seconds: wall time of the run.
        verify: the verify stage on the demo's answer (None: not planned).
        scale: Ray ingestion against local and 1 shard against several (None: not planned).
        targets: the targets, each met or not.
        ratios: the speed ratios.
    """

    mode: str
    machine: MachineInfo
    started: str
    corpus: CorpusInfo
    config: BenchConfig
    reranker: RerankerInfo
    sizes: dict[str, SizeResult]
    api_throughput: ApiLoadResult
    ingestion: IngestResult | None
    embedding_backends: BackendsResult | None
    gpu: GpuResult
    seconds: float
    verify: VerifyResult | None = None
    scale: ScaleResult | None = None
    targets: tuple[Target, ...] = ()
    ratios: tuple[Ratio, ...] = field(default=())

    def to_json(self) -> JsonDict:
        """The content of ``bench.json``."""
        out: JsonDict = {"mode": self.mode, "machine": self.machine.to_json(), "started": self.started,
                         "corpus": self.corpus.to_json(), "config": self.config.to_json(),
                         "reranker": self.reranker.to_json(),
                         "sizes": {label: s.to_json() for label, s in self.sizes.items()},
                         "api_throughput": self.api_throughput.to_json()}
        if self.ingestion is not None:
            out["ingestion"] = self.ingestion.to_json()
        if self.embedding_backends is not None:
            out["embedding_backends"] = self.embedding_backends.to_json()
        if self.verify is not None:
            out["verify"] = self.verify.to_json()
        if self.scale is not None:
            out["scale"] = self.scale.to_json()
        out.update({"gpu": self.gpu.to_json(), "seconds": self.seconds,
                    "targets": [t.to_json() for t in self.targets], "ratios": ratios_json(self.ratios)})
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchReport:
        """A saved ``bench.json`` read back.

        Raises:
            InputError: a key of :data:`BENCH_KEYS` is missing.
        """
        missing = [k for k in BENCH_KEYS if k not in data]
        if missing:
            raise InputError("report", f"missing keys: {', '.join(missing)}")
        ingestion, backends = data.get("ingestion"), data.get("embedding_backends")
        return cls(
            mode=data.get("mode", ""), machine=MachineInfo.from_json(data["machine"]), started=data.get("started", ""),
            corpus=CorpusInfo.from_json(data["corpus"]), config=BenchConfig.from_json(data.get("config") or {}),
            reranker=RerankerInfo.from_json(data.get("reranker") or {}),
            sizes={label: size_from_json(s) for label, s in data["sizes"].items()},
            api_throughput=ApiLoadResult.from_json(data.get("api_throughput") or {"skipped": True}),
            ingestion=IngestResult.from_json(ingestion) if ingestion else None,
            embedding_backends=BackendsResult.from_json(backends) if backends else None,
            gpu=GpuResult.from_json(data.get("gpu") or {}), seconds=data.get("seconds"),
            verify=VerifyResult.from_json(data["verify"]) if data.get("verify") else None,
            scale=ScaleResult.from_json(data["scale"]) if data.get("scale") else None,
            targets=tuple(Target.from_json(t) for t in data["targets"]), ratios=ratios_from_json(data["ratios"]),
        )
