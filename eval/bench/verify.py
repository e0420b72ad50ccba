"""The verify stage on the demo's answer: ``data/`` ingested through ``rag ingest``, the demo question's top 5
sources, and a four-claim cited answer checked by the service's verifier, cold (a fresh runtime, as the demo's
first question) and warm.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.bench.common import REPO, JsonDict, LatencyStats, cli_env, stats_json
from rag.config import Settings
from rag.embedding import Embedder
from rag.runtime import open_runtime
from rag.threads import QUERY_THREADS

DEMO_QUESTION = "How does the service keep ingestion safe when the process is killed?"
"""The question ``make demo`` asks."""

DEMO_ANSWER = (
    "Ingestion is safe even if the process is killed with `kill -9` in the middle of a run [1]. "
    "Every new document version is first written to the database with the status pending [1]. "
    "Searches only return documents whose status is active, so a half-written version is never visible [1][2]. "
    "After a crash, the next rag ingest or service start purges pending rows and restores missing index "
    "entries from the database [2]."
)
"""An answer as the demo's generator writes it: four claims citing the first two of five sources."""

COLLECTION = "guide"
TOP_K = 5
INGEST_TIMEOUT_S = 900


@dataclass(frozen=True)
class VerifyResult:
    """Verify-stage latency for the demo's answer, or why it was not measured.

    Attributes:
        claims: claims the verifier judged.
        sources: sources handed to it.
        supported: claims judged supported.
        cold: one verify per fresh runtime (empty caches), as the demo's first question.
        warm: repeated verifies of the same answer in one runtime.
        error: why nothing was measured.
    """

    claims: int = 0
    sources: int = 0
    supported: int = 0
    cold: LatencyStats | None = None
    warm: LatencyStats | None = None
    error: str | None = None

    @property
    def p50_ms(self) -> float | None:
        """The cold p50: what the demo's first question pays."""
        return self.cold.p50 if self.cold is not None else None

    def to_json(self) -> JsonDict:
        """The ``verify`` object of ``bench.json``."""
        if self.error is not None:
            return {"error": self.error}
        return {"claims": self.claims, "sources": self.sources, "supported": self.supported,
                "cold_ms": stats_json(self.cold), "warm_ms": stats_json(self.warm)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifyResult:
        """The inverse of :meth:`to_json`."""
        if "error" in data:
            return cls(error=data["error"])
        return cls(data["claims"], data["sources"], data["supported"], LatencyStats.from_json(data["cold_ms"]),
                   LatencyStats.from_json(data["warm_ms"]))


def measure_verify(settings: Settings, work: Path, say: Callable[[str], None], *,
                   cold_runs: int = 5, warm_runs: int = 10) -> VerifyResult:
    """Ingest ``data/`` into a scratch data dir, then time the verifier on :data:`DEMO_ANSWER`.

    The configured embedder is loaded here once, with ``rag serve``'s one thread per call (the collection is
    embedded by ``rag ingest`` with the same model), and shared by the fresh runtimes, so "cold" means empty
    verifier caches, not a model load.
    """
    data_dir = work / "verify"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(REPO / "data"), "-c", COLLECTION, "--create", "--json"],
        cwd=REPO, env=cli_env(data_dir, settings.embedding.cache_dir), capture_output=True, text=True,
        timeout=INGEST_TIMEOUT_S,
    )
    if proc.returncode != 0:
        return VerifyResult(error=f"rag ingest data/ failed: {proc.stderr[-500:]}")
    s = settings.model_copy(update={"data_dir": data_dir, "database_url": ""})
    # the thread policy of `rag serve`, where the demo's question is verified: one thread per embedding call
    embedder = Embedder(s.embedding.model_copy(update={"threads": s.embedding.threads or QUERY_THREADS})).warm_up()
    cold: list[float] = []
    warm: list[float] = []
    claims = supported = sources = 0
    for run in range(cold_runs):
        with open_runtime(s, generator=False, reranker=False, embedder=embedder, log=lambda m: None) as runtime:
            chunks = [r.chunk for r in runtime.pipeline.search(COLLECTION, DEMO_QUESTION, top_k=TOP_K).results]
            t = time.perf_counter()
            verification = runtime.pipeline.verifier.verify(DEMO_ANSWER, chunks)
            cold.append((time.perf_counter() - t) * 1000.0)
            if run == cold_runs - 1:
                for _ in range(warm_runs):
                    t = time.perf_counter()
                    runtime.pipeline.verifier.verify(DEMO_ANSWER, chunks)
                    warm.append((time.perf_counter() - t) * 1000.0)
        claims, sources = len(verification.claims), len(chunks)
        supported = sum(c.verdict == "supported" for c in verification.claims)
    say(f"verify: {claims} claims against {sources} sources, cold p50 {LatencyStats.of(cold).p50:.0f} ms")
    return VerifyResult(claims, sources, supported, LatencyStats.of(cold), LatencyStats.of(warm))
