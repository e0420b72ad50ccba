"""Searching the shards of a collection side by side.

A :class:`ShardSearcher` searches one shard's two indexes. A fan-out runs one call on every
shard at once and returns their answers in shard order: :class:`ThreadFanout` with threads in
this process (FAISS and tantivy release the GIL while they search), or
:class:`rag.index.ray_shards.RayFanout` with one Ray actor per shard. The reader merges what
comes back (:mod:`rag.index.reader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from rag.config import Settings
from rag.index.collection import bytes_on_disk, open_lexical
from rag.index.shards import ShardPlace
from rag.index.store import CollectionInfo, Store
from rag.types import Hit

if TYPE_CHECKING:
    from rag.index.dense import DenseIndex
    from rag.index.lexical import LexicalIndex, ShardStats, TermHit

T = TypeVar("T")


class ShardSearcher:
    """One shard's FAISS and tantivy indexes, opened read-only and kept fresh.

    Args:
        settings: service settings.
        store: the database (a damaged FAISS file is rebuilt from it).
        info: the collection.
        place: the shard.
        model_id: the embedding model, checked against the FAISS manifest.
        dim: its dimension.
    """

    def __init__(
        self, settings: Settings, store: Store, info: CollectionInfo, place: ShardPlace, model_id: str, dim: int
    ) -> None:
        from rag.index.writer import open_dense

        self.place = place
        self.lexical: LexicalIndex = open_lexical(settings, place.directory)
        self.dense: DenseIndex = open_dense(settings, store, info, place, model_id, dim)

    def refresh(self) -> None:
        """Pick up the writer's commits (cheap when nothing changed)."""
        self.dense.reload_if_changed()
        self.lexical.reload()

    def dense_hits(self, vector: np.ndarray, n: int, allow: np.ndarray | None, deny: np.ndarray | None) -> list[Hit]:
        """Nearest neighbours in this shard."""
        return self.dense.search(vector, n, allow=allow, deny=deny)

    def bm25_stats(self, terms: Sequence[str]) -> ShardStats:
        """This shard's BM25 statistics for the query's terms."""
        return self.lexical.shard_stats(terms)

    def bm25_candidates(
        self, weights: dict[str, float], n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[Hit]:
        """This shard's BM25 top ``n`` with the collection's idf (``weights`` from :func:`shard_weights`)."""
        return self.lexical.search_weighted(weights, n, allow, deny) if weights else []

    def bm25_explain(self, weights: dict[str, float], chunk_ids: Sequence[int]) -> list[TermHit]:
        """What a collection-wide BM25 of these chunks needs: term frequencies and lengths."""
        return self.lexical.explain(weights, chunk_ids) if weights and chunk_ids else []

    def bytes_on_disk(self) -> int:
        """Size of this shard's index files."""
        return bytes_on_disk(self.place.directory)


class Fanout(Protocol):
    """Runs one call on every shard of a collection and returns the answers in shard order."""

    def __len__(self) -> int: ...

    def refresh(self) -> None: ...

    def dense_hits(
        self, vector: np.ndarray, n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[list[Hit]]: ...

    def bm25_stats(self, terms: Sequence[str]) -> list[ShardStats]: ...

    def bm25_candidates(
        self, weights: Sequence[dict[str, float]], n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[list[Hit]]: ...

    def bm25_explain(self, weights: Sequence[dict[str, float]], chunk_ids: Sequence[Sequence[int]]) -> list[list[TermHit]]: ...

    def bytes_on_disk(self) -> int: ...


class ThreadFanout:
    """The shards of a collection in this process, searched by one thread each.

    Args:
        shards: one searcher per shard, in order.
    """

    def __init__(self, shards: Sequence[ShardSearcher]) -> None:
        self.shards = list(shards)
        self._pool = ThreadPoolExecutor(max_workers=len(self.shards), thread_name_prefix="rag-shard")

    def __len__(self) -> int:
        return len(self.shards)

    def _each(self, call: Callable[[int, ShardSearcher], T]) -> list[T]:
        futures = [self._pool.submit(call, k, s) for k, s in enumerate(self.shards)]
        return [f.result() for f in futures]

    def refresh(self) -> None:
        """Refresh every shard."""
        self._each(lambda _k, s: s.refresh())

    def dense_hits(self, vector: np.ndarray, n: int, allow: np.ndarray | None, deny: np.ndarray | None) -> list[list[Hit]]:
        """Each shard's nearest neighbours."""
        return self._each(lambda _k, s: s.dense_hits(vector, n, allow, deny))

    def bm25_stats(self, terms: Sequence[str]) -> list[ShardStats]:
        """Each shard's BM25 statistics."""
        return self._each(lambda _k, s: s.bm25_stats(terms))

    def bm25_candidates(
        self, weights: Sequence[dict[str, float]], n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[list[Hit]]:
        """Each shard's BM25 candidates, shard ``k`` searched with ``weights[k]``."""
        return self._each(lambda k, s: s.bm25_candidates(weights[k], n, allow, deny))

    def bm25_explain(self, weights: Sequence[dict[str, float]], chunk_ids: Sequence[Sequence[int]]) -> list[list[TermHit]]:
        """Shard ``k``'s explanation of ``chunk_ids[k]``."""
        return self._each(lambda k, s: s.bm25_explain(weights[k], chunk_ids[k]))

    def bytes_on_disk(self) -> int:
        """Size of every shard's index files."""
        return sum(s.bytes_on_disk() for s in self.shards)


def merge_hits(per_shard: Sequence[Sequence[Hit]], n: int) -> list[Hit]:
    """The best ``n`` of several shards' hits, by score and then chunk id, as one index would rank them."""
    merged = [h for hits in per_shard for h in hits]
    merged.sort(key=lambda h: (-h.score, h.chunk_id))
    return merged[:n]
