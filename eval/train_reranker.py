"""Train a cross-encoder on a BEIR training split, exported hard negatives and user feedback.

The orchestration of ``rag train-reranker``: load the split, make sure the corpus
is ingested (through the ``ingest`` callable the CLI passes, as for
``rag eval retrieval``), mine pairs with our own hybrid retriever, hold out 10%
of the queries for choosing the best checkpoint, train, and measure the
trained model's rerank latency over the top 20 candidates. The pure parts live
in :mod:`rag.rerank.training`.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from eval.datasets import load_beir
from eval.metrics import percentiles
from eval.runner import IngestFn, _prepare, _progress
from rag.config import RerankerConfig, Settings
from rag.embedding import Embedder
from rag.index.store import ACTIVE, Store
from rag.pipeline import RagPipeline
from rag.rerank.cross_encoder import SETTINGS_FILE, Reranker
from rag.rerank.training import (
    DevRanking,
    MinedQuery,
    MiningConfig,
    TrainConfig,
    TrainingPair,
    choose_lexical_share,
    choose_weight,
    mine,
    mined_from_export,
    pairs_from_feedback,
    read_hard_negatives,
    split_dev,
    train_cross_encoder,
)
from rag.types import Chunk, ScoredChunk

RANDOM_POOL = 5000
"""Chunks sampled once from the collection to draw random negatives from."""

LATENCY_TOP_N = 20


@contextlib.contextmanager
def _retrieval(settings: Settings) -> Iterator[RagPipeline]:
    store = Store(settings.sqlalchemy_url)
    try:
        yield RagPipeline(settings, store, Embedder(settings.embedding).warm_up())
    finally:
        store.close()


def default_output(settings: Settings, dataset_name: str) -> Path:
    """``<data dir>/rerankers/<dataset>-<UTC timestamp>``: runtime state, never committed."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(settings.data_dir) / "rerankers" / f"{dataset_name}-{stamp}"


def run_train_reranker(
    settings: Settings,
    dataset: Path,
    *,
    split: str = "train",
    ingest: IngestFn | None = None,
    collection: str | None = None,
    out: Path | None = None,
    train: TrainConfig = TrainConfig(),
    mining: MiningConfig = MiningConfig(),
    hard_negatives: Sequence[Path] = (),
    feedback: bool = True,
    dev_fraction: float = 0.1,
    onnx: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Mine, train and measure a cross-encoder.

    Args:
        settings: service settings (data dir, embedding model, retrieval settings).
        dataset: BEIR directory with ``qrels/<split>.tsv``.
        split: the training split.
        ingest: ingests the corpus (None: the collection must exist).
        collection: collection name (default ``eval-<dataset name>``, shared with ``rag eval retrieval``).
        out: model directory (default :func:`default_output`).
        train: training settings.
        mining: negatives per query.
        hard_negatives: files from ``rag eval retrieval --export-hard-negatives`` to add
            (their dev-split queries are left out).
        feedback: add the collection's ``/v1/feedback`` judgments.
        dev_fraction: share of training queries held out for the best checkpoint.
        onnx: also export ONNX fp32 and int8 and compare them with torch (:func:`compare_onnx`).
        console: where progress goes (None: quiet).

    Returns:
        The training report plus ``mining`` counts and ``rerank_latency_ms`` (top 20, CPU or GPU as configured).

    Raises:
        InputError: bad split, fraction or training settings.
        NotFoundError: no ``ingest`` and the collection does not exist.
    """
    data = load_beir(Path(dataset), split)
    name = collection or f"eval-{data.name}"
    out = Path(out) if out is not None else default_output(settings, data.name)
    ingest_summary = _prepare(settings, data, name, ingest, console)
    train_ids, dev_ids = split_dev(list(data.queries), dev_fraction, train.seed)
    dev_set = set(dev_ids)

    with _retrieval(settings) as pipeline:
        idx = pipeline.index(name)
        store = pipeline.store
        cid = idx.info.id
        doc_cache: dict[str, list[Chunk]] = {}

        def doc_chunks(doc: str) -> list[Chunk]:
            if doc not in doc_cache:
                active = store.active_docs(cid, [doc]).get(doc)
                ids = store.chunk_ids_of_docs([active.id]) if active else []
                doc_cache[doc] = sorted(store.hydrate(cid, ids).values(), key=lambda c: c.ordinal)
            return doc_cache[doc]

        rankings: dict[str, list[ScoredChunk]] = {}

        def retrieve(query: str) -> list[ScoredChunk]:
            # The service's candidate depth, so the fused top 20 and its scores are those it would rerank.
            depth = max(mining.depth, settings.retrieval.candidates)
            fused = pipeline.retriever.retrieve(idx, query, candidates=depth, hydrate=mining.depth).fused
            rankings[query] = fused[:LATENCY_TOP_N]
            return fused

        all_ids = store.chunk_ids(cid, [ACTIVE]).tolist()
        sample = random.Random(train.seed).sample(all_ids, min(RANDOM_POOL, len(all_ids)))
        pool_map = store.hydrate(cid, sample)
        pool = [pool_map[i] for i in sample if i in pool_map]

        with _progress(console, f"mining {data.name}") as bar:
            task = bar.add_task("queries", total=len(data.queries))
            mined = mine(
                data.queries, data.qrels, retrieve, doc_chunks, random_pool=pool, config=mining, seed=train.seed,
                progress=lambda: bar.advance(task),
            )
        pairs: list[TrainingPair] = [p for m in mined if m.query_id not in dev_set for p in m.pairs("qrels")]
        dev: list[MinedQuery] = [m for m in mined if m.query_id in dev_set]

        exported = 0
        for path in hard_negatives:
            rows = [r for r in read_hard_negatives(path) if str(r.get("query_id", "")) not in dev_set]
            neg_ids = [int(n["chunk_id"]) for r in rows for n in r["hard_negatives"] if "chunk_id" in n]
            extra = mined_from_export(rows, doc_chunks, chunks=store.hydrate(cid, neg_ids), config=mining)
            exported += len(extra)
            pairs.extend(p for m in extra for p in m.pairs("hard-negatives"))

        judged = store.feedback(cid) if feedback else []
        pairs.extend(pairs_from_feedback(judged, store.hydrate(cid, {j.chunk_id for j in judged})))

    if console is not None:
        console.print(
            f"{len(pairs)} training pairs from {len(mined) - len(dev)} queries, {exported} exported queries and "
            f"{len(judged)} feedback judgments; {len(dev)} dev queries; training -> {out}"
        )
    report = train_cross_encoder(pairs, dev, out, train, show_progress=console is not None)
    blend = calibrate_blend(
        report.path,
        [(m.query, rankings.get(m.query, []), data.qrels.get(m.query_id, {})) for m in mined],
        [(m.query, rankings.get(m.query, []), data.qrels.get(m.query_id, {})) for m in dev],
        max_length=train.max_length,
        device=train.device,
    )
    latency = rerank_latency(
        report.path, [(m.query, rankings.get(m.query, [])) for m in dev], max_length=train.max_length, device=train.device
    )
    result: dict[str, Any] = {
        **report.as_json(),
        "dataset": data.name,
        "split": split,
        "collection": name,
        "mining": {
            "queries": len(mined),
            "train_queries": len(mined) - len(dev),
            "dev_queries": len(dev),
            "exported_queries": exported,
            "feedback_judgments": len(judged),
            **{k: getattr(mining, k) for k in ("hard_negatives", "random_negatives", "positives_per_doc", "depth")},
        },
        "rerank_latency_ms": latency,
        "blend": blend,
    }
    if onnx:
        result["onnx"] = compare_onnx(
            report.path, dev, [(m.query, rankings.get(m.query, [])) for m in dev], max_length=train.max_length
        )
    if ingest_summary is not None:
        result["ingest"] = ingest_summary
    (report.path / "training.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


Candidates = Sequence[tuple[str, Sequence[ScoredChunk], Mapping[str, int]]]
"""(query, fused candidates best first, the query's qrels) per query."""


def _dev_ranking(candidates: Sequence[ScoredChunk], rels: Mapping[str, int], rerank: Sequence[float] = ()) -> DevRanking:
    return DevRanking(
        doc_ids=tuple(c.chunk.external_id for c in candidates),
        bm25=tuple(c.scores.get("bm25") for c in candidates),
        dense=tuple(c.scores.get("dense") for c in candidates),
        fused=tuple(c.score for c in candidates),
        rerank=tuple(rerank),
        relevant=frozenset(doc for doc, grade in rels.items() if grade > 0),
    )


def calibrate_blend(
    model_dir: Path,
    queries: Candidates,
    dev: Candidates,
    *,
    top_n: int = LATENCY_TOP_N,
    max_length: int = 128,
    device: str = "auto",
) -> dict[str, Any]:
    """Fit the blend of the rerank order and save it with the model.

    First the BM25 share of the retrieval side on every mined query's top
    ``top_n`` candidates (no model involved, so training queries may be used:
    :func:`~rag.rerank.training.choose_lexical_share`); then the cross-encoder's
    weight on the dev queries only, which the model never saw
    (:func:`~rag.rerank.training.choose_weight`). Both, with the training
    length, go to ``rag_reranker.json``, which the service reads when
    ``RAG_RERANKER__WEIGHT`` / ``__LEXICAL_SHARE`` / ``__MAX_LENGTH`` are not set.

    Args:
        model_dir: the trained model.
        queries: every mined query (training and dev).
        dev: the dev queries.
        top_n: candidates reranked per query (the CPU default of ``RerankerConfig.top_n``).
        max_length: tokens per pair (the training length).
        device: ``auto`` | ``cpu`` | ``cuda``.

    Returns:
        The file's content: ``weight``, ``lexical_share``, ``max_length``, query counts and the nDCG@10 tables.
    """
    everyone = [_dev_ranking(list(c)[:top_n], rels) for _, c, rels in queries if c]
    share, share_table = choose_lexical_share(everyone)
    reranker = Reranker(RerankerConfig(model=str(model_dir), max_length=max_length, device=device, weight=1.0))
    rankings = []
    for query, candidates, rels in dev:
        head = list(candidates)[:top_n]
        if head:
            scored = {s.chunk.chunk_id: s.score for s in reranker.rerank(query, head)}
            rankings.append(_dev_ranking(head, rels, [scored[c.chunk.chunk_id] for c in head]))
    weight, table = choose_weight(rankings, share)
    saved = {
        "weight": weight,
        "lexical_share": share,
        "max_length": max_length,
        "queries": len(everyone),
        "dev_queries": len(rankings),
        "ndcg@10_by_lexical_share": {f"{w:.2f}": round(v, 4) for w, v in share_table.items()},
        "dev_ndcg@10_by_weight": {f"{w:.2f}": round(v, 4) for w, v in table.items()},
    }
    (Path(model_dir) / SETTINGS_FILE).write_text(json.dumps(saved, indent=2), encoding="utf-8")
    return saved


def rerank_latency(
    model: Path | str,
    candidates: Sequence[tuple[str, Sequence[ScoredChunk]]],
    *,
    top_n: int = LATENCY_TOP_N,
    max_length: int = 256,
    device: str = "auto",
    batch_size: int = 32,
) -> dict[str, float]:
    """Time the rerank stage alone: one ``Reranker.rerank`` call over each query's top ``top_n`` candidates.

    One untimed call warms the model up first.

    Args:
        model: path or id of the cross-encoder.
        candidates: (query, fused candidates) per query; only the first ``top_n`` are scored.
        top_n: candidates per call (20 is the CPU default of ``RerankerConfig.top_n``).
        max_length: tokens per pair.
        device: ``auto`` | ``cpu`` | ``cuda``.
        batch_size: pairs per forward pass.

    Returns:
        ``{"p50", "p90", "p99"}`` in milliseconds plus ``queries`` and ``top_n``; empty when there is nothing to time.
    """
    work = [(q, list(c)[:top_n]) for q, c in candidates if c]
    if not work:
        return {}
    reranker = Reranker(RerankerConfig(model=str(model), max_length=max_length, device=device, batch_size=batch_size))
    reranker.rerank(*work[0])
    times: list[float] = []
    for query, chunks in work:
        t0 = time.perf_counter()
        reranker.rerank(query, chunks)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {**percentiles(times), "queries": len(work), "top_n": top_n}


def _ndcg10(labels_by_score: Sequence[float]) -> float:
    import math

    dcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(labels_by_score[:10]))
    ideal = sorted(labels_by_score, reverse=True)
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal[:10]))
    return dcg / idcg if idcg else 0.0


def compare_onnx(
    model_dir: Path,
    dev: Sequence[MinedQuery],
    candidates: Sequence[tuple[str, Sequence[ScoredChunk]]],
    *,
    top_n: int = LATENCY_TOP_N,
    max_length: int = 256,
) -> dict[str, dict[str, float]]:
    """Export to ONNX (fp32 and int8) and compare each with the torch model on CPU.

    Quality is dev nDCG@10 over each dev query's mined candidates (binary
    labels); latency is one scoring call over each query's top ``top_n`` fused
    candidates, as in :func:`rerank_latency`.

    Returns:
        Per variant (``torch``, ``onnx-fp32``, ``onnx-int8``): ``dev_ndcg@10``, ``p50``, ``p90``.
    """
    from sentence_transformers import CrossEncoder

    from rag.rerank.cross_encoder import passage_text
    from rag.rerank.onnx import OnnxCrossEncoder, export_onnx

    paths = export_onnx(Path(model_dir))
    torch_model = CrossEncoder(str(model_dir), device="cpu", max_length=max_length, local_files_only=True)
    scorers = {
        "torch": lambda pairs: torch_model.predict(pairs, batch_size=32, show_progress_bar=False),
        **{
            f"onnx-{kind}": OnnxCrossEncoder(path, Path(model_dir), max_length).predict
            for kind, path in paths.items()
        },
    }
    work = [(q, [passage_text(s.chunk) for s in list(c)[:top_n]]) for q, c in candidates if c]
    result: dict[str, dict[str, float]] = {}
    for name, score in scorers.items():
        ndcgs = []
        for m in dev:
            passages = [*m.positives, *m.hard_negatives, *m.random_negatives]
            labels = [1.0] * len(m.positives) + [0.0] * (len(passages) - len(m.positives))
            s = score([(m.query, p) for p in passages])
            ndcgs.append(_ndcg10([labels[i] for i in sorted(range(len(s)), key=lambda i: -float(s[i]))]))
        times = []
        if work:
            score([(work[0][0], p) for p in work[0][1]])
        for q, passages in work:
            t0 = time.perf_counter()
            score([(q, p) for p in passages])
            times.append((time.perf_counter() - t0) * 1000.0)
        result[name] = {"dev_ndcg@10": sum(ndcgs) / max(len(ndcgs), 1), **(percentiles(times) if times else {})}
    return result
