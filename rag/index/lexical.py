"""Lexical BM25 index (tantivy) for one collection, keyed by chunk id.

Derived from the database like the dense index, and rebuildable from it. Each
entry is one chunk: ``chunk_id`` (i64 like the database ids; indexed, stored and fast) and ``body`` (title, a
newline, the chunk text), analysed but not stored, since the database holds the
text. Scoring is tantivy's BM25 (k1 = 1.2, b = 0.75, fixed by tantivy).

The analyser (simple tokenizer, long-token removal, lowercase, optional English
stopwords, stemmer) is registered under a name recorded in ``lexical.json`` next
to the tantivy files, so a reopened index analyses queries exactly as it
analysed documents. Opening with other analyser settings raises
:class:`IndexMismatchError`; rebuild from the database to change them.

User queries are untrusted free text and never reach tantivy's query parser:
they are analysed into terms and turned into a BooleanQuery of SHOULD term
queries. Filters (``allow`` / ``deny`` chunk ids) are clauses of the same query,
so they apply before the top-k cut.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tantivy

from rag.config import LexicalConfig
from rag.errors import IndexMismatchError, InputError
from rag.fileio import atomic_write_text
from rag.types import Hit

log = logging.getLogger(__name__)

MANIFEST_NAME = "lexical.json"
FORMAT_VERSION = 1
ID_FIELD = "chunk_id"
BODY_FIELD = "body"
WRITER_HEAP_BYTES = 64_000_000
WRITER_THREADS = 2
# tantivy's en_stem drops tokens this long or longer; we do the same.
MAX_TOKEN_CHARS = 40
# Builtin analyser used when this tantivy build cannot register custom ones.
FALLBACK_ANALYZER = "en_stem"
_WORD = re.compile(r"[^\W_]+")


def _analyzer_name(config: LexicalConfig) -> str:
    return f"rag_{config.stemmer or 'nostem'}{'_stop' if config.stopwords else ''}"


def _build_analyzer(config: LexicalConfig) -> Any | None:
    """The custom text analyser, or None when tantivy lacks TextAnalyzerBuilder."""
    if not hasattr(tantivy, "TextAnalyzerBuilder"):
        return None
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
    )
    if config.stopwords:
        builder = builder.filter(tantivy.Filter.stopword("english"))
    if config.stemmer:
        builder = builder.filter(tantivy.Filter.stemmer(config.stemmer))
    return builder.build()


def query_weights(config: LexicalConfig) -> Callable[[str], dict[str, float]]:
    """A query's term weights under the analyser of indexes built with ``config``.

    A sharded search analyses the query once for every shard with it.
    """
    analyzer = _build_analyzer(config)

    def weights(text: str) -> dict[str, float]:
        return {t: float(n) for t, n in Counter(_analyze(analyzer, text)).items()}

    return weights


def _analyze(analyzer: Any | None, text: str) -> list[str]:
    if analyzer is not None:
        return list(analyzer.analyze(text))
    return [w.lower() for w in _WORD.findall(text) if len(w) < MAX_TOKEN_CHARS]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


@dataclass(frozen=True)
class ShardStats:
    """One shard's BM25 statistics: entries (N), total length, and documents per query term."""

    docs: int
    tokens: float
    doc_freq: dict[str, int]


@dataclass(frozen=True)
class TermHit:
    """A hit of one shard: its chunk, field length, and each matched term's frequency."""

    chunk_id: int
    length: float
    freqs: dict[str, float]


@dataclass(frozen=True)
class _Explained:
    term: str
    freq: float
    length: float
    docs: int
    avgdl: float


_EXPLAINED_VALUE = re.compile(r'"value": ([-+0-9.eE]+),\s*"description": "(N|freq|dl|avgdl), ')
_EXPLAINED_TERM = re.compile(r'type=Str, \\"((?:[^"\\]|\\.)*)\\"\)')


def _explained_terms(explanation: str) -> list[_Explained]:
    """The term queries in a tantivy explanation (its JSON), with what their BM25 was computed from.

    Read with two patterns rather than parsed, since this runs for every candidate of a sharded
    search and ``json.loads`` costs three times the explanation itself.
    """
    out: list[_Explained] = []
    for part in explanation.split('"description": "TermQuery')[1:]:
        values = {name: float(v) for v, name in _EXPLAINED_VALUE.findall(part)}
        term = _EXPLAINED_TERM.search(part)
        if term and len(values) == 4:
            out.append(_Explained(json.loads(f'"{term.group(1)}"'), values["freq"], values["dl"],
                                  int(values["N"]), values["avgdl"]))
    return out


def collection_bm25(
    hits: Iterable[TermHit], weights: dict[str, float], stats: Sequence[ShardStats], k1: float = 1.2, b: float = 0.75
) -> list[Hit]:
    """BM25 of candidates from several shards with the collection's statistics, best first.

    N and the lengths are summed over ``stats`` (one per shard) and so is each term's document
    frequency, so a score is what the candidate would get in one index holding every shard.
    Computed in float32, in tantivy's order, so that the ranking matches one index's.
    """
    f32 = np.float32
    docs = sum(s.docs for s in stats)
    if not docs:
        return []
    avgdl = f32(sum(s.tokens for s in stats) / docs)
    idf = {}
    for term in weights:
        n = sum(s.doc_freq.get(term, 0) for s in stats)
        idf[term] = f32(np.log1p(f32((f32(docs - n) + f32(0.5)) / (f32(n) + f32(0.5)))))
    out = []
    for h in hits:
        norm = f32(k1) * (f32(1.0) - f32(b) + f32(b) * f32(h.length) / avgdl)
        score = f32(0.0)
        for term, freq in h.freqs.items():
            weight = idf[term] * f32(1.0 + k1) * f32(weights.get(term, 1.0))
            score += weight * (f32(freq) / (f32(freq) + norm))
        out.append(Hit(h.chunk_id, float(score)))
    return sorted(out, key=lambda h: (-h.score, h.chunk_id))


# Relative slack on a shard's score bounds for float32 rounding (tantivy scores in float32).
_BOUND_SLACK = 1e-5


def score_bounds(shard: ShardStats, total: Sequence[ShardStats]) -> tuple[float, float]:
    """How far the collection's BM25 of a shard's hit can be from its score in the shard.

    Searched with :func:`shard_weights`, a shard's score differs from the collection's only by
    the length normalisation, which uses the shard's average length instead of the
    collection's. Each term's part moves by a factor between 1 and (collection average / shard
    average), so the whole score does too: ``(low, high)`` multiply the shard's score.
    """
    docs = sum(s.docs for s in total)
    if not docs or not shard.docs or not shard.tokens:
        return 1.0 - _BOUND_SLACK, 1.0 + _BOUND_SLACK
    ratio = (sum(s.tokens for s in total) / docs) / (shard.tokens / shard.docs)
    return min(1.0, ratio) * (1.0 - _BOUND_SLACK), max(1.0, ratio) * (1.0 + _BOUND_SLACK)


def uncertain(intervals: Sequence[tuple[float, float]]) -> list[bool]:
    """For each ``(low, high)`` interval, whether it overlaps another one (their order is in doubt)."""
    n = len(intervals)
    order = sorted(range(n), key=lambda i: -intervals[i][1])
    out = [False] * n
    prefix_low = float("inf")
    for i in order:
        if intervals[i][1] > prefix_low:
            out[i] = True
        prefix_low = min(prefix_low, intervals[i][0])
    suffix_high = float("-inf")
    for i in reversed(order):
        if intervals[i][0] < suffix_high:
            out[i] = True
        suffix_high = max(suffix_high, intervals[i][1])
    return out


def shard_weights(weights: dict[str, float], shard: ShardStats, total: Sequence[ShardStats]) -> dict[str, float]:
    """Query weights for one shard that make its idf the collection's, so it picks the right candidates."""
    docs = sum(s.docs for s in total)
    out = {}
    for term, w in weights.items():
        n = sum(s.doc_freq.get(term, 0) for s in total)
        local = shard.doc_freq.get(term, 0)
        if not local:
            continue
        g = float(np.log1p((docs - n + 0.5) / (n + 0.5)))
        mine = float(np.log1p((shard.docs - local + 0.5) / (local + 0.5)))
        out[term] = w * (g / mine if mine > 0 else 1.0)
    return out


def _as_ids(ids: Any, name: str) -> list[int]:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InputError(name, f"expected a 1-D array of chunk ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(name, f"expected integer chunk ids, got dtype {arr.dtype}")
    return np.unique(arr).astype(np.int64).tolist()


class LexicalIndex:
    """BM25 index of one collection's chunks. Build with :meth:`open`.

    Readers never take tantivy's writer lock: the writer is created on the
    first :meth:`add` or :meth:`delete`. The one writer process (the caller holds
    the collection lock) commits; readers call :meth:`reload`.

    Example:
        In the service only :class:`~rag.index.writer.CollectionWriter` writes a collection's
        index; this one lives in a scratch directory.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from rag.config import LexicalConfig
        >>> index = LexicalIndex.open(Path(tempfile.mkdtemp()), LexicalConfig())
        >>> index.add([(1, "Travel is approved by your manager."), (2, "Parking permits are issued yearly.")])
        2
        >>> index.commit()
        >>> [h.chunk_id for h in index.search("who approves travel", k=5)]
        [1]
        >>> index.analyze("Who approves travel?")
        ['who', 'approv', 'travel']
        >>> index.close()
    """

    def __init__(self, directory: Path, index: tantivy.Index, analyzer: Any | None, analyzer_name: str) -> None:
        """Prefer :meth:`open`."""
        self.directory = directory
        self._index = index
        self._analyzer = analyzer
        self.analyzer_name = analyzer_name
        self._writer: tantivy.IndexWriter | None = None
        self._schema = index.schema
        self._length_cache: tuple[tuple[int, int], tuple[int, float]] | None = None

    @classmethod
    def open(cls, directory: Path, config: LexicalConfig) -> LexicalIndex:
        """Open the index in ``directory``, creating it when absent.

        Args:
            directory: the collection's lexical directory (created if missing).
            config: analyser settings.

        Returns:
            The index.

        Raises:
            IndexMismatchError: the index was built with other analyser settings.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        analyzer = _build_analyzer(config)
        name = _analyzer_name(config) if analyzer is not None else FALLBACK_ANALYZER
        wanted = {"stopwords": config.stopwords, "stemmer": config.stemmer, "analyzer": name}
        manifest_path = directory / MANIFEST_NAME
        if manifest_path.exists() and tantivy.Index.exists(str(directory)):
            manifest = json.loads(manifest_path.read_text())
            for key, ours in wanted.items():
                if manifest.get(key) != ours:
                    raise IndexMismatchError(
                        f"lexical index in {directory} was built with {key}={manifest.get(key)!r}, "
                        f"but {key}={ours!r} was requested; rebuild it to change the analyser"
                    )
            index = tantivy.Index.open(str(directory))
        else:
            builder = tantivy.SchemaBuilder()
            builder.add_integer_field(ID_FIELD, stored=True, indexed=True, fast=True)
            builder.add_text_field(BODY_FIELD, stored=False, tokenizer_name=name, index_option="freq")
            index = tantivy.Index(builder.build(), path=str(directory), reuse=False)
            _write_json(manifest_path, {"format": FORMAT_VERSION, **wanted})
        if analyzer is not None:
            index.register_tokenizer(name, analyzer)
        return cls(directory, index, analyzer, name)

    # ------------------------------------------------------------------ writing

    def _get_writer(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self._index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=WRITER_THREADS)
        return self._writer

    def add(self, items: Iterable[tuple[int, str]]) -> int:
        """Add (or replace) chunks; visible after :meth:`commit`.

        Args:
            items: ``(chunk_id, body)`` pairs, body being title + newline + chunk text.

        Returns:
            Number of chunks added.

        """
        writer = self._get_writer()
        n = 0
        for chunk_id, body in items:
            cid = int(chunk_id)
            # Upsert: a re-added chunk replaces the old entry instead of duplicating it.
            writer.delete_documents_by_term(ID_FIELD, cid)
            doc = tantivy.Document()
            doc.add_integer(ID_FIELD, cid)
            doc.add_text(BODY_FIELD, body)
            writer.add_document(doc)
            n += 1
        return n

    def delete(self, chunk_ids: Iterable[int]) -> None:
        """Delete chunks by id; visible after :meth:`commit`."""
        writer = self._get_writer()
        for cid in _as_ids(np.fromiter((int(c) for c in chunk_ids), dtype=np.int64), "chunk_ids"):
            writer.delete_documents_by_term(ID_FIELD, cid)

    def commit(self) -> None:
        """Make pending adds and deletes durable and visible to this instance."""
        if self._writer is None:
            return
        self._writer.commit()
        self._index.reload()

    def reload(self) -> None:
        """Let this instance's searches see the latest commit (for reader processes)."""
        self._index.reload()

    def close(self) -> None:
        """Release the writer (and its lock), discarding uncommitted changes.

        Waits for the segment merges that commits started, then reloads, so that this
        instance searches the merged segments rather than the ones it saw at its last commit.
        """
        if self._writer is not None:
            self._writer.rollback()
            self._writer.wait_merging_threads()
            self._writer = None
            self._index.reload()

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        """Number of live (committed, undeleted) chunks."""
        return int(self._index.searcher().num_docs)

    def ids(self) -> np.ndarray:
        """All live chunk ids, sorted ascending (int64), for reconciliation with the database."""
        searcher = self._index.searcher()
        n = int(searcher.num_docs)
        if not n:
            return np.empty(0, np.int64)
        hits = searcher.search(
            tantivy.Query.all_query(), limit=n, count=False, order_by_field=ID_FIELD, order=tantivy.Order.Asc
        ).hits
        return np.fromiter((key for key, _ in hits), dtype=np.int64, count=len(hits))

    def analyze(self, text: str) -> list[str]:
        """Terms of ``text`` under the index's analyser (what queries are matched with)."""
        return _analyze(self._analyzer, text)

    def term_weights(self, text: str) -> dict[str, float]:
        """The query's terms, each weighing its count in the query.

        That is BM25's query-term frequency, as in Lucene and bm25s: long, wordy queries repeat
        the words that matter.
        """
        return {t: float(n) for t, n in Counter(self.analyze(text)).items()}

    def _text_query(self, text: str) -> tantivy.Query | None:
        return self._weighted_query(self.term_weights(text))

    def _weighted_query(self, weights: dict[str, float]) -> tantivy.Query | None:
        if not weights:
            return None
        if self._analyzer is None:
            # Terms are alphanumeric and lower-case: no query-parser syntax is left in them.
            text = " ".join(t if w == 1 else f"{t}^{w:g}" for t, w in weights.items())
            return self._index.parse_query(text, [BODY_FIELD])
        clauses = []
        for term, w in weights.items():
            q = tantivy.Query.term_query(self._schema, BODY_FIELD, term)
            clauses.append((tantivy.Occur.Should, q if w == 1 else tantivy.Query.boost_query(q, float(w))))
        return tantivy.Query.boolean_query(clauses)

    def search(
        self,
        query: str,
        k: int,
        allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> list[Hit]:
        """BM25 top-k chunks for a free-text query, filters applied inside the search.

        A term that occurs n times in the query weighs n times (query-term frequency).

        Args:
            query: untrusted free text; no query syntax is interpreted.
            k: number of hits.
            allow: only these chunk ids may be returned (None: all).
            deny: these chunk ids are never returned (tombstones).

        Returns:
            Hits sorted by BM25 score descending, ties by chunk id ascending;
            empty when the query has no terms left after analysis.

        Raises:
            InputError: ``k`` < 1, or bad id arrays.
        """
        if k < 1:
            raise InputError("k", f"must be at least 1, got {k}")
        final = self._filtered(self._text_query(query), allow, deny)
        if final is None:
            return []
        return self._top_k(self._index.searcher(), final, k)

    def _filtered(
        self, text_query: tantivy.Query | None, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> tantivy.Query | None:
        """``text_query`` inside the filters, or None when nothing can match."""
        if text_query is None:
            return None
        clauses = [(tantivy.Occur.Must, text_query)]
        if allow is not None:
            allowed = _as_ids(allow, "allow")
            if not allowed:
                return None
            id_set = tantivy.Query.term_set_query(self._schema, ID_FIELD, allowed)
            # Score 0 so the filter does not shift BM25 scores.
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(id_set, 0.0)))
        if deny is not None:
            denied = _as_ids(deny, "deny")
            if denied:
                clauses.append((tantivy.Occur.MustNot, tantivy.Query.term_set_query(self._schema, ID_FIELD, denied)))
        return clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)

    # ------------------------------------------------------------ one shard of several

    def shard_stats(self, terms: Iterable[str]) -> ShardStats:
        """This index's BM25 statistics for ``terms``, to be summed with the other shards'."""
        searcher = self._index.searcher()
        freqs = {t: int(searcher.doc_freq(BODY_FIELD, t)) for t in terms}
        docs, avgdl = self._length_stats(searcher)
        return ShardStats(docs, docs * avgdl, freqs)

    def _length_stats(self, searcher: tantivy.Searcher) -> tuple[int, float]:
        """BM25's N and average length as tantivy scores with them (deleted entries count until merged).

        tantivy does not expose them directly, so they are read from the explanation of one
        term query over the index's most frequent term (cached until the index changes).
        """
        key = (int(searcher.num_docs), int(searcher.num_segments))
        if self._length_cache is not None and self._length_cache[0] == key:
            return self._length_cache[1]
        stats = (0, 0.0)
        top = searcher.terms_with_prefix(BODY_FIELD, "", limit=1)
        if top:
            q = tantivy.Query.term_query(self._schema, BODY_FIELD, top[0][0])
            hits = searcher.search(q, limit=1, count=False).hits
            if hits:
                parts = _explained_terms(q.explain(searcher, hits[0][1]).to_json())
                if parts:
                    stats = (parts[0].docs, parts[0].avgdl)
        self._length_cache = (key, stats)
        return stats

    def search_weighted(
        self, weights: dict[str, float], k: int, allow: np.ndarray | None = None, deny: np.ndarray | None = None
    ) -> list[Hit]:
        """The top ``k`` by BM25 with ``weights`` as the terms' query weights (ties as :meth:`search`).

        A sharded collection searches each shard with weights that give its terms the
        collection's idf (:func:`shard_weights`).
        """
        final = self._filtered(self._weighted_query(weights), allow, deny)
        if final is None:
            return []
        return self._top_k(self._index.searcher(), final, k)

    def explain(self, weights: dict[str, float], chunk_ids: Sequence[int]) -> list[TermHit]:
        """For these chunks, each matched term's frequency and the field length BM25 used.

        :func:`collection_bm25` scores them again with the collection's statistics.
        """
        text = self._weighted_query(weights)
        final = self._filtered(text, np.asarray(list(chunk_ids), np.int64), None)
        if text is None or final is None:
            return []
        searcher = self._index.searcher()
        hits = searcher.search(final, limit=max(1, len(chunk_ids)), count=False).hits
        ids = searcher.fast_field_values(ID_FIELD, [addr for _, addr in hits])
        out = []
        for (_score, addr), cid in zip(hits, ids, strict=True):
            # The text query alone: explaining the id filter too would build its set again per chunk.
            parts = _explained_terms(text.explain(searcher, addr).to_json())
            if parts:
                freqs = {p.term: p.freq for p in parts}
                out.append(TermHit(int(cid), parts[0].length, freqs))
        return out

    def _top_k(self, searcher: tantivy.Searcher, query: tantivy.Query, k: int) -> list[Hit]:
        # tantivy breaks score ties by its internal doc address; fetch past the k-th
        # score's ties so the chunk-id tie-break is exact. Near-duplicate chunks tie often
        # (3 searches in 4 at 1M replicated SciFact chunks tied at k = 100), and asking for
        # 2k + 1 hits costs about 5% more than k, so one search almost always suffices.
        limit = 2 * k + 1
        while True:
            hits = searcher.search(query, limit=limit, count=False).hits
            if len(hits) < limit or hits[-1][0] < hits[k - 1][0]:
                break
            limit *= 2
        ids = searcher.fast_field_values(ID_FIELD, [addr for _, addr in hits])
        # tuples sort in C; only the k kept become Hit objects
        ranked = sorted((-float(score), int(cid)) for (score, _), cid in zip(hits, ids, strict=True))
        return [Hit(cid, -neg) for neg, cid in ranked[:k]]
