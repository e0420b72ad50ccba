"""The write side of the admin REST API, as one object that ``rag serve`` hands to the app.

``api/`` may not import ``indexer/`` (see ``docs/architecture.md``), so the CLI binds these
operations to the server's settings, store and embedder and passes them in, as it passes an
ingest callable to evaluation. Each method is the code path of a ``rag`` command: an upload is
``rag ingest`` over the uploaded files (same writer lock, crash safety, limits and per-file
failures), ``drop`` is ``rag collections drop`` and ``delete`` is ``rag delete --id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from indexer.admin import collection_stats, delete_documents, drop
from indexer.loaders.registry import FORMATS
from indexer.pipeline import Ingestor, Progress
from rag.config import Settings
from rag.embedding import Embedder
from rag.index.store import Store


class AdminOperations:
    """Ingestion and administration for one serving process.

    Args:
        settings: the server's settings (limits, data directory).
        store: the server's database.
        embedder: the server's embedder, already warm; uploads are embedded with it.
    """

    def __init__(self, settings: Settings, store: Store, embedder: Embedder) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder

    def formats(self) -> list[str]:
        """The file suffixes ingestion reads, sorted."""
        return sorted(FORMATS)

    def stats(self, collection: str) -> Mapping[str, Any]:
        """What ``rag stats --json`` reports for one collection.

        Raises:
            NotFoundError: no such collection.
        """
        return collection_stats(self.settings, self.store, collection)

    def drop(self, collection: str) -> None:
        """Delete a collection with its rows and index files.

        Raises:
            NotFoundError: no such collection.
        """
        drop(self.settings, self.store, collection)

    def delete(self, collection: str, external_id: str) -> int:
        """Delete one document through the collection's writer; returns how many were deleted.

        Raises:
            CollectionBusyError: another writer holds the collection.
        """
        return delete_documents(self.settings, self.store, collection, external_id=external_id)

    def ingest(self, collection: str, paths: Sequence[Path], progress: Progress) -> Mapping[str, Any]:
        """Ingest files into an existing collection; returns the ``rag ingest --json`` summary.

        Raises:
            NotFoundError: no such collection.
            CollectionBusyError: another writer holds the collection.
        """
        ingestor = Ingestor(self.settings, self.store, self.embedder, collection, create=False)
        return ingestor.ingest(list(paths), progress=progress).as_json()
