"""Reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rag.types import FusedHit, Hit, StageScores


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[Hit]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedHit]:
    """Fuse ranked lists by reciprocal rank.

    ``score(d) = sum_r w_r / (k + rank_r(d))`` with 1-based ranks and k = 60 by default
    (Cormack, Clarke and Büttcher, SIGIR 2009). Lists must already be sorted best first.

    Args:
        rankings: stage name (``bm25`` or ``dense``) -> hits, best first. Inputs are not modified.
        k: the RRF constant.
        weights: optional per-stage weights (default 1.0).
        limit: return only the best ``limit`` (default: all). A search keeps its top 10 of about
            200 candidates, and building the objects of the other 190 cost as much as the fusion.

    Returns:
        New :class:`FusedHit` objects sorted by fused score descending, ties by chunk id;
        ``scores`` holds each stage's original score and the ``fused`` score.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    fused: dict[int, float] = {}
    per_stage: dict[int, dict[str, float]] = {}
    for stage, hits in rankings.items():
        w = 1.0 if weights is None else float(weights.get(stage, 1.0))
        seen: set[int] = set()
        rank = 0
        for hit in hits:
            if hit.chunk_id in seen:
                continue
            seen.add(hit.chunk_id)
            rank += 1
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + w / (k + rank)
            per_stage.setdefault(hit.chunk_id, {})[stage] = float(hit.score)
    # (-score, id) tuples compare in C; a key function cost a Python call per candidate, under the GIL.
    ranked = sorted([(-score, cid) for cid, score in fused.items()])
    if limit is not None:
        del ranked[max(0, limit):]
    return [FusedHit(cid, -neg, StageScores(**per_stage[cid], fused=-neg)) for neg, cid in ranked]
