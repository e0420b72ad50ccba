"""Where a collection's documents live when it has several shards.

A collection made with ``rag collections create NAME --shards N`` keeps ``N`` pairs of indexes
(FAISS and tantivy), each under ``<collection dir>/shard-K``. A document belongs to one shard,
chosen by a stable hash of its external id, so a new version of it lands where the old one is
and every process agrees without asking. The database records each document's shard
(``documents.shard``) so that one shard's indexes can be rebuilt and reconciled on their own.
An unsharded collection is one shard whose indexes sit in the collection's directory itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import InputError
from rag.index.collection import collection_dir
from rag.index.store import CollectionInfo

SHARDS_SETTING = "shards"
"""The key of a collection's stored settings that holds its shard count."""

MAX_SHARDS = 256


def shard_of(external_id: str, shards: int) -> int:
    """The shard of a document: the first 8 bytes of SHA-256 of its id, modulo the shard count."""
    if shards <= 1:
        return 0
    digest = hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def check_shards(shards: int) -> int:
    """A valid shard count.

    Raises:
        InputError: below 1 or above :data:`MAX_SHARDS`, naming ``--shards``.
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise InputError("--shards", f"must be between 1 and {MAX_SHARDS}, got {shards}")
    return shards


def shard_count(info: CollectionInfo) -> int:
    """How many shards a collection has (1 unless it was created with more)."""
    return int(info.settings.get(SHARDS_SETTING) or 1)


@dataclass(frozen=True)
class ShardPlace:
    """One shard of a collection: its number (None for an unsharded collection) and its directory.

    ``shard`` is what the store's per-shard queries take: None reads every document.
    """

    shard: int | None
    directory: Path

    @property
    def number(self) -> int:
        """The shard's number (0 for an unsharded collection)."""
        return self.shard or 0


def shard_places(settings: Settings, info: CollectionInfo) -> list[ShardPlace]:
    """The shards of a collection, in order."""
    root = collection_dir(settings, info.name)
    n = shard_count(info)
    if n == 1:
        return [ShardPlace(None, root)]
    return [ShardPlace(k, root / f"shard-{k}") for k in range(n)]
