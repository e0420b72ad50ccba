"""Constants, the latency summary and small measuring helpers shared by every benchmark module."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from eval.metrics import percentiles

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "scifact"
CANDIDATES = 100
"""Hits per retriever before fusion, for ours and every peer."""
TOP_K = 10
NOISE_SIGMA = 0.01
HNSW_EF_SWEEP = (16, 32, 64, 128, 256)
IVF_NPROBE_SWEEP = (4, 8, 16, 32, 64)
API_CLIENTS = (1, 8, 32)
WARM_UP = 3
"""Queries run first and left out of every latency summary."""
_WORD = re.compile(r"\w+")
T = TypeVar("T")

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds, rounded to microseconds (``eval.metrics.percentiles``).

    Attributes:
        p50: median.
        p90: 90th percentile.
        p99: 99th percentile.
    """

    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> LatencyStats | None:
        """The summary of one latency per call, or None when nothing was timed."""
        if not len(values_ms):
            return None
        p = percentiles(values_ms)
        return cls(round(p["p50"], 3), round(p["p90"], 3), round(p["p99"], 3))

    def to_json(self) -> JsonDict:
        """``{"p50", "p90", "p99"}``, as in ``bench.json``."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> LatencyStats | None:
        """The inverse of :meth:`to_json`; None stays None."""
        return None if data is None else cls(data["p50"], data["p90"], data["p99"])


def p50(stats: LatencyStats | None) -> float | None:
    """The median of a latency summary, or None."""
    return None if stats is None else stats.p50


def stats_json(stats: LatencyStats | None) -> JsonDict | None:
    """``stats.to_json()``, or None."""
    return None if stats is None else stats.to_json()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Milliseconds one call of ``fn`` took, and what it returned."""
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000.0, out


def cycle(items: Sequence[T], n: int) -> list[T]:
    """``n`` items, repeating ``items`` from the start (empty when ``items`` is)."""
    return [items[i % len(items)] for i in range(n)] if items else []


def recall_at_k(found: Sequence[int], truth: Sequence[int], k: int = TOP_K) -> float:
    """``|found[:k] & truth[:k]| / |truth[:k]|``: recall against exact search."""
    truth = list(truth)[:k]
    return len(set(list(found)[:k]) & set(truth)) / max(len(truth), 1)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, the tokenisation the Python BM25 peers get."""
    return _WORD.findall(text.lower())


def rss_mb() -> float | None:
    """Resident memory of this process in MB (Linux), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def dir_bytes(path: Path) -> int:
    """Bytes of every file below ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def size_label(n: int) -> str:
    """``1M``, ``100k``, ``2k`` or ``500``: the label of a corpus size."""
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{round(n / 1000)}k" if n >= 1000 else str(n)


def cli_env(data_dir: Path, models: Path | None = None) -> dict[str, str]:
    """Environment for a ``rag`` subprocess on ``data_dir``: SQLite, no generator, quiet logs.

    ``models`` is the ONNX export cache to share (``EmbeddingConfig.cache_dir``), so the subprocess
    does not export the embedder again under its scratch data dir.
    """
    env = dict(os.environ)
    if models is not None:
        env["RAG_EMBEDDING__CACHE_DIR"] = str(Path(models).resolve())
    env.update({
        "RAG_DATA_DIR": str(data_dir),
        "RAG_DATABASE_URL": "",
        "RAG_GENERATOR__URL": "http://127.0.0.1:9/v1",  # nothing listens: no generator starts
        "RAG_LOG_LEVEL": "WARNING",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    })
    return env


def failure(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters (for the report)."""
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
