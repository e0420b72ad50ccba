"""Ingestion speed: ``rag ingest --json`` on the first documents of the dataset, in a subprocess.

``eval`` may not import ``indexer``: ingestion is measured through the ``rag`` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.bench.common import REPO, JsonDict, cli_env

INGEST_TIMEOUT_S = 3600


@dataclass(frozen=True)
class IngestResult:
    """What ``rag ingest --json`` reported, or why it did not run (``skipped``) or failed (``error``).

    Attributes:
        documents: documents ingested.
        chunks: chunks added.
        seconds: the command's own ingestion time (without interpreter and model start-up).
        wall_s_with_startup: wall time of the subprocess.
        chunks_per_s: chunks per second of ``seconds``.
        stages_s: seconds per ingestion stage (load, chunk, embed, db, dense, lexical).
        stage_share: each stage's share of ``seconds``.
        overhead_outside_embedding: share of ``seconds`` not spent embedding.
    """

    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    wall_s_with_startup: float = 0.0
    chunks_per_s: float | None = None
    stages_s: dict[str, float] = field(default_factory=dict)
    stage_share: dict[str, float] = field(default_factory=dict)
    overhead_outside_embedding: float | None = None
    error: str | None = None
    skipped: str | None = None

    def to_json(self) -> JsonDict:
        """The ``ingestion`` object of ``bench.json``."""
        if self.skipped is not None:
            return {"skipped": self.skipped}
        if self.error is not None:
            return {"error": self.error}
        return {"documents": self.documents, "chunks": self.chunks, "seconds": self.seconds,
                "wall_s_with_startup": self.wall_s_with_startup, "chunks_per_s": self.chunks_per_s,
                "stages_s": dict(self.stages_s), "stage_share": dict(self.stage_share),
                "overhead_outside_embedding": self.overhead_outside_embedding}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IngestResult:
        """The inverse of :meth:`to_json`."""
        if "skipped" in data or "error" in data:
            return cls(error=data.get("error"), skipped=data.get("skipped"))
        return cls(data["documents"], data["chunks"], data["seconds"], data["wall_s_with_startup"],
                   data["chunks_per_s"], dict(data["stages_s"]), dict(data["stage_share"]),
                   data["overhead_outside_embedding"])


def _first_documents(dataset: Path, n_docs: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= n_docs:
                break
            dst.write(line)
    return path


def measure_ingest(dataset: Path | None, n_docs: int, work: Path, models: Path | None = None) -> IngestResult:
    """``rag ingest --json`` on the first ``n_docs`` documents: chunks/s and time per stage (``models``: see ``cli_env``)."""
    if dataset is None:
        return IngestResult(skipped="no dataset")
    corpus = _first_documents(dataset, n_docs, work / "ingest" / "corpus.jsonl")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(corpus), "--json", "-c", "bench-ingest", "--create"],
                          cwd=REPO, env=cli_env(work / "ingest" / "data", models), capture_output=True, text=True,
                          timeout=INGEST_TIMEOUT_S)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return IngestResult(error=proc.stderr[-800:])
    report = json.loads(proc.stdout)
    stages = report["timings_s"]
    seconds = float(report["seconds"]) or sum(stages.values())
    chunks = int(report["chunks_added"])
    outside = seconds - float(stages.get("embed", 0.0))
    return IngestResult(
        documents=n_docs, chunks=chunks, seconds=seconds, wall_s_with_startup=round(wall, 2),
        chunks_per_s=round(chunks / seconds, 2) if seconds else None, stages_s=stages,
        stage_share={k: round(v / seconds, 4) for k, v in stages.items()} if seconds else {},
        overhead_outside_embedding=round(outside / seconds, 4) if seconds else None,
    )
