"""Admin operations behind ``rag delete``, ``rag collections``, ``rag documents``, ``rag stats`` and ``rag compact``.

Documents are keyed by one rule (see :class:`indexer.sources.FileSource`): a file's external id
and every document's ``source`` are absolute resolved paths. What a user types (``corpus/a.txt``,
``corpus/``) is resolved the same way here before it is looked up.

The index modules (FAISS, tantivy) are imported only by the operations that open an index, so
listing collections and documents stays quick.
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.errors import NotFoundError
from rag.index.store import ACTIVE, DELETED, PENDING, CollectionInfo, DocumentSummary, Store, StoredChunk

if TYPE_CHECKING:
    from rag.index.writer import CollectionWriter


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
    from rag.index.writer import CollectionWriter

    info = store.collection(name)
    return CollectionWriter(settings, store, info, *_model(settings, info))


def closest_collection(store: Store, name: str) -> str | None:
    """The existing collection whose name is closest to ``name`` (difflib), if any is close."""
    names = [c.name for c in store.collections()]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def collection_or_hint(store: Store, name: str) -> CollectionInfo:
    """The collection called ``name``.

    Raises:
        NotFoundError: it does not exist; the message names the closest existing collection.
    """
    try:
        return store.collection(name)
    except NotFoundError:
        close = closest_collection(store, name)
        hint = f"; did you mean {close!r}?" if close else " (see `rag collections list`)"
        raise NotFoundError("collection", f"collection {name!r} does not exist{hint}") from None


def _is_uri(typed: str) -> bool:
    return "://" in typed


def as_path(typed: str) -> str:
    """What a user typed as a path, absolute and resolved, as documents' sources are stored."""
    return str(Path(typed).expanduser().resolve())


def resolve_document_id(store: Store, info: CollectionInfo, typed: str) -> str | None:
    """The external id of the active document a user means by ``typed``.

    ``typed`` is taken as an external id first (a BEIR ``_id``), then as a path resolved like a
    file's id (``corpus/a.txt`` is ``/abs/corpus/a.txt``).

    Returns:
        The external id, or None when no active document has either.
    """
    candidates = [typed] if _is_uri(typed) else list(dict.fromkeys([typed, as_path(typed)]))
    for candidate in candidates:
        if store.documents(info.id, external_ids=[candidate], limit=1):
            return candidate
    return None


def resolve_source_prefix(store: Store, info: CollectionInfo, typed: str) -> str:
    """The source prefix a user means by ``typed``: resolved as a path unless it is a URI.

    ``corpus/`` (or ``corpus`` naming a directory) becomes ``/abs/corpus/``, so it matches the
    directory's files and not ``/abs/corpus2``. When the resolved prefix matches nothing but the
    prefix as typed does (documents written before sources were resolved), that one is used.
    """
    if _is_uri(typed):
        return typed
    resolved = as_path(typed)
    if typed.endswith(("/", os.sep)) or os.path.isdir(resolved):
        resolved = resolved.rstrip(os.sep) + os.sep
    if store.documents(info.id, source_prefix=resolved, limit=1) or not store.documents(
        info.id, source_prefix=typed, limit=1
    ):
        return resolved
    return typed


def closest_documents(store: Store, info: CollectionInfo, typed: str, n: int = 3) -> list[str]:
    """External ids of active documents close to what a user typed (difflib, and same file name)."""
    keys = store.document_keys(info.id)
    ids = [e for e, _src in keys]
    target = typed if _is_uri(typed) else as_path(typed)
    close = [*difflib.get_close_matches(target, ids, n=n, cutoff=0.6), *difflib.get_close_matches(typed, ids, n=n, cutoff=0.6)]
    name = os.path.basename(typed.rstrip("/"))
    if name:
        close += [e for e, src in keys if os.path.basename(src) == name or os.path.basename(e) == name]
    return list(dict.fromkeys(close))[:n]


def no_match_hint(store: Store, info: CollectionInfo, typed: str) -> str:
    """A hint for a document reference that matched nothing: the closest ids, and where to look."""
    close = closest_documents(store, info, typed)
    listing = f"see `rag documents list -c {info.name}`"
    if close:
        return f"closest: {', '.join(repr(c) for c in close)}; {listing}"
    return listing


def delete_documents(
    settings: Settings, store: Store, collection: str, *, external_id: str | None = None, source_prefix: str | None = None
) -> int:
    """Delete one document or every document under a source prefix (see :meth:`CollectionWriter.delete`).

    The id and prefix are used as given; :func:`resolve_document_id` and
    :func:`resolve_source_prefix` turn what a user typed into them.

    Returns:
        Number of documents deleted.

    Raises:
        CollectionBusyError: another process is writing to the collection.
    """
    with open_writer(settings, store, collection) as writer:
        return writer.delete(external_id=external_id, source_prefix=source_prefix)


def list_documents(store: Store, name: str, *, all_states: bool = False) -> list[DocumentSummary]:
    """The collection's documents by external id: active ones, or every stored version.

    Raises:
        NotFoundError: the collection does not exist (naming the closest one).
    """
    info = collection_or_hint(store, name)
    states = (ACTIVE, PENDING, DELETED) if all_states else (ACTIVE,)
    return store.documents(info.id, states=states)


def show_document(store: Store, name: str, typed: str) -> tuple[DocumentSummary, list[StoredChunk]]:
    """A document (its active version, else its newest one) and its chunks.

    Args:
        store: the database.
        name: the collection.
        typed: its external id or path, as :func:`resolve_document_id` reads it.

    Raises:
        NotFoundError: no such collection, or no version of the document; the message hints.
    """
    info = collection_or_hint(store, name)
    candidates = [typed] if _is_uri(typed) else list(dict.fromkeys([typed, as_path(typed)]))
    versions = store.documents(info.id, states=(ACTIVE, PENDING, DELETED), external_ids=candidates)
    if not versions:
        raise NotFoundError("document", f"no document {typed!r} in {name}; {no_match_hint(store, info, typed)}")
    active = [v for v in versions if v.state == ACTIVE]
    doc = active[0] if active else max(versions, key=lambda v: v.id)
    return doc, store.document_chunks(doc.id)


def document_json(doc: DocumentSummary, chunks: list[StoredChunk] | None = None) -> dict[str, Any]:
    """A document as ``rag documents --json`` prints it."""
    out: dict[str, Any] = {
        "external_id": doc.external_id,
        "source": doc.source,
        "title": doc.title,
        "state": doc.state,
        "chunks": doc.chunks,
        "sha256": doc.sha256,
        "metadata": doc.metadata,
        "created_at": doc.created_at.isoformat() if doc.created_at else None,
        "updated_at": doc.updated_at.isoformat() if doc.updated_at else None,
    }
    if chunks is not None:
        out["chunk_list"] = [
            {
                "chunk_id": c.chunk_id, "ordinal": c.ordinal, "section": c.section, "char_start": c.char_start,
                "char_end": c.char_end, "token_count": c.token_count, "text": c.text,
            }
            for c in chunks
        ]
    return out


def collection_stats(settings: Settings, store: Store, name: str) -> dict[str, Any]:
    """The numbers ``rag stats --json`` prints for one collection."""
    info = store.collection(name)
    counts = store.stats(info.id)
    if not info.settings.get("dim"):
        return {
            "documents": counts["documents"], "chunks": counts["chunks"], "vectors": 0, "tombstones": 0,
            "lexical_docs": 0, "index_type": None, "shards": int(info.settings.get("shards") or 1), "bytes": 0,
        }
    from rag.index.collection import bytes_on_disk, collection_dir
    from rag.index.shards import shard_places

    model, dim = _model(settings, info)
    directory = collection_dir(settings, info.name)
    places = shard_places(settings, info)
    vectors, lexical_docs, tombstones, kind = 0, 0, 0, None
    # Pending or deleted documents may leave tombstones in the indexes: count them from the ids.
    clean = not counts["pending"] and not counts["deleted"]
    hidden = None
    for place in places:
        recorded = _recorded_counts(place.directory) if clean else None
        if recorded is not None:
            n, kind, lex = recorded
            vectors, lexical_docs = vectors + n, lexical_docs + lex
            continue
        import numpy as np

        from rag.index.collection import open_lexical
        from rag.index.writer import open_dense

        hidden = store.hidden_chunk_ids(info.id) if hidden is None else hidden
        dense = open_dense(settings, store, info, place, model, dim)
        vectors, kind = vectors + int(dense.ntotal), dense.kind
        lexical_docs += int(open_lexical(settings, place.directory).count())
        tombstones += int(np.isin(dense.ids(), hidden).sum()) if len(hidden) else 0
    return {
        "documents": counts["documents"],
        "chunks": counts["chunks"],
        "vectors": vectors,
        "tombstones": tombstones,
        "lexical_docs": lexical_docs,
        "index_type": kind,
        "shards": len(places),
        "bytes": int(bytes_on_disk(directory)),
        "embedding_model": model,
    }


def _recorded_counts(directory: Path) -> tuple[int, str, int] | None:
    """Vectors, index kind and BM25 entries as the index files' own metadata records them.

    FAISS's manifest (written by :class:`rag.index.dense.DenseIndex` with each save) holds the
    vector count and kind; tantivy's ``meta.json`` lists its segments with their document and
    deletion counts. Reading the two small JSON files spares ``rag stats`` importing FAISS and
    tantivy and loading the indexes. None when either is missing or not as expected (the caller
    then opens the indexes).
    """
    import json

    try:
        manifest = json.loads((directory / "dense" / "dense.manifest.json").read_text())
        meta = json.loads((directory / "lexical" / "meta.json").read_text())
        if not (directory / "dense" / str(manifest["file"])).is_file():
            return None
        lexical = 0
        for segment in meta["segments"]:
            deleted = (segment.get("deletes") or {}).get("num_deleted_docs", 0)
            lexical += int(segment["max_doc"]) - int(deleted)
        return int(manifest["ntotal"]), str(manifest["kind"]), lexical
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compact(settings: Settings, store: Store, name: str) -> dict[str, int]:
    """Remove tombstones from a collection's indexes and database rows."""
    with open_writer(settings, store, name) as writer:
        return writer.compact()


def drop(settings: Settings, store: Store, name: str) -> None:
    """Delete a collection: its rows and its index files."""
    from rag.index.collection import collection_dir

    info = store.collection(name)
    directory = collection_dir(settings, info.name)
    store.drop_collection(name)
    shutil.rmtree(directory, ignore_errors=True)
