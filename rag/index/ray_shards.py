"""One Ray actor per shard: the fan-out of ``rag serve --engine ray``.

Each actor opens one shard's FAISS and tantivy indexes (a :class:`~rag.index.fanout.ShardSearcher`)
and answers the reader's per-shard calls; :class:`RayFanout` sends a call to every shard's actor
at once and gathers the answers in shard order. The actors are named after the collection's id
and the shard, so every API replica of the cluster shares them, and a collection dropped and
made again under the same name gets new ones. They read their settings from their environment,
which the process that starts them passes on (:func:`rag.cluster.service_env`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.cluster import import_ray, service_env
from rag.config import Settings, load_settings
from rag.index.fanout import ShardSearcher
from rag.index.lexical import ShardStats, TermHit
from rag.index.shards import shard_places
from rag.index.store import CollectionInfo, Store
from rag.types import Hit

ACTOR_PREFIX = "rag-shard"
# Concurrent calls one shard actor serves (FAISS and tantivy search from several threads).
ACTOR_CONCURRENCY = 8


class ShardActor:
    """The body of a shard actor: one shard's searcher, refreshed before each call."""

    def __init__(self, collection: str, shard: int, model_id: str, dim: int) -> None:
        from rag.security.crypto import open_cipher

        self.settings: Settings = load_settings()
        self.store = Store(self.settings.sqlalchemy_url, run_migrations=False, cipher=open_cipher(self.settings))
        info = self.store.collection(collection)
        place = shard_places(self.settings, info)[shard]
        self.searcher = ShardSearcher(self.settings, self.store, info, place, model_id, dim)

    def dense_hits(self, vector: np.ndarray, n: int, allow: np.ndarray | None, deny: np.ndarray | None) -> list[Hit]:
        self.searcher.refresh()
        return self.searcher.dense_hits(vector, n, allow, deny)

    def bm25_stats(self, terms: Sequence[str]) -> ShardStats:
        self.searcher.refresh()
        return self.searcher.bm25_stats(terms)

    def bm25_candidates(
        self, weights: dict[str, float], n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[Hit]:
        return self.searcher.bm25_candidates(weights, n, allow, deny)

    def bm25_explain(self, weights: dict[str, float], chunk_ids: Sequence[int]) -> list[TermHit]:
        return self.searcher.bm25_explain(weights, chunk_ids)

    def bytes_on_disk(self) -> int:
        return self.searcher.bytes_on_disk()


def actor_name(info: CollectionInfo, shard: int) -> str:
    """The cluster-wide name of a shard's actor."""
    return f"{ACTOR_PREFIX}-{info.id}-{shard}"


class RayFanout:
    """The shards of a collection as Ray actors, created on first use and shared by name.

    Args:
        settings: service settings (``settings.ray.namespace``).
        info: the collection.
        model_id: the embedding model of its FAISS indexes.
        dim: their dimension.
    """

    def __init__(self, settings: Settings, info: CollectionInfo, model_id: str, dim: int) -> None:
        self.ray = import_ray()
        remote = self.ray.remote(ShardActor)
        self.actors: list[Any] = []
        for place in shard_places(settings, info):
            self.actors.append(
                remote.options(
                    name=actor_name(info, place.number),
                    namespace=settings.ray.namespace,
                    get_if_exists=True,
                    lifetime="detached",
                    max_concurrency=ACTOR_CONCURRENCY,
                    max_restarts=-1,
                    max_task_retries=-1,
                    num_cpus=0,
                    runtime_env={"env_vars": service_env()},
                ).remote(info.name, place.number, model_id, dim)
            )

    def __len__(self) -> int:
        return len(self.actors)

    def _each(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        return self.ray.get([getattr(a, method).remote(*x) for a, x in zip(self.actors, args, strict=True)])

    def refresh(self) -> None:
        """Nothing to do: each actor refreshes its indexes at the start of every search."""

    def dense_hits(self, vector: np.ndarray, n: int, allow: np.ndarray | None, deny: np.ndarray | None) -> list[list[Hit]]:
        """Each shard's nearest neighbours."""
        return self._each("dense_hits", [(vector, n, allow, deny)] * len(self.actors))

    def bm25_stats(self, terms: Sequence[str]) -> list[ShardStats]:
        """Each shard's BM25 statistics."""
        return self._each("bm25_stats", [(list(terms),)] * len(self.actors))

    def bm25_candidates(
        self, weights: Sequence[dict[str, float]], n: int, allow: np.ndarray | None, deny: np.ndarray | None
    ) -> list[list[Hit]]:
        """Each shard's BM25 candidates, shard ``k`` searched with ``weights[k]``."""
        return self._each("bm25_candidates", [(w, n, allow, deny) for w in weights])

    def bm25_explain(self, weights: Sequence[dict[str, float]], chunk_ids: Sequence[Sequence[int]]) -> list[list[TermHit]]:
        """Shard ``k``'s explanation of ``chunk_ids[k]`` (shards with none are not asked)."""
        asked = [k for k, ids in enumerate(chunk_ids) if ids]
        got = self.ray.get([self.actors[k].bm25_explain.remote(weights[k], list(chunk_ids[k])) for k in asked])
        out: list[list[TermHit]] = [[] for _ in chunk_ids]
        for k, hits in zip(asked, got, strict=True):
            out[k] = hits
        return out

    def bytes_on_disk(self) -> int:
        """Size of every shard's index files."""
        return sum(self._each("bytes_on_disk", [()] * len(self.actors)))


def stop_shard_actors(namespace: str) -> int:
    """Kill this namespace's shard actors (``rag serve --engine ray`` does it on exit); returns how many."""
    ray = import_ray()
    from ray.util.state import list_actors

    n = 0
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        name = getattr(actor, "name", "") or ""
        if name.startswith(ACTOR_PREFIX + "-") and getattr(actor, "ray_namespace", namespace) == namespace:
            try:
                ray.kill(ray.get_actor(name, namespace=namespace))
                n += 1
            except ValueError:
                pass
    return n
