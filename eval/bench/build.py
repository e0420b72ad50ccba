"""Building what a level is measured on: a real collection, or bare index files.

A database level is written by :class:`rag.index.writer.CollectionWriter`, the code ingestion
uses (stage rows, build both indexes, persist, activate). An index-only level is a measurement of
raw index build time: tantivy and FAISS files in a scratch directory, with no database.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from eval.bench.corpus import BaseCorpus, Level, iter_replicas
from rag.config import DenseConfig, Settings
from rag.index.dense import DenseIndex
from rag.index.lexical import LexicalIndex
from rag.index.store import Store
from rag.index.writer import CollectionWriter, DocumentVersion
from rag.types import Document


def _seconds(**stages: float) -> dict[str, float]:
    return {k: round(v, 2) for k, v in stages.items()}


def level_versions(level: Level) -> list[DocumentVersion]:
    """One new document version per document of the level; the hash is of the external id."""
    versions = []
    for rep in level.docs:
        drafts = [replace(c, text=t) for c, t in zip(rep.doc.chunks, rep.texts, strict=True)]
        sha = hashlib.sha256(rep.external_id.encode()).hexdigest()
        document = Document(rep.external_id, f"bench/{rep.external_id}", rep.doc.title, "")
        versions.append(DocumentVersion(document, sha, drafts, rep.vectors))
    return versions


def build_collection(settings: Settings, store: Store, name: str, level: Level, model_id: str, dim: int) -> dict[str, float]:
    """Write a level into a new collection the way ingestion does.

    Args:
        settings: the level's settings (its own data dir).
        store: the level's database.
        name: the collection to create.
        level: the chunks, texts and vectors to write.
        model_id: the embedding model the vectors came from.
        dim: their dimension.

    Returns:
        Seconds per write step: ``db`` (staging rows), ``dense``, ``lexical``, and ``persist``
        (index files made durable and documents activated; also counted in the other three by part).
    """
    store.ensure_collection(name)
    store.update_collection_settings(name, {"embedding_model": model_id, "dim": dim})
    info = store.collection(name)
    with CollectionWriter(settings, store, info, model_id, dim) as writer:
        report = writer.load(level_versions(level))
    return _seconds(db=report.db_s, dense=report.dense_s, lexical=report.lexical_s, persist=report.persist_s)


@dataclass
class IndexOnlyBuild:
    """Index files of an index-only level, and the vectors in them.

    Attributes:
        dense: the FAISS index (chunk ids are positions in ``vectors``).
        lexical: the tantivy index.
        vectors: every chunk vector, for exact ground truth.
        build_s: seconds to build ``lexical`` and ``dense``.
    """

    dense: DenseIndex
    lexical: LexicalIndex
    vectors: np.ndarray
    build_s: dict[str, float]


def build_index_only(directory: Path, settings: Settings, dense_cfg: DenseConfig, base: BaseCorpus, n: int,
                     model_id: str, dim: int) -> IndexOnlyBuild:
    """Build tantivy and FAISS over at least ``n`` replicated chunks in ``directory``, with no database."""
    lexical = LexicalIndex.open(directory / "lexical", settings.lexical)
    dense = DenseIndex.open(directory / "dense", dense_cfg, model_id, dim)
    vec_parts: list[np.ndarray] = []
    t = time.perf_counter()
    cid = 0
    for rep in iter_replicas(base, n):
        lexical.add(enumerate(rep.bodies(), start=cid))
        vec_parts.append(rep.vectors)
        cid += len(rep.texts)
    lexical.commit()
    lex_s = time.perf_counter() - t
    vectors = np.concatenate(vec_parts)
    del vec_parts
    t = time.perf_counter()
    dense.rebuild(np.arange(len(vectors), dtype=np.int64), vectors)
    dense_s = time.perf_counter() - t
    dense.save()
    lexical.close()
    return IndexOnlyBuild(dense, lexical, vectors, _seconds(lexical=lex_s, dense=dense_s))
