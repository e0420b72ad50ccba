"""Fitting the blend of the rerank order on held-out queries.

The service orders reranked candidates by :func:`~rag.rerank.cross_encoder.blend`
of the cross-encoder score and :func:`~rag.rerank.cross_encoder.retrieval_mix`;
``rag train-reranker`` picks the BM25 share of the retrieval side
(:func:`choose_lexical_share`) and the cross-encoder's weight
(:func:`choose_weight`) on a grid, by mean nDCG@10 (:func:`eval.metrics.ndcg_per_query`);
:func:`calibrate_blend` does both for a trained model and saves them with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import ndcg_per_query
from rag.config import RerankerConfig
from rag.rerank.cross_encoder import SETTINGS_FILE, Reranker, blend, retrieval_mix
from rag.types import ScoredChunk

TOP_N = 20
"""Candidates reranked per query when fitting and timing: the CPU default of ``Reranker.top_n``."""

WEIGHT_GRID = tuple(round(i * 0.05, 2) for i in range(21))
"""Weights tried by :func:`choose_weight` and :func:`choose_lexical_share`: 0, 0.05, ..., 1."""


@dataclass(frozen=True)
class DevRanking:
    """One held-out query's rerank candidates, for fitting the blend.

    Attributes:
        doc_ids: each candidate's document, in retrieval order.
        bm25: each candidate's BM25 score (None: BM25 did not return it).
        dense: each candidate's dense score (None: the dense index did not return it).
        fused: each candidate's fused (RRF) score.
        rerank: each candidate's cross-encoder score (empty when only the retrieval mix is fitted).
        relevant: the query's gold documents.
    """

    doc_ids: tuple[str, ...]
    bm25: tuple[float | None, ...]
    dense: tuple[float | None, ...]
    fused: tuple[float, ...]
    rerank: tuple[float, ...]
    relevant: frozenset[str]


def blended_run(ranking: DevRanking, weight: float, lexical_share: float = 0.5) -> dict[str, float]:
    """The documents of the blended order, best first, each at its best-ranked candidate.

    Candidates with equal blended scores keep their retrieval order. Scores are
    ranks turned around (the best of n documents scores n), so the run has no ties.

    Returns:
        document id -> score; empty without candidates.
    """
    if not ranking.doc_ids:
        return {}
    mix = retrieval_mix(ranking.bm25, ranking.dense, ranking.fused, lexical_share)
    scores = blend(ranking.rerank, mix, weight) if weight > 0.0 else mix
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    docs = list(dict.fromkeys(ranking.doc_ids[i] for i in order))
    return {doc: float(len(docs) - r) for r, doc in enumerate(docs)}


def mean_blended_ndcg10(rankings: Sequence[DevRanking], weight: float, lexical_share: float = 0.5) -> float:
    """Mean over ``rankings`` of binary nDCG@10 over documents of the blended order (see :func:`blended_run`).

    Gold documents that are not among the candidates still count in the ideal DCG,
    as they do in ``rag eval retrieval``; a query without gold documents or without
    candidates scores 0 and still counts in the mean.

    Returns:
        The mean in [0, 1]; 0.0 without rankings.
    """
    if not rankings:
        return 0.0
    qrels = {str(i): dict.fromkeys(r.relevant, 1) for i, r in enumerate(rankings)}
    run = {str(i): blended_run(r, weight, lexical_share) for i, r in enumerate(rankings)}
    return sum(ndcg_per_query(qrels, run, 10).values()) / len(rankings)


def blended_ndcg10(ranking: DevRanking, weight: float, lexical_share: float = 0.5) -> float:
    """Binary nDCG@10 of one query's blended order (see :func:`mean_blended_ndcg10`)."""
    return mean_blended_ndcg10([ranking], weight, lexical_share)


def choose_lexical_share(rankings: Sequence[DevRanking], grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict[float, float]]:
    """The BM25 share of the retrieval mix with the best mean nDCG@10, before any cross-encoder.

    It does not depend on the model, so every training query can be used. Ties go to the share nearest 0.5.

    Returns:
        ``(share, {share: mean nDCG@10})``; ``(0.5, {})`` without rankings.
    """
    if not rankings:
        return 0.5, {}
    table = {w: mean_blended_ndcg10(rankings, 0.0, w) for w in grid}
    return max(table, key=lambda w: (round(table[w], 9), -abs(w - 0.5))), table


def choose_weight(
    rankings: Sequence[DevRanking], lexical_share: float = 0.5, grid: Sequence[float] = WEIGHT_GRID
) -> tuple[float, dict[float, float]]:
    """The cross-encoder weight whose blended order has the best mean dev nDCG@10.

    Ties go to the larger weight (trust the trained model when the dev queries cannot tell).

    Returns:
        ``(weight, {weight: mean nDCG@10})``; ``(1.0, {})`` without rankings.
    """
    if not rankings:
        return 1.0, {}
    table = {w: mean_blended_ndcg10(rankings, w, lexical_share) for w in grid}
    return max(table, key=lambda w: (round(table[w], 9), w)), table


Candidates = Sequence[tuple[str, Sequence[ScoredChunk], Mapping[str, int]]]
"""(query, fused candidates best first, the query's qrels) per query."""


def _dev_ranking(candidates: Sequence[ScoredChunk], rels: Mapping[str, int], rerank: Sequence[float] = ()) -> DevRanking:
    return DevRanking(
        doc_ids=tuple(c.chunk.external_id for c in candidates),
        bm25=tuple(c.scores.bm25 for c in candidates),
        dense=tuple(c.scores.dense for c in candidates),
        fused=tuple(c.score for c in candidates),
        rerank=tuple(rerank),
        relevant=frozenset(doc for doc, grade in rels.items() if grade > 0),
    )


def calibrate_blend(
    model_dir: Path,
    queries: Candidates,
    dev: Candidates,
    *,
    top_n: int = TOP_N,
    max_length: int = 128,
    device: str = "auto",
) -> dict[str, Any]:
    """Fit the blend of the rerank order and save it with the model.

    First the BM25 share of the retrieval side on every mined query's top
    ``top_n`` candidates (no model involved, so training queries may be used:
    :func:`choose_lexical_share`); then the cross-encoder's
    weight on the dev queries only, which the model never saw
    (:func:`choose_weight`). Both, with the training
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
