"""Speed and memory benchmarks, with peers measured side by side in the same run.

``rag bench`` builds collections of increasing size, times every query stage, and
runs the peers (rank-bm25, bm25s, raw FAISS indexes, numpy, Haystack) on the very
same chunks, vectors and queries in the same process, one after another. These
machines are shared and noisy, so the **ratios** between systems measured in one run
are the figures to compare; absolute times are context.

Corpus (:mod:`eval.bench.corpus`). The smallest level is the whole SciFact corpus, chunked by
the real chunker (10,588 chunks with the default settings) and embedded by the real model;
vectors are cached under ``<data_dir>/bench-cache`` keyed by the chunk text, so the corpus is
embedded once per model. Larger levels replicate it: replica ``r > 0`` of a document has its
words perturbed (about 10 % dropped, a few neighbours swapped) and its vectors are the
original's plus Gaussian noise (sigma 0.01 per dimension), then re-normalised. The 1M level is
index-only (tantivy + FAISS, no database): the hybrid is timed without query embedding and
without loading chunk rows.

Stages (:mod:`eval.bench.levels`). ``embed``, ``bm25``, ``dense``, ``fuse`` (RRF plus loading
the chunk rows) and ``total`` come from :meth:`rag.pipeline.RagPipeline.search` with
``rerank=False``, the code behind ``/v1/search``; ``rerank`` is timed when a reranker loads.
``core`` is the index-only hybrid (BM25 + dense + RRF with a precomputed query vector), the one
figure measured at every size.

Each measurement is a frozen dataclass (:mod:`eval.bench.results` gathers them in
:class:`BenchReport`); ``BenchReport.to_json()`` is the content of ``bench.json``.

``eval`` may not import ``indexer`` or ``api``: ingestion and the HTTP API are
measured through the ``rag`` command in subprocesses.
"""

from __future__ import annotations

from eval.bench.corpus import (
    BaseCorpus,
    BaseDoc,
    Level,
    Replica,
    iter_replicas,
    make_level,
)
from eval.bench.plan import BenchPlan, MachineInfo, machine_info
from eval.bench.report import markdown, write_bench_report
from eval.bench.results import BenchReport
from eval.bench.run import run_bench
from eval.bench.targets import Ratio, Target

__all__ = [
    "BaseCorpus",
    "BaseDoc",
    "BenchPlan",
    "BenchReport",
    "Level",
    "MachineInfo",
    "Ratio",
    "Replica",
    "Target",
    "iter_replicas",
    "machine_info",
    "make_level",
    "markdown",
    "run_bench",
    "write_bench_report",
]
