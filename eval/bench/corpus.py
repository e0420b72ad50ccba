"""The benchmark corpus: the base documents, their cached vectors, and the replicated levels built from them.

The smallest level is the whole base corpus (SciFact by default), chunked by the real chunker and
embedded by the real model; vectors are cached under ``<data_dir>/bench-cache`` keyed by the
chunk text, so the corpus is embedded once per model. Larger levels replicate it: replica
``r > 0`` of a document has its words perturbed (about 10 % dropped, a few neighbours swapped) and
its vectors are the original's plus Gaussian noise (sigma 0.01 per dimension), then re-normalised.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eval.bench.common import NOISE_SIGMA
from eval.bench.plan import BenchPlan
from eval.datasets import load_beir
from rag.chunking import Chunker, embedding_text
from rag.config import Settings
from rag.embedding import Embedder
from rag.types import ChunkDraft, Document

EMBED_BATCH = 1024
"""Chunks embedded (and written to the cache) at a time."""


@dataclass(frozen=True)
class BaseDoc:
    """One base document: its id, title and chunk drafts."""

    doc_id: str
    title: str
    chunks: tuple[ChunkDraft, ...]


@dataclass
class BaseCorpus:
    """The real (or synthetic) corpus every level is made from.

    Attributes:
        docs: base documents in file order.
        vectors: one L2-normalised vector per chunk, in document order.
        queries: query id -> text (the latency and quality queries).
        query_vectors: one vector per query, in ``queries`` order.
        qrels: query id -> doc id -> grade (empty for a synthetic corpus).
        embed_seconds: time spent embedding chunks missing from the cache.
        embedded: chunks embedded in this run (the rest came from the cache).
    """

    docs: list[BaseDoc]
    vectors: np.ndarray
    queries: dict[str, str]
    query_vectors: np.ndarray
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    embed_seconds: float = 0.0
    embedded: int = 0

    @property
    def n_chunks(self) -> int:
        """Chunks in the base corpus."""
        return len(self.vectors)

    def bodies(self) -> list[str]:
        """The embedded text of every chunk, in ``vectors`` order."""
        return chunk_bodies(self.docs)


def chunk_bodies(docs: Sequence[BaseDoc]) -> list[str]:
    """The embedded text (title and chunk text) of every chunk of ``docs``, in order."""
    return [embedding_text(d.title, c.text) for d in docs for c in d.chunks]


class Replica(NamedTuple):
    """One document of a level: a base document or a perturbed copy of one.

    Attributes:
        external_id: the base id, or ``<base id>#r<replica>`` for a copy.
        doc: the base document it copies.
        texts: its chunk texts (perturbed in a copy).
        vectors: its chunk vectors, L2-normalised.
    """

    external_id: str
    doc: BaseDoc
    texts: list[str]
    vectors: np.ndarray

    def bodies(self) -> list[str]:
        """The text BM25 indexes per chunk: title and chunk text."""
        return [embedding_text(self.doc.title, t) for t in self.texts]


@dataclass
class Level:
    """The chunks of one corpus size, flattened.

    ``doc_of[i]`` is the base document id of chunk ``i`` (replicas map to their original).
    """

    docs: list[Replica]
    bodies: list[str]
    doc_of: list[str]
    vectors: np.ndarray

    @property
    def n(self) -> int:
        """Chunks in this level."""
        return len(self.bodies)


@dataclass(frozen=True)
class QuerySet:
    """The latency queries of a run and their precomputed vectors, in the same order."""

    texts: list[str]
    vectors: np.ndarray


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= 0.1] or words[:1]
    for _ in range(min(3, len(kept) // 2)):
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def iter_replicas(base: BaseCorpus, n: int, seed: int = 0) -> Iterator[Replica]:
    """Whole documents until at least ``n`` chunks (never fewer than the base corpus).

    Replica 0 is the base corpus itself; replica ``r > 0`` has perturbed words and
    noisy, re-normalised vectors.

    Yields:
        One :class:`Replica` (external id, base document, chunk texts, chunk vectors) per document.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + [len(d.chunks) for d in base.docs])
    total, r = 0, 0
    while total < n or r == 0:
        for k, doc in enumerate(base.docs):
            vecs = base.vectors[offsets[k] : offsets[k + 1]]
            texts = [c.text for c in doc.chunks]
            ext = doc.doc_id
            if r:
                ext = f"{doc.doc_id}#r{r}"
                texts = [_perturb(t, rng) for t in texts]
                vecs = vecs + nrng.normal(0.0, NOISE_SIGMA, vecs.shape).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            yield Replica(ext, doc, texts, np.ascontiguousarray(vecs, dtype=np.float32))
            total += len(texts)
            if total >= n and r:
                return
        r += 1


def make_level(base: BaseCorpus, n: int) -> Level:
    """Materialise a level of at least ``n`` chunks in memory."""
    docs = list(iter_replicas(base, n))
    bodies = [b for rep in docs for b in rep.bodies()]
    doc_of = [rep.doc.doc_id for rep in docs for _ in rep.texts]
    vectors = np.concatenate([rep.vectors for rep in docs]).astype(np.float32)
    return Level(docs, bodies, doc_of, vectors)


class VectorCache:
    """Chunk vectors keyed by the SHA-256 of model id and embedded text, stored as one ``.npz``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as data:
                self._map = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def key(model_id: str, text: str) -> str:
        """The cache key of one embedded text."""
        return hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        """The cached vector, or None."""
        return self._map.get(key)

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors and write the file (through a temporary file)."""
        self._map.update(zip(keys, np.asarray(vectors, np.float32), strict=True))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        keys_all = np.asarray(list(self._map), dtype="U64")
        np.savez(tmp, keys=keys_all, vectors=np.stack(list(self._map.values())))
        os.replace(tmp, self.path)


RawCorpus = tuple[list[dict[str, str]], dict[str, str], dict[str, dict[str, int]]]
"""BEIR-style records, query id -> text, and qrels."""


def synthetic_docs(n_docs: int, seed: int = 0) -> RawCorpus:
    """Documents of random words from a small Zipf vocabulary, and queries built from them."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(2000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    docs = []
    for i in range(n_docs):
        words = rng.choices(vocab, weights, k=rng.randint(30, 90))
        docs.append({"_id": f"d{i}", "title": f"doc {i}", "text": " ".join(words) + "."})
    queries, qrels = {}, {}
    for q in range(min(50, n_docs)):
        d = docs[rng.randrange(n_docs)]
        queries[f"q{q}"] = " ".join(rng.sample(d["text"].rstrip(".").split(), 4))
        qrels[f"q{q}"] = {d["_id"]: 1}
    return docs, queries, qrels


def read_records(path: Path) -> list[dict[str, str]]:
    """The records of a BEIR ``corpus.jsonl``, blank lines skipped."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _raw_corpus(plan: BenchPlan) -> RawCorpus:
    if plan.dataset is None:
        return synthetic_docs(plan.synthetic_docs or 200)
    data = load_beir(plan.dataset)
    return read_records(data.corpus_path), dict(data.queries), dict(data.qrels)


def load_base(settings: Settings, embedder: Embedder, plan: BenchPlan, say: Callable[[str], None]) -> BaseCorpus:
    """Chunk the corpus with the real chunker and embed what the cache lacks."""
    raw, queries, qrels = _raw_corpus(plan)
    chunker = Chunker(settings.chunking, embedder.tokenizer, embedder.max_seq_length)
    docs = []
    for rec in raw:
        doc = Document(str(rec["_id"]), "bench", rec.get("title") or "", rec.get("text") or "")
        drafts = chunker.chunk(doc)
        if drafts:
            docs.append(BaseDoc(doc.external_id, doc.title, tuple(drafts)))
    bodies = chunk_bodies(docs)
    cache = VectorCache(settings.data_dir / "bench-cache" / f"{_slug(embedder.model_id)}.npz")
    keys = [VectorCache.key(embedder.model_id, embedder.config.document_prefix + b) for b in bodies]
    missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
    seconds = 0.0
    if missing:
        say(f"embedding {len(missing)} of {len(bodies)} corpus chunks (cached for later runs)")
        t = time.perf_counter()
        for start in range(0, len(missing), EMBED_BATCH):
            part = missing[start : start + EMBED_BATCH]
            cache.put([keys[i] for i in part], embedder.embed_documents([bodies[i] for i in part]))
        seconds = time.perf_counter() - t
    vectors = np.stack([cache.get(k) for k in keys]).astype(np.float32)
    qvec = embedder.embed_queries(list(queries.values()))
    return BaseCorpus(docs, vectors, queries, qvec, qrels, seconds, len(missing))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
