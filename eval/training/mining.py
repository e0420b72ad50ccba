"""Mining (query, passage, label) pairs to train a cross-encoder on.

Three sources give pairs:

* qrels of a training split: each query's gold documents give positives, and our
  own hybrid retriever gives hard negatives (its best-ranked chunks of documents
  that are not gold for that query) plus a few random chunks (:func:`mine`, here);
* the JSONL that ``rag eval retrieval --export-hard-negatives`` writes
  (:func:`~eval.training.sources.mined_from_export`);
* end users' feedback judgments (:func:`~eval.training.sources.pairs_from_feedback`).

Nothing here touches an index or a dataset file layout: mining takes a retrieval
function and a chunk lookup, so the caller decides where they come from. This
module also holds out the dev queries (:func:`split_dev`) and caps the pairs
(:func:`cap_pairs`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rag.errors import InputError
from rag.rerank.cross_encoder import passage_text
from rag.types import Chunk, ScoredChunk

RetrieveFn = Callable[[str], Sequence[ScoredChunk]]
"""Ranked chunks for a query, best first (our hybrid retriever in production)."""

DocChunksFn = Callable[[str], Sequence[Chunk]]
"""The chunks of one document, by external id, in reading order (empty when unknown)."""


@dataclass(frozen=True)
class TrainingPair:
    """One labelled (query, passage) pair.

    Attributes:
        query: the query text.
        passage: the text the cross-encoder reads (see :func:`~rag.rerank.cross_encoder.passage_text`).
        label: 1.0 relevant, 0.0 not relevant.
        source: ``qrels``, ``hard-negatives`` (an exported file) or ``feedback``.
    """

    query: str
    passage: str
    label: float
    source: str


@dataclass(frozen=True)
class MinedQuery:
    """A query with its positive passages and mined negatives.

    Attributes:
        query_id: the query's id (empty for feedback).
        query: the query text.
        positives: passages of gold documents.
        hard_negatives: the retriever's best-ranked passages of non-gold documents, best first.
        random_negatives: passages drawn at random from non-gold documents.
    """

    query_id: str
    query: str
    positives: tuple[str, ...]
    hard_negatives: tuple[str, ...]
    random_negatives: tuple[str, ...] = ()

    def pairs(self, source: str = "qrels") -> list[TrainingPair]:
        """Labelled pairs: positives first, then hard and random negatives."""
        return [
            *(TrainingPair(self.query, p, 1.0, source) for p in self.positives),
            *(TrainingPair(self.query, n, 0.0, source) for n in (*self.hard_negatives, *self.random_negatives)),
        ]


@dataclass(frozen=True)
class MiningConfig:
    """How many passages of each kind to take per query.

    Attributes:
        hard_negatives: best-ranked non-gold chunks kept (4 to 8 works well).
        random_negatives: random non-gold chunks added.
        positives_per_doc: chunks taken from each gold document, best-ranked first.
        depth: candidates retrieved per query to find both.
    """

    hard_negatives: int = 4
    random_negatives: int = 2
    positives_per_doc: int = 1
    depth: int = 50

    def __post_init__(self) -> None:
        for name in ("hard_negatives", "random_negatives"):
            if getattr(self, name) < 0:
                raise InputError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("positives_per_doc", "depth"):
            if getattr(self, name) < 1:
                raise InputError(name, f"must be >= 1, got {getattr(self, name)}")


def mine_query(
    query_id: str,
    query: str,
    relevant: Mapping[str, int],
    retrieve: RetrieveFn,
    doc_chunks: DocChunksFn,
    *,
    random_pool: Sequence[Chunk] = (),
    config: MiningConfig = MiningConfig(),
    rng: random.Random | None = None,
    ranking: Sequence[ScoredChunk] | None = None,
) -> MinedQuery:
    """Positives and negatives for one training query.

    Positives: for each gold document (grade > 0), its chunks in the order the
    retriever ranked them (chunks it did not return follow in reading order),
    the first ``positives_per_doc`` of them. Hard negatives: the retriever's
    best-ranked chunks whose document is not gold for this query. Random
    negatives: drawn from ``random_pool``, skipping gold documents and chunks
    already used.

    Args:
        query_id: the query's id.
        query: the query text.
        relevant: document external id -> grade; grades <= 0 count as not relevant.
        retrieve: ranked chunks for a query.
        doc_chunks: a gold document's chunks by external id.
        random_pool: chunks to draw random negatives from.
        config: how many of each.
        rng: source of randomness (default ``random.Random(0)``).
        ranking: the retriever's ranking when the caller already has it (skips ``retrieve``).

    Returns:
        The mined query; ``positives`` is empty when no gold document has a chunk.
    """
    rng = rng or random.Random(0)
    gold = {doc for doc, grade in relevant.items() if grade > 0}
    ranked = list(ranking if ranking is not None else retrieve(query))[: config.depth]
    rank_of = {s.chunk.chunk_id: i for i, s in enumerate(ranked)}

    positives: list[str] = []
    for doc in sorted(gold):
        chunks = sorted(doc_chunks(doc), key=lambda c: (rank_of.get(c.chunk_id, len(ranked)), c.ordinal))
        positives.extend(passage_text(c) for c in chunks[: config.positives_per_doc])

    used: set[int] = set()
    hard: list[str] = []
    for scored in ranked:
        if len(hard) == config.hard_negatives:
            break
        if scored.chunk.external_id in gold:
            continue
        used.add(scored.chunk.chunk_id)
        hard.append(passage_text(scored.chunk))

    randoms: list[str] = []
    if config.random_negatives and random_pool:
        for i in rng.sample(range(len(random_pool)), len(random_pool)):
            chunk = random_pool[i]
            if chunk.external_id in gold or chunk.chunk_id in used:
                continue
            used.add(chunk.chunk_id)
            randoms.append(passage_text(chunk))
            if len(randoms) == config.random_negatives:
                break
    return MinedQuery(query_id, query, tuple(dict.fromkeys(positives)), tuple(hard), tuple(randoms))


def mine(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    retrieve: RetrieveFn,
    doc_chunks: DocChunksFn,
    *,
    random_pool: Sequence[Chunk] = (),
    config: MiningConfig = MiningConfig(),
    seed: int = 42,
    progress: Callable[[], None] | None = None,
) -> list[MinedQuery]:
    """Mine every query that has qrels (see :func:`mine_query`); queries without positives are dropped.

    Args:
        queries: query id -> text.
        qrels: query id -> document id -> grade.
        retrieve: ranked chunks for a query.
        doc_chunks: a document's chunks by external id.
        random_pool: chunks to draw random negatives from.
        config: how many of each.
        seed: seeds the random negatives.
        progress: called once per query.

    Returns:
        Mined queries in the order of ``queries``.
    """
    rng = random.Random(seed)
    out: list[MinedQuery] = []
    for qid, text in queries.items():
        if qid in qrels:
            mined = mine_query(
                qid, text, qrels[qid], retrieve, doc_chunks, random_pool=random_pool, config=config, rng=rng
            )
            if mined.positives:
                out.append(mined)
        if progress is not None:
            progress()
    return out


def split_dev(ids: Sequence[str], fraction: float = 0.1, seed: int = 42) -> tuple[list[str], list[str]]:
    """Hold out a seeded random share of query ids for early stopping.

    Args:
        ids: query ids.
        fraction: share held out (at least one id when ``fraction > 0`` and there are two or more).
        seed: seeds the shuffle.

    Returns:
        ``(train_ids, dev_ids)``, each in the order of ``ids``.

    Raises:
        InputError: ``fraction`` outside [0, 0.5].
    """
    if not 0.0 <= fraction <= 0.5:
        raise InputError("fraction", f"must be in [0, 0.5], got {fraction}")
    n_dev = round(len(ids) * fraction)
    if fraction > 0 and n_dev == 0 and len(ids) >= 2:
        n_dev = 1
    dev = set(random.Random(seed).sample(list(ids), n_dev))
    return [i for i in ids if i not in dev], [i for i in ids if i in dev]


def cap_pairs(pairs: Sequence[TrainingPair], max_pairs: int, seed: int = 42) -> list[TrainingPair]:
    """At most ``max_pairs`` pairs, keeping each query's pairs together.

    Queries are visited in a seeded random order and taken whole while they fit,
    so every kept query still has its positives and its negatives.

    Returns:
        The kept pairs in their original order (all of them when ``max_pairs`` is 0).
    """
    if not max_pairs or len(pairs) <= max_pairs:
        return list(pairs)
    by_query: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_query.setdefault(p.query, []).append(i)
    keep: set[int] = set()
    for q in random.Random(seed).sample(list(by_query), len(by_query)):
        if len(keep) + len(by_query[q]) <= max_pairs:
            keep.update(by_query[q])
    return [p for i, p in enumerate(pairs) if i in keep]
