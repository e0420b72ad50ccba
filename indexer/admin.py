"""Admin operations behind ``rag delete``, ``rag collections``, ``rag stats`` and ``rag compact``."""

from __future__ import annotations

import shutil
from typing import Any

from rag.config import Settings
from rag.index.collection import bytes_on_disk, collection_dir, open_lexical
from rag.index.store import CollectionInfo, Store
from rag.index.writer import CollectionWriter, open_dense


def _model(settings: Settings, info: CollectionInfo) -> tuple[str, int]:
    """The embedding model and dimension recorded for a collection (loads the model only when none is)."""
    model = info.settings.get("embedding_model") or settings.embedding.model
    dim = int(info.settings.get("dim") or 0)
    if not dim:
        from rag.embedding import Embedder

        emb = Embedder(settings.embedding).warm_up()
        model, dim = emb.model_id, emb.dim
    return model, dim


def open_writer(settings: Settings, store: Store, name: str) -> CollectionWriter:
    """The collection's writer, with the model recorded for it; enter it to write.

    Raises:
        NotFoundError: the collection does not exist.
    """
    info = store.collection(name)
    return CollectionWriter(settings, store, info, *_model(settings, info))


def delete_documents(
    settings: Settings, store: Store, collection: str, *, external_id: str | None = None, source_prefix: str | None = None
) -> int:
    """Delete one document or every document under a source prefix (see :meth:`CollectionWriter.delete`).

    Returns:
        Number of documents deleted.

    Raises:
        CollectionBusyError: another process is writing to the collection.
    """
    with open_writer(settings, store, collection) as writer:
        return writer.delete(external_id=external_id, source_prefix=source_prefix)


def collection_stats(settings: Settings, store: Store, name: str) -> dict[str, Any]:
    """The numbers ``rag stats --json`` prints for one collection."""
    info = store.collection(name)
    counts = store.stats(info.id)
    if not info.settings.get("dim"):
        return {
            "documents": counts["documents"], "chunks": counts["chunks"], "vectors": 0, "tombstones": 0,
            "lexical_docs": 0, "index_type": None, "bytes": 0,
        }
    import numpy as np

    model, dim = _model(settings, info)
    directory = collection_dir(settings, info.name)
    dense = open_dense(settings, store, info, directory, model, dim)
    lexical = open_lexical(settings, directory)
    hidden = store.hidden_chunk_ids(info.id)
    dense_ids = dense.ids()
    return {
        "documents": counts["documents"],
        "chunks": counts["chunks"],
        "vectors": int(dense.ntotal),
        "tombstones": int(np.isin(dense_ids, hidden).sum()) if len(hidden) else 0,
        "lexical_docs": int(lexical.count()),
        "index_type": dense.kind,
        "bytes": int(bytes_on_disk(directory)),
        "embedding_model": model,
    }


def compact(settings: Settings, store: Store, name: str) -> dict[str, int]:
    """Remove tombstones from a collection's indexes and database rows."""
    with open_writer(settings, store, name) as writer:
        return writer.compact()


def drop(settings: Settings, store: Store, name: str) -> None:
    """Delete a collection: its rows and its index files."""
    info = store.collection(name)
    directory = collection_dir(settings, info.name)
    store.drop_collection(name)
    shutil.rmtree(directory, ignore_errors=True)
