"""Run retrieval and answer evaluations end to end over a BEIR-layout dataset.

The corpus goes through the real ingestion pipeline, but ``eval`` may not import
``indexer``: the caller (the CLI, the composition root) passes an ``ingest``
callable that runs it. Re-running is cheap, since unchanged documents are
skipped by their SHA-256.

Retrieval is scored per document: chunk hits are pooled by keeping each
document's best chunk (max pooling), then the top 100 documents are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eval.datasets import BeirDataset, load_beir
from eval.metrics import (
    DEFAULT_KS,
    coverage,
    evaluate_run,
    exact_match,
    max_pool,
    percentiles,
    token_f1,
    write_trec_run,
)
from eval.report import write_answer_report, write_retrieval_report
from rag.config import Settings
from rag.errors import GeneratorUnavailableError, InputError
from rag.generation.client import Generator
from rag.pipeline import RagPipeline
from rag.runtime import open_runtime
from rag.threads import for_queries
from rag.types import Answer, ScoredChunk
from rag.verify.claims import strip_citations
from rag.verify.spans import new_information as short_answer

IngestFn = Callable[[Settings, Path, str], dict[str, Any]]
"""Ingests one corpus file into a collection (created when missing) and returns the ingest summary."""

DOC_DEPTH = 100
"""Documents kept per query after pooling; recall@100 and map@100 are measured on these."""

HARD_NEGATIVES_PER_QUERY = 8
DEFAULT_COVERAGE_N = 20
"""Candidate depth for coverage when no reranker is loaded (the CPU default of ``RerankerConfig.top_n``)."""

STAGES = ("bm25", "dense", "hybrid", "cross-encoder", "rerank")


@dataclass
class _StageRuns:
    """Per stage: the document run, the top-N candidate documents and latencies."""

    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=lambda: {s: {} for s in STAGES})
    candidates: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {s: {} for s in STAGES})
    latency: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})


def _quiet(_: str) -> None:
    """Start-up lines are not part of an evaluation's output."""


def _prepare(
    settings: Settings, dataset: BeirDataset, collection: str, ingest: IngestFn | None, console: Console | None
) -> dict[str, Any] | None:
    """Ingest the corpus when an ingest callable is given; otherwise the collection must exist."""
    if ingest is None:
        return None
    if console is not None:
        console.print(f"ingesting {dataset.corpus_path} into [bold]{collection}[/] (unchanged documents are reused)")
    summary = dict(ingest(settings, dataset.corpus_path, collection))
    if summary.get("failures"):
        summary["failures"] = summary["failures"][:20]
    return summary


def _progress(console: Console | None, label: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )


def _limited(queries: Mapping[str, str], limit: int) -> dict[str, str]:
    if limit < 0:
        raise InputError("limit", f"must be >= 0, got {limit}")
    items = list(queries.items())
    return dict(items[:limit] if limit else items)


# retrieval ---------------------------------------------------------------------------------------


def run_retrieval_eval(
    settings: Settings,
    dataset: Path,
    *,
    ingest: IngestFn | None = None,
    collection: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    split: str = "test",
    out_dir: Path | None = None,
    hard_negatives: Path | None = None,
    limit: int = 0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Score bm25, dense, hybrid and (when a reranker loads) rerank rankings on a BEIR dataset.

    Each query runs one hybrid retrieval with ``max(100, retrieval.candidates)``
    candidates per retriever; the raw BM25 and dense hit lists and the fused
    list of that one call give the first three stages. The rerank stage is the
    reranker's order over the fused top ``reranker.top_n`` chunks followed by the
    rest of the fused list in fused order, so its recall@100 is comparable with
    hybrid's. Chunks become documents by max pooling; the top 100 are scored.

    Coverage is the share of queries with a relevant document among the
    documents of a stage's top N chunks, N being the reranker's candidate count
    (``reranker.top_n``, or 20 without a reranker): the recall ceiling of a
    reranker fed by that stage. Latency per stage is the time of the pipeline
    that produces that stage's ranking: bm25 search; query embedding plus dense
    search; both plus fusion and loading chunk rows (hybrid); hybrid plus the
    cross-encoder (rerank).

    Args:
        settings: service settings (data dir, models, retrieval settings).
        dataset: BEIR directory.
        ingest: runs the ingestion pipeline on the corpus; None uses the
            collection as it is (it must exist).
        collection: collection name (default ``eval-<dataset name>``).
        ks: cutoffs of the recall curves.
        split: qrels split.
        out_dir: output directory (default ``out/eval/<name>-retrieval``).
        hard_negatives: when set, write mined hard negatives there (JSONL).
        limit: evaluate only the first N queries (0: all).
        console: where the progress bar goes (None: no progress bar).

    Returns:
        The report written to ``report.json`` plus ``recall_curves`` and ``out_dir``.

    Raises:
        InputError: bad ``limit`` or cutoffs.
        NotFoundError: no ``ingest`` was given and the collection does not exist.
    """
    data = load_beir(Path(dataset), split)
    name = collection or f"eval-{data.name}"
    out = Path(out_dir) if out_dir is not None else Path("out") / "eval" / f"{data.name}-retrieval"
    queries = _limited(data.queries, limit)
    qrels = {qid: data.qrels[qid] for qid in queries}
    ingest_summary = _prepare(settings, data, name, ingest, console)

    stage = _StageRuns()
    mined: list[dict[str, Any]] = []
    # Query latency is reported, so queries run with the serving thread policy (rag.threads).
    with open_runtime(for_queries(settings), generator=False, log=_quiet) as runtime:
        pipeline = runtime.pipeline
        retriever = pipeline.retriever(name)
        reader = retriever.collection
        reranker = pipeline.reranker
        depth = max(DOC_DEPTH, settings.retrieval.candidates)
        cover_n = reranker.top_n if reranker is not None else DEFAULT_COVERAGE_N
        with _progress(console, f"retrieval {data.name}") as bar:
            task = bar.add_task("queries", total=len(queries))
            for qid, text in queries.items():
                result = retriever.run(text, candidates=depth)
                t = result.timings
                docs = _external_ids(pipeline, reader.info.id, result.fused, [*result.bm25, *result.dense])
                lists: dict[str, list[tuple[int, float]]] = {
                    "bm25": [(h.chunk_id, h.score) for h in result.bm25],
                    "dense": [(h.chunk_id, h.score) for h in result.dense],
                    "hybrid": [(s.chunk.chunk_id, s.score) for s in result.fused],
                }
                hybrid_ms = t.retrieval
                stage.latency["bm25"].append(t.bm25)
                stage.latency["dense"].append(t.embed + t.dense)
                stage.latency["hybrid"].append(hybrid_ms)
                final = result.fused
                if reranker is not None:
                    rerank_ms, final = _rerank(reranker, text, result.fused)
                    # Position scores: the reranked head and the fused tail are on different scales.
                    lists["rerank"] = [(s.chunk.chunk_id, float(len(final) - i)) for i, s in enumerate(final)]
                    stage.latency["rerank"].append(hybrid_ms + rerank_ms)
                    if reranker.weight < 1.0:
                        # The cross-encoder's own order, to show what blending with retrieval adds.
                        head = sorted(final[:cover_n], key=lambda s: (-s.scores.rerank, s.chunk.chunk_id))
                        alone = [*head, *final[cover_n:]]
                        lists["cross-encoder"] = [(s.chunk.chunk_id, float(len(alone) - i)) for i, s in enumerate(alone)]
                        stage.latency["cross-encoder"].append(hybrid_ms + rerank_ms)
                for key, hits in lists.items():
                    pooled = max_pool((docs[cid], score) for cid, score in hits if cid in docs)
                    stage.runs[key][qid] = dict(list(pooled.items())[:DOC_DEPTH])
                    stage.candidates[key][qid] = list(dict.fromkeys(docs[cid] for cid, _ in hits[:cover_n] if cid in docs))
                if hard_negatives is not None:
                    mined.append(_hard_negatives(qid, text, data.qrels[qid], final))
                bar.advance(task)
        config = {
            "embedding_model": pipeline.embedder.model_id,
            "reranker_model": pipeline.reranker_status.model if reranker is not None else None,
            "reranker_weight": reranker.weight if reranker is not None else None,
            "reranker_lexical_share": reranker.lexical_share if reranker is not None else None,
            "reranker_max_length": reranker.max_length if reranker is not None else None,
            "dense_index": reader.dense.kind,
            "rrf_k": settings.retrieval.rrf_k,
            "candidates": depth,
            "chunk_size": settings.chunking.size,
            "chunk_overlap": settings.chunking.overlap,
            "pooling": "max over chunks",
            "coverage_n": cover_n,
            "coverage_unit": "documents of each stage's top N chunks",
            "collection": name,
        }

    active = [s for s in STAGES if stage.runs[s]]
    stages: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[int, float]] = {}
    out.mkdir(parents=True, exist_ok=True)
    for key in active:
        metrics = evaluate_run(qrels, stage.runs[key], ks)
        stages[key] = {
            **{m: metrics[m] for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")},
            "coverage": coverage(qrels, stage.candidates[key]),
        }
        curves[key] = {k: metrics[f"recall@{k}"] for k in sorted({*ks})}
        write_trec_run(out / f"run.{key}.trec", stage.runs[key], f"rag-{key}")
    report: dict[str, Any] = {
        "dataset": data.name,
        "split": split,
        "queries": len(queries),
        "stages": stages,
        "latency_ms": {key: percentiles(stage.latency[key]) for key in active},
        "config": config,
        "pooling": (
            "max over chunks: a document scores as its best chunk; top 100 documents per query. "
            f"rerank = the reranker's order over the fused top {cover_n} chunks ({_rerank_order(reranker)}), "
            "then the rest of the fused list"
            + ("; cross-encoder = its score alone over the same chunks." if "cross-encoder" in active else ".")
            if "rerank" in active else
            "max over chunks: a document scores as its best chunk; top 100 documents per query."
        ),
    }
    if ingest_summary is not None:
        report["ingest"] = ingest_summary
    write_retrieval_report(out, report, curves)
    if hard_negatives is not None:
        _write_jsonl(Path(hard_negatives), mined)
    return {**report, "recall_curves": curves, "out_dir": out}


def _rerank_order(reranker: Any) -> str:
    """How the reranker orders its candidates, for the report."""
    weight, share = reranker.weight, reranker.lexical_share
    if weight >= 1.0:
        return "cross-encoder score"
    return (
        f"{weight:g} x cross-encoder + {1 - weight:g} x ({share:g} x BM25 + {1 - share:g} x dense), "
        "each score min-max scaled over the candidates"
    )


def _external_ids(
    pipeline: RagPipeline, collection_id: int, fused: Sequence[ScoredChunk], raw: Sequence[Any]
) -> dict[int, str]:
    """Chunk id -> document external id; raw hits missing from the fused list are hydrated."""
    docs = {s.chunk.chunk_id: s.chunk.external_id for s in fused}
    missing = {h.chunk_id for h in raw if h.chunk_id not in docs}
    if missing:
        docs.update({cid: c.external_id for cid, c in pipeline.store.hydrate(collection_id, missing).items()})
    return docs


def _rerank(reranker: Any, query: str, fused: list[ScoredChunk]) -> tuple[float, list[ScoredChunk]]:
    import time

    n = reranker.top_n
    t0 = time.perf_counter()
    head = reranker.rerank(query, fused[:n])
    return (time.perf_counter() - t0) * 1000.0, [*head, *fused[n:]]


def _hard_negatives(qid: str, query: str, rels: Mapping[str, int], ranking: Sequence[ScoredChunk]) -> dict[str, Any]:
    positives = sorted(doc for doc, grade in rels.items() if grade > 0)
    negatives = []
    for rank, scored in enumerate(ranking, start=1):
        if scored.chunk.external_id in positives:
            continue
        negatives.append(
            {"doc_id": scored.chunk.external_id, "chunk_id": scored.chunk.chunk_id, "text": scored.chunk.text, "rank": rank}
        )
        if len(negatives) == HARD_NEGATIVES_PER_QUERY:
            break
    return {"query_id": qid, "query": query, "positives": positives, "hard_negatives": negatives}


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# answers -----------------------------------------------------------------------------------------


def run_answer_eval(
    settings: Settings,
    dataset: Path,
    *,
    ingest: IngestFn | None = None,
    limit: int = 0,
    collection: str | None = None,
    out_dir: Path | None = None,
    console: Console | None = None,
    generator: Generator | None = None,
) -> dict[str, Any]:
    """Answer each question through the ``/v1/ask`` code path and score the answers.

    Metrics (SQuAD v1.1 normaliser for EM and F1):

    * ``exact_match``, ``f1``: the answer text with citation markers removed
      against the gold answers; an abstention scores 0.
    * ``exact_match_short``, ``f1_short``: the same after :func:`short_answer`,
      a gold-blind reduction of the answer sentence to the words that do not
      restate the question (reported beside, never instead of, the plain scores).
    * ``faithfulness``: mean verifier faithfulness over answers not abstained.
    * ``citation_precision``: share of cited chunks (all answers pooled) whose
      document is a gold document of the question.
    * ``citation_recall``: share of questions whose gold document is cited.
    * ``abstention_rate``: share of questions abstained on.

    A question whose generator call fails (e.g. times out) is listed under
    ``errors`` and left out of every metric; more than max(3, 10 %) such
    failures abort the run.

    Args:
        settings: service settings.
        dataset: BEIR directory whose queries carry answers (e.g. xquad_en).
        ingest: runs the ingestion pipeline on the corpus (see :func:`run_retrieval_eval`).
        limit: first N questions (0: all).
        collection: collection name (default ``eval-<dataset name>``).
        out_dir: output directory (default ``out/eval/<name>-answers``).
        console: where the progress bar goes.
        generator: a chat client to use; None uses ``generator.url``, or starts
            the local llama.cpp server when that is empty.

    Returns:
        The report written to ``report.json`` plus ``out_dir``.

    Raises:
        InputError: the dataset has no gold answers, or a bad ``limit``.
        GeneratorUnavailableError: the generator is down.
    """
    data = load_beir(Path(dataset), "test")
    if not data.answers:
        raise InputError("dataset", f"{data.name} has no gold answers in its queries file")
    name = collection or f"eval-{data.name}"
    out = Path(out_dir) if out_dir is not None else Path("out") / "eval" / f"{data.name}-answers"
    questions = _limited({qid: q for qid, q in data.queries.items() if qid in data.answers}, limit)
    ingest_summary = _prepare(settings, data, name, ingest, console)

    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    with open_runtime(for_queries(settings), generator=generator or True, log=_quiet) as runtime:
        pipeline = runtime.pipeline
        with _progress(console, f"answers {data.name}") as bar:
            task = bar.add_task("questions", total=len(questions))
            for qid, question in questions.items():
                try:
                    answer = pipeline.ask(name, question)
                except GeneratorUnavailableError as exc:
                    # One timed-out question must not throw away the others; it is counted apart.
                    errors.append({"id": qid, "question": question, "error": str(exc)})
                    if len(errors) > max(3, len(questions) // 10):
                        raise
                else:
                    gold_docs = {doc for doc, grade in data.qrels[qid].items() if grade > 0}
                    rows.append(_answer_row(qid, question, data.answers[qid], gold_docs, answer))
                bar.advance(task)
        config = {
            **{k: v for k, v in pipeline.pipeline_info().items() if k != "rerank_detail"},
            "top_k": settings.retrieval.top_k,
            "context_tokens": settings.generator.context_tokens,
            "answer_style": settings.generator.answer_style,
            "temperature": settings.generator.temperature,
            "collection": name,
            "short_answer": "answer sentence minus words that restate the question (rag.verify.spans.new_information)",
        }

    if not rows:
        raise GeneratorUnavailableError(f"no question was answered: {errors[0]['error'] if errors else 'none asked'}")
    report = {
        **_answer_metrics(rows), "dataset": data.name, "queries": len(rows), "errors": errors, "config": config,
    }
    if ingest_summary is not None:
        report["ingest"] = ingest_summary
    write_answer_report(out, report, rows)
    return {**report, "out_dir": out}


def _answer_row(qid: str, question: str, golds: list[str], gold_docs: set[str], answer: Answer) -> dict[str, Any]:
    prediction = "" if answer.abstained else strip_citations(answer.answer)
    short = "" if answer.abstained else short_answer(question, prediction)
    cited = [c.chunk.external_id for c in answer.citations]
    return {
        "id": qid,
        "question": question,
        "gold_answers": golds,
        "gold_docs": sorted(gold_docs),
        "answer": answer.answer,
        "short_answer": short,
        "abstained": answer.abstained,
        "citations": [{"n": c.n, "doc_id": c.chunk.external_id, "kind": c.kind} for c in answer.citations],
        "claims": [
            {"text": c.text, "verdict": c.verdict, "score": c.score, "citations": list(c.citations)} for c in answer.claims
        ],
        "faithfulness": answer.faithfulness,
        "em": exact_match(prediction, golds),
        "f1": token_f1(prediction, golds),
        "em_short": exact_match(short, golds),
        "f1_short": token_f1(short, golds),
        "cited_gold": sum(doc in gold_docs for doc in cited),
        "cited": len(cited),
        "gold_cited": bool(gold_docs.intersection(cited)),
        "timings": answer.timings.as_dict(),
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _answer_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r["abstained"]]
    cited = sum(r["cited"] for r in rows)
    stages = list(rows[0]["timings"]) if rows else []
    return {
        "exact_match": _mean([r["em"] for r in rows]),
        "f1": _mean([r["f1"] for r in rows]),
        "exact_match_short": _mean([r["em_short"] for r in rows]),
        "f1_short": _mean([r["f1_short"] for r in rows]),
        "faithfulness": _mean([r["faithfulness"] for r in answered]),
        "citation_precision": sum(r["cited_gold"] for r in rows) / cited if cited else None,
        "citation_recall": _mean([float(r["gold_cited"]) for r in rows]),
        "abstention_rate": _mean([float(r["abstained"]) for r in rows]),
        "latency_ms": {s: percentiles([r["timings"].get(s, 0.0) for r in rows]) for s in stages},
    }
