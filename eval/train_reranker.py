"""Train a cross-encoder on a BEIR training split, exported hard negatives and user feedback.

The orchestration of ``rag train-reranker``: load the split, make sure the corpus
is ingested (through the ``ingest`` callable the CLI passes, as for
``rag eval retrieval``), mine pairs with our own hybrid retriever, hold out 10%
of the queries for choosing the best checkpoint, train, and measure the
trained model's rerank latency over the top 20 candidates. The pure parts live
in :mod:`eval.training`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from eval.datasets import BeirDataset, load_beir
from eval.metrics import percentiles
from eval.runner import IngestFn, _prepare, _progress
from eval.training import (
    MinedQuery,
    MiningConfig,
    TOP_N,
    TrainConfig,
    TrainingPair,
    calibrate_blend,
    compare_onnx,
    mine,
    mined_from_export,
    pairs_from_feedback,
    read_hard_negatives,
    split_dev,
    train_cross_encoder,
)
from rag.config import RerankerConfig, Settings
from rag.index.store import ACTIVE
from rag.rerank.cross_encoder import Reranker
from rag.runtime import open_runtime
from rag.types import Chunk, ScoredChunk

RANDOM_POOL = 5000
"""Chunks sampled once from the collection to draw random negatives from."""

LATENCY_TOP_N = TOP_N


def _quiet(_: str) -> None:
    """Start-up lines are not part of a training run's output."""


def default_output(settings: Settings, dataset_name: str) -> Path:
    """``<data dir>/rerankers/<dataset>-<UTC timestamp>``: runtime state, never committed."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(settings.data_dir) / "rerankers" / f"{dataset_name}-{stamp}"


@dataclass(frozen=True)
class _Mined:
    """What mining a split gave.

    Attributes:
        queries: every mined query (training and dev), in dataset order.
        pairs: training pairs (dev queries left out) from qrels, exported files and feedback.
        dev: the held-out mined queries.
        exported: queries read from exported hard-negative files.
        judged: feedback judgments read.
        rankings: query text -> its fused top ``LATENCY_TOP_N`` candidates.
    """

    queries: list[MinedQuery]
    pairs: list[TrainingPair]
    dev: list[MinedQuery]
    exported: int
    judged: int
    rankings: dict[str, list[ScoredChunk]]


def _mine_split(
    settings: Settings,
    data: BeirDataset,
    name: str,
    dev_set: set[str],
    *,
    mining: MiningConfig,
    seed: int,
    hard_negatives: Sequence[Path],
    feedback: bool,
    console: Console | None,
) -> _Mined:
    """Mine the split's queries with our own retriever over collection ``name``, then add exported and feedback pairs."""
    with open_runtime(settings, generator=False, reranker=False, log=_quiet) as runtime:
        retriever = runtime.pipeline.retriever(name)
        store = runtime.store
        cid = retriever.collection.info.id
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
            fused = retriever.run(query, candidates=depth, hydrate=mining.depth).fused
            rankings[query] = fused[:LATENCY_TOP_N]
            return fused

        all_ids = store.chunk_ids(cid, [ACTIVE]).tolist()
        sample = random.Random(seed).sample(all_ids, min(RANDOM_POOL, len(all_ids)))
        pool_map = store.hydrate(cid, sample)
        pool = [pool_map[i] for i in sample if i in pool_map]

        with _progress(console, f"mining {data.name}") as bar:
            task = bar.add_task("queries", total=len(data.queries))
            mined = mine(
                data.queries, data.qrels, retrieve, doc_chunks, random_pool=pool, config=mining, seed=seed,
                progress=lambda: bar.advance(task),
            )
        pairs: list[TrainingPair] = [p for m in mined if m.query_id not in dev_set for p in m.pairs("qrels")]
        dev: list[MinedQuery] = [m for m in mined if m.query_id in dev_set]

        exported = 0
        for path in hard_negatives:
            rows = [r for r in read_hard_negatives(path, store.cipher) if str(r.get("query_id", "")) not in dev_set]
            neg_ids = [int(n["chunk_id"]) for r in rows for n in r["hard_negatives"] if "chunk_id" in n]
            extra = mined_from_export(rows, doc_chunks, chunks=store.hydrate(cid, neg_ids), config=mining)
            exported += len(extra)
            pairs.extend(p for m in extra for p in m.pairs("hard-negatives"))

        judged = store.feedback(cid) if feedback else []
        pairs.extend(pairs_from_feedback(judged, store.hydrate(cid, {j.chunk_id for j in judged})))

    return _Mined(mined, pairs, dev, exported, len(judged), rankings)


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
        onnx: also export ONNX fp32 and int8 and compare them with torch
            (:func:`~eval.training.export.compare_onnx`).
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

    found = _mine_split(
        settings, data, name, dev_set, mining=mining, seed=train.seed, hard_negatives=hard_negatives,
        feedback=feedback, console=console,
    )
    mined, pairs, dev, exported, judged, rankings = (
        found.queries, found.pairs, found.dev, found.exported, found.judged, found.rankings
    )

    if console is not None:
        console.print(
            f"{len(pairs)} training pairs from {len(mined) - len(dev)} queries, {exported} exported queries and "
            f"{judged} feedback judgments; {len(dev)} dev queries; training -> {out}"
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
            "feedback_judgments": judged,
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
