"""Admin operations behind ``rag collections``, ``rag stats`` and ``rag compact``."""

from __future__ import annotations

import shutil
from typing import Any

from rag.config import Settings
from rag.index.collection import CollectionIndex, collection_dir
from rag.index.store import Store


def open_index(settings: Settings, store: Store, name: str) -> CollectionIndex:
    """Open a collection's indexes with the model recorded for it (no model loading)."""
    info = store.collection(name)
    model = info.settings.get("embedding_model") or settings.embedding.model
    dim = int(info.settings.get("dim") or 0)
    if not dim:
        from rag.embedding import Embedder

        emb = Embedder(settings.embedding).warm_up()
        model, dim = emb.model_id, emb.dim
    return CollectionIndex(settings, store, info, model, dim)


def collection_stats(settings: Settings, store: Store, name: str) -> dict[str, Any]:
    """The numbers ``rag stats --json`` prints for one collection."""
    info = store.collection(name)
    counts = store.stats(info.id)
    if not info.settings.get("dim"):
        return {
            "documents": counts["documents"], "chunks": counts["chunks"], "vectors": 0, "tombstones": 0,
            "lexical_docs": 0, "index_type": None, "bytes": 0,
        }
    idx = open_index(settings, store, name)
    hidden = store.hidden_chunk_ids(info.id)
    import numpy as np

    dense_ids = idx.dense.ids()
    return {
        "documents": counts["documents"],
        "chunks": counts["chunks"],
        "vectors": int(idx.dense.ntotal),
        "tombstones": int(np.isin(dense_ids, hidden).sum()) if len(hidden) else 0,
        "lexical_docs": int(idx.lexical.count()),
        "index_type": idx.dense.kind,
        "bytes": int(idx.bytes_on_disk()),
        "embedding_model": idx.model_id,
    }


def compact(settings: Settings, store: Store, name: str) -> dict[str, int]:
    """Remove tombstones from a collection's indexes and database rows."""
    idx = open_index(settings, store, name)
    with idx.writing():
        idx.reconcile()
        return idx.compact()


def drop(settings: Settings, store: Store, name: str) -> None:
    """Delete a collection: its rows and its index files."""
    info = store.collection(name)
    directory = collection_dir(settings, info.name)
    store.drop_collection(name)
    shutil.rmtree(directory, ignore_errors=True)
