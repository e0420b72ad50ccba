"""The one reader of a collection: its BM25 and dense retrievers over indexes kept fresh.

A reader opens the collection's tantivy and FAISS indexes read-only, picks up other processes'
commits (:meth:`CollectionReader.refresh`), resolves filters into a :class:`Restriction` once per
query and loads chunk rows for the hits that are returned. Its two retrievers are the
:class:`~rag.interfaces.CandidateSource`\\ s that hybrid retrieval fuses; a reader over several
shards would offer the same two attributes, merging its shards' hits.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import InputError
from rag.index.collection import bytes_on_disk, collection_dir, open_lexical
from rag.index.store import CollectionInfo, Store
from rag.index.writer import open_dense
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

    def __init__(self, settings: Settings, store: Store, info: CollectionInfo, embedder: Embedder) -> None:
        self.settings = settings
        self.store = store
        self.info = info
        self.directory = collection_dir(settings, info.name)
        self.lexical = open_lexical(settings, self.directory)
        self.dense = open_dense(settings, store, info, self.directory, embedder.model_id, embedder.dim)
        self.bm25_retriever = BM25Retriever(self)
        self.dense_retriever = DenseRetriever(self, embedder)

    def refresh(self) -> None:
        """Pick up another process's commits (cheap when nothing changed)."""
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
        return bytes_on_disk(self.directory)


class _IndexRetriever:
    """What both index-backed retrievers share: the :class:`~rag.interfaces.Retriever` verb over ``hits``."""

    name = ""

    def __init__(self, reader: CollectionReader) -> None:
        self.reader = reader

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

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        """At most ``n`` BM25 hits inside ``restriction``, best first (timed as ``bm25``)."""
        clock = clock or Stopwatch()
        with clock("bm25"):
            if restriction.nothing:
                return []
            return self.reader.lexical.search(query.text, n, allow=restriction.allow, deny=restriction.deny)


class DenseRetriever(_IndexRetriever):
    """Nearest neighbours of the query's embedding in the collection's FAISS index."""

    name = "dense"

    def __init__(self, reader: CollectionReader, embedder: Embedder) -> None:
        super().__init__(reader)
        self.embedder = embedder

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        """At most ``n`` dense hits inside ``restriction`` (timed as ``embed`` and ``dense``)."""
        clock = clock or Stopwatch()
        with clock("embed"):
            vector = query.vector if query.vector is not None else self.embedder.embed_queries([query.text])[0]
        with clock("dense"):
            if restriction.nothing:
                return []
            return self.reader.dense.search(vector, n, allow=restriction.allow, deny=restriction.deny)
