"""Load evaluation collections stored in the BEIR layout.

A BEIR directory holds ``corpus.jsonl``, ``queries.jsonl`` (optionally
``queries.<split>.jsonl``) and ``qrels/<split>.tsv``. The corpus is only
located here, never read: the indexer streams it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import FileError, InputError

Baselines = dict[str, dict[str, float]]

# Reference figures, keyed by dataset directory name for the "test" qrels and by
# "<name>/<split>" for any other qrels file. Labels say whether a figure is
# published or only a check run made when the dataset was assembled (see each
# dataset's SOURCE.md); check runs are not published numbers. Metric names use
# the keys of ``eval.metrics.evaluate_run``; "map" and "mrr" without a cutoff
# are whole-ranking figures and are kept apart from "map@100" / "mrr@10".
PUBLISHED_BASELINES: dict[str, Baselines] = {
    "scifact": {
        "BM25 (BEIR paper)": {"ndcg@10": 0.665},
        "BM25 (Anserini flat)": {"ndcg@10": 0.679, "recall@100": 0.925},
        "BM25 (Anserini multifield)": {"ndcg@10": 0.665, "recall@100": 0.908},
        "BM25+CE (BEIR)": {"ndcg@10": 0.688},
        "bge-large-en-v1.5": {"ndcg@10": 0.746},
        "bm25s check run (not published)": {
            "ndcg@10": 0.676,
            "recall@100": 0.913,
            "map": 0.637,
            "mrr": 0.646,
        },
    },
    "cranfield": {
        "bm25s check run (not published)": {
            "ndcg@10": 0.352,
            "recall@100": 0.726,
            "map": 0.288,
            "mrr": 0.518,
        },
    },
    "cranfield/test_incl_minus1_as_5": {
        "bm25s check run (not published)": {"ndcg@10": 0.500, "map": 0.396, "mrr": 0.778},
    },
    "adi": {
        "bm25s check run (not published)": {"ndcg@10": 0.480, "recall@100": 0.910, "map": 0.408},
    },
    "xquad_en": {
        "BM25 check run (not published)": {"ndcg@10": 0.967, "recall@100": 0.997},
        # Readers given the gold paragraph (XQuAD README, English column).
        "mBERT reader, gold paragraph (XQuAD)": {"f1": 0.835, "exact_match": 0.722},
        "XLM-R Large reader, gold paragraph (XQuAD)": {"f1": 0.865, "exact_match": 0.757},
        "translate-test BERT-L, gold paragraph (XQuAD)": {"f1": 0.879, "exact_match": 0.771},
    },
}


def baselines_for(name: str, split: str = "test") -> Baselines:
    """Return the reference figures known for one dataset and qrels split.

    Args:
        name: dataset directory name, e.g. ``scifact``.
        split: qrels split; ``test`` uses the plain name as key.

    Returns:
        A copy of ``{label: {metric: value}}``; empty when none is known.
    """
    key = name if split == "test" else f"{name}/{split}"
    return {label: dict(values) for label, values in PUBLISHED_BASELINES.get(key, {}).items()}


@dataclass(frozen=True)
class BeirDataset:
    """One BEIR collection and split, ready for evaluation.

    Attributes:
        name: the dataset directory name.
        split: the qrels split loaded (``qrels/<split>.tsv``).
        corpus_path: path to ``corpus.jsonl`` (not loaded).
        queries: query id -> text, only for queries with a relevant document.
        qrels: query id -> doc id -> grade (graded; grades <= 0 are kept as judged
            non-relevant), for the same queries.
        answers: query id -> gold answer strings, where the queries file has them.
        baselines: reference figures from ``PUBLISHED_BASELINES``.
        types: query id -> its ``metadata.type`` (HotpotQA's ``bridge`` or ``comparison``),
            where the queries file has one; reports break metrics down by it.
    """

    name: str
    split: str
    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)
    baselines: Baselines = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """Load queries, qrels and answers of a BEIR directory.

    Queries come from ``queries.<split>.jsonl`` when it exists, else from
    ``queries.jsonl``. Only queries with at least one qrel of grade > 0 and a
    query text are kept; qrels of other queries are dropped.

    Args:
        directory: the dataset directory (its name becomes ``name``).
        split: qrels split, e.g. ``test``, ``train`` or ``test_raw_grades``.

    Returns:
        The dataset, with the corpus located but not read.

    Raises:
        InputError: ``directory`` is not a directory or ``split`` is empty.
        FileError: a required file is missing or a line cannot be parsed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("directory", f"{directory} is not a directory")
    if not split or "/" in split:
        raise InputError("split", f"invalid split {split!r}")

    corpus_path = directory / "corpus.jsonl"
    if not corpus_path.is_file():
        raise FileError(str(corpus_path), "missing corpus.jsonl")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileError(str(qrels_path), f"missing qrels file for split {split!r}")
    queries_path = directory / f"queries.{split}.jsonl"
    if not queries_path.is_file():
        queries_path = directory / "queries.jsonl"
    if not queries_path.is_file():
        raise FileError(str(queries_path), "missing queries.jsonl")

    texts, all_answers, all_types = _read_queries(queries_path)
    all_qrels = _read_qrels(qrels_path)
    kept = [
        qid
        for qid, rels in all_qrels.items()
        if qid in texts and any(grade > 0 for grade in rels.values())
    ]
    return BeirDataset(
        name=directory.name,
        split=split,
        corpus_path=corpus_path,
        queries={qid: texts[qid] for qid in kept},
        qrels={qid: all_qrels[qid] for qid in kept},
        answers={qid: all_answers[qid] for qid in kept if qid in all_answers},
        baselines=baselines_for(directory.name, split),
        types={qid: all_types[qid] for qid in kept if qid in all_types},
    )


def _read_queries(path: Path) -> tuple[dict[str, str], dict[str, list[str]], dict[str, str]]:
    texts: dict[str, str] = {}
    answers: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                qid = str(record["_id"])
                text = record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise FileError(str(path), f"line {number}: bad query record ({exc})") from exc
            if not isinstance(text, str):
                raise FileError(str(path), f"line {number}: query text is not a string")
            texts[qid] = text
            golds = _answers_of(record)
            if golds:
                answers[qid] = golds
            meta = record.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("type"), str) and meta["type"].strip():
                types[qid] = meta["type"].strip()
    return texts, answers, types


def _answers_of(record: dict[str, Any]) -> list[str]:
    # xquad_en keeps answers at the top level; other exports put them in metadata.
    raw = record.get("answers")
    if raw is None and isinstance(record.get("metadata"), dict):
        raw = record["metadata"].get("answers")
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    return [str(answer) for answer in raw if str(answer).strip()]


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            # BEIR qrels are tab-separated; corpus ids may hold spaces (HotpotQA's Wikipedia titles).
            raw = line.rstrip("\r\n")
            fields = [f.strip() for f in raw.split("\t")] if "\t" in raw else raw.split()
            if not any(fields):
                continue
            if number == 1 and fields[0] == "query-id":
                continue
            if len(fields) != 3:
                raise FileError(str(path), f"line {number}: expected 3 fields, got {len(fields)}")
            qid, docid, grade = fields
            try:
                qrels.setdefault(qid, {})[docid] = int(grade)
            except ValueError as exc:
                raise FileError(str(path), f"line {number}: grade {grade!r} is not an integer") from exc
    return qrels
