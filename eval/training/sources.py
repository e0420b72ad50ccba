"""Training pairs from outside our own mining: exported hard negatives and end users' feedback."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.training.mining import DocChunksFn, MinedQuery, MiningConfig, TrainingPair
from rag.errors import FileError
from rag.rerank.cross_encoder import passage_text
from rag.security.crypto import DataCipher, read_export
from rag.types import Chunk, Judgment


def read_hard_negatives(path: Path, cipher: DataCipher | None = None) -> list[dict[str, Any]]:
    """Read a file written by ``rag eval retrieval --export-hard-negatives``.

    Each line is ``{"query_id", "query", "positives": [doc ids], "hard_negatives":
    [{"doc_id", "chunk_id", "text", "rank"}]}``. A file sealed with the data key (written while
    ``RAG_ENCRYPTION__KEY_FILE`` was set) needs the same ``cipher``.

    Raises:
        FileError: the file is missing or a line is not such an object.
        ConfigError: the file is sealed and ``cipher`` is missing or another key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(str(path), "no such file")
    rows: list[dict[str, Any]] = []
    try:
        text = read_export(path, cipher)
    except UnicodeDecodeError:
        raise FileError(str(path), "not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), start=1):
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
