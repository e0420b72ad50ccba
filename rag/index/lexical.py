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
from collections.abc import Iterable
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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


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
        if self._analyzer is not None:
            return list(self._analyzer.analyze(text))
        return [w.lower() for w in _WORD.findall(text) if len(w) < MAX_TOKEN_CHARS]

    def _text_query(self, text: str) -> tantivy.Query | None:
        # A term's weight is its count in the query (BM25's query-term frequency, as in
        # Lucene and bm25s): long, wordy queries repeat the words that matter.
        counts = Counter(self.analyze(text))
        if not counts:
            return None
        if self._analyzer is None:
            # Terms are alphanumeric and lower-case: no query-parser syntax is left in them.
            return self._index.parse_query(" ".join(t if n == 1 else f"{t}^{n}" for t, n in counts.items()), [BODY_FIELD])
        clauses = []
        for term, n in counts.items():
            q = tantivy.Query.term_query(self._schema, BODY_FIELD, term)
            clauses.append((tantivy.Occur.Should, q if n == 1 else tantivy.Query.boost_query(q, float(n))))
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
        text_query = self._text_query(query)
        if text_query is None:
            return []
        clauses = [(tantivy.Occur.Must, text_query)]
        if allow is not None:
            allowed = _as_ids(allow, "allow")
            if not allowed:
                return []
            id_set = tantivy.Query.term_set_query(self._schema, ID_FIELD, allowed)
            # Score 0 so the filter does not shift BM25 scores.
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(id_set, 0.0)))
        if deny is not None:
            denied = _as_ids(deny, "deny")
            if denied:
                clauses.append((tantivy.Occur.MustNot, tantivy.Query.term_set_query(self._schema, ID_FIELD, denied)))
        final = clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)
        searcher = self._index.searcher()
        return self._top_k(searcher, final, k)

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
        out = sorted((Hit(int(cid), float(score)) for (score, _), cid in zip(hits, ids, strict=True)),
                     key=lambda h: (-h.score, h.chunk_id))
        return out[:k]
