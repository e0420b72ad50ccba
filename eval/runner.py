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
import re
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
    full_recall,
    full_recall_at_k,
    hotpot_exact_match,
    hotpot_f1,
    max_pool,
    percentiles,
    ranked,
    token_f1,
    write_trec_run,
)
from eval.plans import NEEDS_GENERATOR, PlanRecord, PlanRuns, parse_planners
from eval.report import write_answer_report, write_retrieval_report
from rag.config import Settings
from rag.errors import GeneratorUnavailableError, InputError
from rag.generation.client import Generator
from rag.pipeline import RagPipeline
from rag.runtime import open_runtime
from rag.security.crypto import open_cipher, write_export
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
    planners: Sequence[str] = (),
    generator: Generator | None = None,
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

    Full recall@k (``full_recall``) is the share of queries with *all* their relevant documents
    in a stage's top k, and ``by_type`` breaks nDCG, recall and full recall down by the
    queries' ``metadata.type`` when they carry one (HotpotQA's bridge and comparison). With
    ``planners``, each mode plans every query too (questions outer, modes inner) and
    ``plans`` scores the evidence each plan collected and handed to the generator
    (:mod:`eval.plans`); modes other than ``direct`` start the generator.

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
        planners: planning modes to score side by side (``direct``, ``iterative``, ...).
        generator: the chat client planners use; None uses ``generator.url``, or starts the
            local llama.cpp server, when a mode other than ``direct`` is asked for.

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
    plans = PlanRuns(parse_planners(planners))
    needs_generator: bool | Generator = (generator or True) if NEEDS_GENERATOR & set(plans.modes) else False
    # Query latency is reported, so queries run with the serving thread policy (rag.threads).
    with open_runtime(for_queries(settings), generator=needs_generator, log=_quiet) as runtime:
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
                plans.run(pipeline, name, qid, text, settings.retrieval.top_k)
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
        if plans.modes:
            config["planners"] = plans.modes
            config["planner"] = settings.planner.model_dump()
            config["top_k"] = settings.retrieval.top_k
            config["context_tokens"] = settings.generator.context_tokens

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
        write_trec_run(out / f"run.{key}.trec", _trec_ids(stage.runs[key]), f"rag-{key}")
    full = {key: full_recall(qrels, _doc_lists(stage.runs[key]), ks) for key in active}
    by_type = _by_type(qrels, data.types, {key: stage.runs[key] for key in active}, ks)
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
    report["full_recall"] = full
    if by_type:
        report["by_type"] = by_type
    if plans.modes:
        report["plans"] = plans.report(qrels, data.types, ks)
        report["plan_questions"] = {
            qid: {mode: plans.records[mode][qid].as_json() for mode in plans.modes if qid in plans.records.get(mode, {})}
            for qid in queries
        }
    if ingest_summary is not None:
        report["ingest"] = ingest_summary
    write_retrieval_report(out, report, curves)
    if hard_negatives is not None:
        _write_jsonl(Path(hard_negatives), mined, settings)
    return {**report, "recall_curves": curves, "out_dir": out}


def _trec_ids(runs: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """The run with whitespace in ids percent-encoded (``%20``, and ``%`` as ``%25``).

    TREC run files separate fields by whitespace, and HotpotQA's corpus ids are Wikipedia titles
    with spaces; ``urllib.parse.unquote`` gives the ids back.
    """

    def escape(text: str) -> str:
        return re.sub(r"[%\s]", lambda m: f"%{ord(m.group()):02X}", text)

    return {escape(qid): {escape(doc): score for doc, score in docs.items()} for qid, docs in runs.items()}


def _doc_lists(runs: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
    """Per query, its documents best first (ties by id, as everywhere in eval.metrics)."""
    return {qid: [doc for doc, _ in ranked(scores)] for qid, scores in runs.items()}


def _by_type(
    qrels: Mapping[str, Mapping[str, int]], types: Mapping[str, str], runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    ks: Sequence[int],
) -> dict[str, dict[str, Any]]:
    """Per query type: how many queries, and per stage nDCG@10, recall@k and full recall@k."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({types[q] for q in qrels if q in types}):
        sub = {q: r for q, r in qrels.items() if types.get(q) == kind}
        if not any(g > 0 for rels in sub.values() for g in rels.values()):
            continue
        stages = {}
        for key, run in runs.items():
            metrics = evaluate_run(sub, run, ks)
            stages[key] = {
                "ndcg@10": metrics["ndcg@10"],
                **{f"recall@{k}": metrics[f"recall@{k}"] for k in sorted({*ks})},
                **full_recall(sub, _doc_lists(run), ks),
            }
        out[kind] = {"queries": len(sub), "stages": stages}
    return out


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


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]], settings: Settings) -> Path:
    # chunk texts and queries: sealed when the data dir is encrypted (RAG_ENCRYPTION__KEY_FILE)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return write_export(path, text, open_cipher(settings))


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
    planners: Sequence[str] = (),
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
    * ``hotpot_em``, ``hotpot_f1``: HotpotQA's answer scores (``hotpot_evaluate_v1.py``: the
      same normaliser, but yes/no answers earn no partial credit).
    * ``handed_full_recall``: share of questions whose gold documents were *all* among the
      sources handed to the generator; ``hops_mean``, ``fallback_rate`` (plans whose planning
      call failed), ``latency_ms`` per stage (``plan`` is the planner's generator calls), and
      ``by_type`` (EM, F1 and handed full recall per query ``metadata.type``).

    With ``planners``, every question is answered once per mode (questions outer, modes inner,
    so the modes share the machine's load alike); ``planners`` in the report holds each mode's
    metrics, and the top-level metrics are the first mode's.

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
        planners: planning modes to compare (default: the configured ``RAG_PLANNER__MODE``).

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

    modes = parse_planners(planners) or [settings.planner.mode]
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    with open_runtime(for_queries(settings), generator=generator or True, log=_quiet) as runtime:
        pipeline = runtime.pipeline
        with _progress(console, f"answers {data.name}") as bar:
            task = bar.add_task("questions", total=len(questions) * len(modes))
            for qid, question in questions.items():
                gold_docs = {doc for doc, grade in data.qrels[qid].items() if grade > 0}
                for mode in modes:
                    try:
                        answer = pipeline.ask(name, question, planner=mode)
                    except GeneratorUnavailableError as exc:
                        # One timed-out question must not throw away the others; it is counted apart.
                        errors.append({"id": qid, "question": question, "planner": mode, "error": str(exc)})
                        if len(errors) > max(3, len(questions) * len(modes) // 10):
                            raise
                    else:
                        row = _answer_row(qid, question, data.answers[qid], gold_docs, answer)
                        rows.append({**row, "planner": mode, "type": data.types.get(qid)})
                    bar.advance(task)
        config = {
            **{k: v for k, v in pipeline.pipeline_info().items() if k != "rerank_detail"},
            "top_k": settings.retrieval.top_k,
            "context_tokens": settings.generator.context_tokens,
            "answer_style": settings.generator.answer_style,
            "temperature": settings.generator.temperature,
            "collection": name,
            "short_answer": "answer sentence minus words that restate the question (rag.verify.spans.new_information)",
            "planners": modes,
            "planner": settings.planner.model_dump(),
        }

    if not rows:
        raise GeneratorUnavailableError(f"no question was answered: {errors[0]['error'] if errors else 'none asked'}")
    by_mode = {mode: [r for r in rows if r["planner"] == mode] for mode in modes}
    metrics = {mode: _answer_metrics(mode_rows) for mode, mode_rows in by_mode.items() if mode_rows}
    first = next(iter(metrics.values()))
    report = {
        **first, "dataset": data.name, "queries": len(by_mode[modes[0]]), "errors": errors, "config": config,
        "planners": metrics,
    }
    if ingest_summary is not None:
        report["ingest"] = ingest_summary
    write_answer_report(out, report, rows, open_cipher(settings))
    return {**report, "out_dir": out}


def _answer_row(qid: str, question: str, golds: list[str], gold_docs: set[str], answer: Answer) -> dict[str, Any]:
    prediction = "" if answer.abstained else strip_citations(answer.answer)
    plan: dict[str, Any] = PlanRecord.of(answer.plan, answer.evidence, answer.timings.total).as_json() if answer.plan else {
        "handed": [e.chunk.external_id for e in answer.evidence], "hops": 1, "fallback": "", "mode": "direct",
    }
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
        "hotpot_em": hotpot_exact_match(prediction, golds),
        "hotpot_f1": hotpot_f1(prediction, golds),
        "handed_full": full_recall_at_k({qid: dict.fromkeys(gold_docs, 1)}, {qid: plan["handed"]}, None)[qid]
        if gold_docs else None,
        "plan": plan,
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
        **_plan_answer_metrics(rows),
    }


def _plan_answer_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """HotpotQA EM/F1, handed full recall, hops, fallbacks and modes run, overall and per query type."""

    def block(sub: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        recall = [r["handed_full"] for r in sub if r.get("handed_full") is not None]
        return {
            "questions": len(sub),
            "exact_match": _mean([r["em"] for r in sub]),
            "f1": _mean([r["f1"] for r in sub]),
            "hotpot_em": _mean([r["hotpot_em"] for r in sub]),
            "hotpot_f1": _mean([r["hotpot_f1"] for r in sub]),
            "handed_full_recall": _mean(recall),
            "hops_mean": _mean([float(r["plan"]["hops"]) for r in sub]),
        }

    overall = block(rows)
    kinds = sorted({r["type"] for r in rows if r.get("type")})
    modes_run: dict[str, int] = {}
    for r in rows:
        modes_run[r["plan"]["mode"]] = modes_run.get(r["plan"]["mode"], 0) + 1
    return {
        "hotpot_em": overall["hotpot_em"],
        "hotpot_f1": overall["hotpot_f1"],
        "handed_full_recall": overall["handed_full_recall"],
        "hops_mean": overall["hops_mean"],
        "fallback_rate": _mean([float(bool(r["plan"]["fallback"])) for r in rows]),
        "modes_run": modes_run,
        "by_type": {kind: block([r for r in rows if r.get("type") == kind]) for kind in kinds},
    }
