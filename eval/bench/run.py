"""``rag bench``: build each level, measure it and its peers, then the API, ingestion and backends; write the report."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from eval.bench.api_load import ApiLoadResult, measure_api
from eval.bench.verify import measure_verify
from eval.bench.backends import measure_backends, measure_gpu
from eval.bench.build import build_collection
from eval.bench.common import (
    API_CLIENTS,
    CANDIDATES,
    NOISE_SIGMA,
    TOP_K,
    cycle,
    size_label,
)
from eval.bench.corpus import BaseCorpus, QuerySet, load_base, make_level
from eval.bench.ingest import measure_ingest
from eval.bench.levels import SizeResult, measure_index_only_level, measure_level
from eval.bench.plan import BenchPlan, machine_info
from eval.bench.report import write_bench_report
from eval.bench.results import BenchConfig, BenchReport, CorpusInfo, RerankerInfo
from eval.bench.scale import measure_scale, scale_ratios
from eval.bench.targets import ratio_lines, ratios, targets
from rag.config import Settings
from rag.embedding import Embedder
from rag.pipeline import ComponentStatus
from rag.rerank.cross_encoder import Reranker
from rag.runtime import load_reranker, open_runtime
from rag.threads import QUERY_THREADS

Say = Callable[[str], None]


def _corpus_info(settings: Settings, plan: BenchPlan, base: BaseCorpus, embedder: Embedder) -> CorpusInfo:
    return CorpusInfo(
        dataset=plan.dataset.name if plan.dataset is not None else "synthetic", base_documents=len(base.docs),
        base_chunks=base.n_chunks, queries=len(base.queries), embedded_this_run=base.embedded,
        embed_seconds_this_run=round(base.embed_seconds, 2),
        replication=f"replica r>0: ~10% of words dropped, 3 neighbour swaps; vector + N(0, {NOISE_SIGMA}^2) per dim, renormalised",
        embedding_model=embedder.model_id, chunk_size=settings.chunking.size,
    )


def _reranker_info(settings: Settings, reranker: Reranker | None, status: ComponentStatus) -> RerankerInfo:
    return RerankerInfo(status.enabled, status.model, status.detail[:300], settings.reranker.backend,
                        reranker.max_length if reranker else settings.reranker.max_length,
                        reranker.weight if reranker else None)


def _query_set(plan: BenchPlan, base: BaseCorpus, dim: int) -> QuerySet:
    texts = cycle(list(base.queries.values()), plan.queries)
    vectors = np.stack(cycle(list(base.query_vectors), plan.queries)) if base.queries else np.zeros((0, dim), np.float32)
    return QuerySet(texts, vectors)


def _database_levels(settings: Settings, plan: BenchPlan, base: BaseCorpus, embedder: Embedder,
                     reranker: tuple[Reranker | None, ComponentStatus], queries: QuerySet, work: Path,
                     say: Say) -> tuple[dict[str, SizeResult], ApiLoadResult]:
    """Each planned size as a real collection in its own data dir; the API is load-tested on the last one."""
    sizes: dict[str, SizeResult] = {}
    api = ApiLoadResult(skipped=True)
    for i, target in enumerate(plan.sizes):
        level = make_level(base, max(target, base.n_chunks) if i == 0 else target)
        label = size_label(target)
        say(f"{label}: {level.n} chunks — building the collection")
        data_dir = work / f"data-{label}"
        s_level = settings.model_copy(update={"data_dir": data_dir, "database_url": ""})
        name = f"bench-{label}"
        with open_runtime(s_level, generator=False, reranker=reranker, embedder=embedder, log=say) as runtime:
            build_s = build_collection(s_level, runtime.store, name, level, embedder.model_id, embedder.dim)
            sizes[label] = measure_level(plan, base, level, runtime.pipeline, name, queries, build_s, first=(i == 0),
                                         label=label, say=say)
        if plan.api_seconds and i == len(plan.sizes) - 1:
            say(f"{label}: API throughput with {API_CLIENTS} clients")
            api = measure_api(data_dir, name, list(base.queries.values()), plan.api_seconds, say, size=label,
                              chunks=level.n, models=settings.embedding.cache_dir)
        del level
    return sizes, api


def _work_parent(settings: Settings) -> str | None:
    parent = settings.data_dir / "bench-work"
    with contextlib.suppress(OSError):
        parent.mkdir(parents=True, exist_ok=True)
        return str(parent)
    return None


def _print_summary(console: Console, report: BenchReport, out_dir: Path) -> None:
    for line in ratio_lines(report.ratios):
        console.print(line, highlight=False)
    for t in report.targets:
        mark = "met" if t.met else "NOT met" if t.met is False else "not measured"
        console.print(f"  target {t.name}: {t.value} (target {t.target}) — {mark}", highlight=False)
    console.print(f"report: {out_dir}", highlight=False)


def run_bench(
    settings: Settings,
    out_dir: Path,
    *,
    quick: bool = False,
    console: Console | None = None,
    plan: BenchPlan | None = None,
    embedder: Embedder | None = None,
) -> BenchReport:
    """Run the benchmarks and write ``bench.json``, ``bench.md`` and the plots to ``out_dir``.

    Args:
        settings: service settings (embedding model, chunking, dense and retrieval settings).
        out_dir: output directory (created).
        quick: the quick plan (10k chunks and the peers, no 1M); ignored when ``plan`` is given.
        console: where progress and the ratio summary go (None: silent).
        plan: what to measure (default: :meth:`BenchPlan.full` or :meth:`BenchPlan.quick`).
        embedder: the embedder to use (default: the configured one, warmed up here).

    Returns:
        The report; ``report.to_json()`` is what ``bench.json`` holds.
    """
    mode = "custom" if plan is not None else "quick" if quick else "full"
    plan = plan or (BenchPlan.quick() if quick else BenchPlan.full())
    out_dir = Path(out_dir)
    say: Say = (lambda m: console.print(f"[bold]bench[/] {m}", highlight=False)) if console else (lambda m: None)
    t_run = time.perf_counter()
    machine, started = machine_info(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    searcher = embedder  # a caller's embedder serves both; otherwise queries get rag serve's one thread per call
    embedder = (embedder or Embedder(settings.embedding)).warm_up()
    if searcher is None:
        threads = settings.embedding.threads or QUERY_THREADS
        searcher = Embedder(settings.embedding.model_copy(update={"threads": threads})).warm_up(queries=True)
    base = load_base(settings, embedder, plan, say)
    config = BenchConfig(CANDIDATES, TOP_K, settings.retrieval.rrf_k, settings.dense.model_dump(),
                         plan.large_ef_construction)
    queries = _query_set(plan, base, embedder.dim)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-", dir=_work_parent(settings)))
    reranker = load_reranker(settings)
    try:
        sizes, api = _database_levels(settings, plan, base, searcher, reranker, queries, work, say)
        for target in plan.index_only_sizes:
            label = size_label(target)
            say(f"{label}: index-only build (HNSW efConstruction={plan.large_ef_construction})")
            sizes[label] = measure_index_only_level(settings, plan, base, target, work / f"index-{label}", queries,
                                                    embedder.model_id, embedder.dim, searcher)
        ingestion = backends = None
        if plan.ingest_docs:
            say(f"ingestion of {plan.ingest_docs} documents through `rag ingest`")
            ingestion = measure_ingest(plan.dataset, plan.ingest_docs, work, settings.embedding.cache_dir)
        sample = base.bodies()[: plan.backend_sample]
        if plan.backend_sample:
            say(f"embedding backends on {len(sample)} chunks")
            backends = measure_backends(settings, embedder, sample, work)
        gpu = measure_gpu(settings, base, sample or [b.title for b in base.docs[:64]])
        verify = None
        if plan.verify_runs:
            say("verify stage on the demo's answer")
            verify = measure_verify(settings, work, say, cold_runs=plan.verify_runs)
        scale = None
        if plan.scale:
            say(f"scale: Ray ingest against local, {plan.scale_chunks} chunks in 1 and {plan.scale_shards} shards")
            scale = measure_scale(settings, base, queries, searcher, work, dataset=plan.dataset,
                                  ingest_docs=plan.scale_ingest_docs, chunks=plan.scale_chunks,
                                  shards=plan.scale_shards, n_queries=plan.scale_queries, cores=machine.cores,
                                  ingest_rounds=plan.scale_ingest_rounds, say=say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = BenchReport(mode, machine, started, _corpus_info(settings, plan, base, embedder), config,
                         _reranker_info(settings, *reranker), sizes, api, ingestion, backends, gpu,
                         round(time.perf_counter() - t_run, 1), verify, scale)
    report = replace(report, targets=targets(report), ratios=ratios(report.sizes) + scale_ratios(scale))
    write_bench_report(out_dir, report)
    if console is not None:
        _print_summary(console, report, out_dir)
    return report
