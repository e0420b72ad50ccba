"""The one reader of a collection: its BM25 and dense retrievers over indexes kept fresh.

A reader opens the collection's tantivy and FAISS indexes read-only, picks up other processes'
commits (:meth:`CollectionReader.refresh`), resolves filters into a :class:`Restriction` once per
query and loads chunk rows for the hits that are returned. Its two retrievers are the
:class:`~rag.interfaces.CandidateSource`\\ s that hybrid retrieval fuses.

A sharded collection's reader asks every shard at once through a fan-out
(:mod:`rag.index.fanout`: threads here, Ray actors with ``--engine ray``) and merges: dense hits
by score, BM25 candidates scored again with the collection's statistics (document frequencies,
entries and lengths summed over the shards), so that both rank as one index would.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import InputError
from rag.index.collection import bytes_on_disk, collection_dir
from rag.index.fanout import Fanout, ShardSearcher, ThreadFanout, merge_hits
from rag.index.lexical import collection_bm25, query_weights, score_bounds, shard_weights, uncertain
from rag.index.shards import shard_places
from rag.index.store import CollectionInfo, Store
from rag.types import Filters, FusedHit, Hit, Query, Restriction, ScoredChunk, StageScores, Stopwatch


class CollectionReader:
    """Searches one collection.

    Args:
        settings: service settings.
        store: the database.
        info: the collection.
        embedder: the query embedder (same model as the collection's FAISS index).

    Example:
        >>> reader = CollectionReader(settings, store, store.collection("handbook"), embedder)  # doctest: +SKIP
        >>> [s.chunk.title for s in reader.bm25_retriever.retrieve("parking", None, 3)]  # doctest: +SKIP
    """

    def __init__(
        self, settings: Settings, store: Store, info: CollectionInfo, embedder: Embedder, fanout: Fanout | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.info = info
        self.directory = collection_dir(settings, info.name)
        places = shard_places(settings, info)
        if fanout is None:
            searchers = [ShardSearcher(settings, store, info, p, embedder.model_id, embedder.dim) for p in places]
            fanout = ThreadFanout(searchers) if len(searchers) > 1 else None
            first = searchers[0]
            self.lexical, self.dense = first.lexical, first.dense
        # None: one local shard, searched directly as before sharding existed.
        self.fanout = fanout
        self.bm25_retriever = BM25Retriever(self)
        self.dense_retriever = DenseRetriever(self, embedder)

    @property
    def sharded(self) -> bool:
        """Whether searches fan out over several shards (or remote ones)."""
        return self.fanout is not None

    def refresh(self) -> None:
        """Pick up another process's commits (cheap when nothing changed)."""
        if self.fanout is not None:
            self.fanout.refresh()
            return
        self.dense.reload_if_changed()
        self.lexical.reload()

    def restriction(self, filters: Filters | None) -> Restriction:
        """What a search may return: the chunks passing ``filters``, or all but hidden ones.

        Raises:
            InputError: a filter the database cannot apply, naming ``filters``.
        """
        if filters is not None and not filters.empty:
            return Restriction(allow=self.store.allowed_chunk_ids(self.info.id, filters))
        deny = self.store.hidden_chunk_ids(self.info.id)
        return Restriction(deny=deny if len(deny) else None)

    def hydrate(self, hits: Sequence[FusedHit]) -> list[ScoredChunk]:
        """The hits' chunks in the hits' order, leaving out any whose document is no longer active."""
        rows = self.store.hydrate(self.info.id, (h.chunk_id for h in hits))
        return [ScoredChunk(rows[h.chunk_id], h.score, h.scores) for h in hits if h.chunk_id in rows]

    def bytes_on_disk(self) -> int:
        """Size of the collection's index files."""
        return self.fanout.bytes_on_disk() if self.fanout is not None else bytes_on_disk(self.directory)


class ReaderCache:
    """The open readers of a process, one per collection, at most ``max_readers`` of them.

    A reader holds its collection's FAISS index in memory, so the cache must not outlive the
    collections: a reader whose collection was dropped (or dropped and made again under the same
    name) is closed the next time any reader is opened, and :meth:`discard` closes one at once.
    Beyond ``max_readers`` the least recently used reader is closed; searching it again reopens it.

    Args:
        open_reader: opens a reader for a collection.
        live: the ids of the collections that exist now (asked only when a reader is opened).
        max_readers: how many readers stay open.

    Raises:
        ValueError: ``max_readers`` below 1.
    """

    def __init__(
        self, open_reader: Callable[[CollectionInfo], CollectionReader], live: Callable[[], set[int]], max_readers: int = 64
    ) -> None:
        if max_readers < 1:
            raise ValueError(f"max_readers must be at least 1, got {max_readers}")
        self._open, self._live, self.max_readers = open_reader, live, max_readers
        self._readers: OrderedDict[str, CollectionReader] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._readers)

    def get(self, info: CollectionInfo) -> CollectionReader:
        """The reader of ``info``, refreshed; opened when there is none or its collection changed."""
        with self._lock:
            reader = self._readers.get(info.name)
            if reader is not None and reader.info.id == info.id:
                self._readers.move_to_end(info.name)
                reader.refresh()
                return reader
            live = self._live()
            for name in [n for n, r in self._readers.items() if r.info.id not in live or n == info.name]:
                del self._readers[name]
            reader = self._readers[info.name] = self._open(info)
            while len(self._readers) > self.max_readers:
                self._readers.popitem(last=False)
            return reader

    def discard(self, name: str) -> None:
        """Close the reader of collection ``name``, if one is open (its collection is gone)."""
        with self._lock:
            self._readers.pop(name, None)


class _IndexRetriever:
    """What both index-backed retrievers share: the :class:`~rag.interfaces.Retriever` verb over ``hits``."""

    name = ""

    def __init__(self, reader: CollectionReader) -> None:
        self.reader = reader

    def prepare(self, query: Query) -> Query:
        """``query`` as it is: nothing to start ahead."""
        return query

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        raise NotImplementedError

    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None) -> list[ScoredChunk]:
        """This retriever's ranking alone, hydrated.

        Raises:
            InputError: an empty query, a ``top_k`` below 1, or a filter the database cannot apply.
        """
        if not query or not query.strip():
            raise InputError("query", "must not be empty")
        k = top_k or self.reader.settings.retrieval.top_k
        if k < 1:
            raise InputError("top_k", "must be at least 1")
        hits = self.hits(Query(query), self.reader.restriction(filters), k)
        return self.reader.hydrate([FusedHit(h.chunk_id, h.score, StageScores(**{self.name: h.score})) for h in hits])


class BM25Retriever(_IndexRetriever):
    """BM25 over the collection's tantivy index."""

    name = "bm25"

    def __init__(self, reader: CollectionReader) -> None:
        super().__init__(reader)
        self._weights = query_weights(reader.settings.lexical)

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        """At most ``n`` BM25 hits inside ``restriction``, best first (timed as ``bm25``)."""
        clock = clock or Stopwatch()
        with clock("bm25"):
            if restriction.nothing:
                return []
            fanout = self.reader.fanout
            if fanout is None:
                return self.reader.lexical.search(query.text, n, allow=restriction.allow, deny=restriction.deny)
            weights = self._weights(query.text)
            if not weights:
                return []
            return self._sharded(fanout, weights, restriction, n)

    def _sharded(self, fanout: Fanout, weights: dict[str, float], restriction: Restriction, n: int) -> list[Hit]:
        """BM25 over every shard as one index would score it (see :func:`~rag.index.lexical.score_bounds`).

        Each shard is searched with the collection's idf; a hit's collection-wide score then lies
        within known bounds of its shard score. Only the hits whose bounds overlap another's, and
        so whose order is in doubt, are scored exactly with the collection's statistics; a shard
        that may hold more hits above the cut is searched deeper.
        """
        stats = fanout.bm25_stats(list(weights))
        if not sum(s.docs for s in stats):
            return []
        per_shard = [shard_weights(weights, s, stats) for s in stats]
        bounds = [score_bounds(s, stats) for s in stats]
        limit = n
        while True:
            found = fanout.bm25_candidates(per_shard, limit, restriction.allow, restriction.deny)
            cands = [(k, h) for k, hits in enumerate(found) for h in hits]
            intervals = [(h.score * bounds[k][0], h.score * bounds[k][1]) for k, h in cands]
            lows = sorted((lo for lo, _hi in intervals), reverse=True)
            cut = lows[n - 1] if len(lows) >= n else float("-inf")
            # A shard that filled its limit may hold more hits: its next is at most its last one's bound.
            unseen = max((hits[-1].score * bounds[k][1] for k, hits in enumerate(found) if len(hits) >= limit),
                         default=float("-inf"))
            if unseen < cut or limit >= 8 * n:
                break
            limit *= 2
        keep = [i for i, (_lo, hi) in enumerate(intervals) if hi >= cut]
        doubt = uncertain([intervals[i] for i in keep])
        ask: list[list[int]] = [[] for _ in stats]
        for i, unsure in zip(keep, doubt, strict=True):
            if unsure:
                k, h = cands[i]
                ask[k].append(h.chunk_id)
        exact: dict[int, float] = {}
        if any(ask):
            explained = fanout.bm25_explain(per_shard, ask)
            exact = {h.chunk_id: h.score for h in collection_bm25([t for ts in explained for t in ts], weights, stats)}
        hits = [Hit(cands[i][1].chunk_id, exact.get(cands[i][1].chunk_id, cands[i][1].score)) for i in keep]
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits[:n]


class DenseRetriever(_IndexRetriever):
    """Nearest neighbours of the query's embedding in the collection's FAISS index."""

    name = "dense"

    def __init__(self, reader: CollectionReader, embedder: Embedder) -> None:
        super().__init__(reader)
        self.embedder = embedder

    def prepare(self, query: Query) -> Query:
        """``query`` with its embedding under way (a future) when it has no vector yet."""
        if query.vector is not None:
            return query
        return Query(query.text, self.embedder.embed_query_later(query.text))

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        """At most ``n`` dense hits inside ``restriction`` (timed as ``embed``, the wait for the vector, and ``dense``)."""
        clock = clock or Stopwatch()
        with clock("embed"):
            vector = query.vector
            if isinstance(vector, Future):
                vector = vector.result()
            elif vector is None:
                vector = self.embedder.embed_query(query.text)
        with clock("dense"):
            if restriction.nothing:
                return []
            fanout = self.reader.fanout
            if fanout is None:
                return self.reader.dense.search(vector, n, allow=restriction.allow, deny=restriction.deny)
            return merge_hits(fanout.dense_hits(vector, n, restriction.allow, restriction.deny), n)
