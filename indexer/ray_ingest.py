"""``rag ingest --engine ray``: parsing, chunking and embedding on a Ray cluster with Ray Data.

The driver (this process) walks the paths, as a local ingest does, and hands the files to a Ray
Data pipeline:

1. :func:`parse_files` loads each batch's files with the same loaders as a local ingest, adds
   ``--metadata``, redacts, and hashes; a document whose hash equals its active version's is
   marked unchanged (it is not chunked or embedded again). It runs inside the embedding actors
   when they use no GPU (``RAG_RAY__PARSE_IN_ACTORS``), else as ``map_batches`` CPU tasks;
2. ``map_batches`` over :class:`EmbedChunks`, an actor pool: each actor loads the embedder once,
   chunks the batch's changed documents with its tokenizer and embeds their chunks in one call,
   on a GPU when the cluster has them (the parse tasks load no model);
3. the driver takes the batches in order and gives them to the collection's one writer through
   :class:`~indexer.pipeline.Ingestor`, so change detection, renames, ``--sync``, the report and
   crash safety are a local ingest's: documents stay pending until every index is durable.

A worker killed mid-run is replaced by Ray (its tasks are retried, the actor restarted); if the
job cannot finish, the ingest fails with :class:`RayIngestError` and the documents it staged
are purged by the next ingest, which picks up where the last commit left off.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.pipeline import FILE_METADATA_KEYS, Ingestor, Prepared, _Run
from indexer.sources import FileSource
from indexer.sources.files import load_file
from indexer.sources.walk import iter_files
from rag.chunking import Chunker, embedding_text
from rag.cluster import cluster_gpus, connect
from rag.config import ChunkingConfig, EmbeddingConfig, Settings
from rag.embedding import Embedder
from rag.errors import FileError, RagError
from rag.index.store import Store, content_sha256
from rag.interfaces import Source
from rag.privacy import Redactor, redact_document
from rag.types import Document, LoadFailure


class RayIngestError(RagError):
    """The Ray job could not finish; what it staged stays pending and the next ingest purges it."""


# ------------------------------------------------------------------------------ on the workers


_ACTIVE: dict[Any, dict[str, str]] = {}


def _active(ref: Any) -> dict[str, str]:
    """The active documents' hashes, fetched from the object store once per worker process."""
    key = ref.hex() if hasattr(ref, "hex") else id(ref)
    if key not in _ACTIVE:
        import ray

        _ACTIVE.clear()
        _ACTIVE[key] = ray.get(ref)
    return _ACTIVE[key]


def parse_files(
    batch: dict[str, np.ndarray],
    *,
    settings_key: str,
    max_file_bytes: int,
    redact: Sequence[str],
    phone_region: str,
    metadata: Mapping[str, object],
    active: Any,
) -> dict[str, np.ndarray]:
    """Load, redact and hash a batch of files (a Ray Data task).

    Each output row is one file: a pickled list of ``("fail", path, reason)`` and
    ``("doc", document, redaction counts, changed)``, ``changed`` false when the document's hash
    equals its active version's and the driver will skip it as unchanged.
    """
    redactor = Redactor(redact, region=phone_region)
    known = _active(active)
    blobs = []
    for path in batch["path"]:
        entries: list[tuple[Any, ...]] = []
        try:
            for item in load_file(Path(str(path)), max_file_bytes):
                if isinstance(item, LoadFailure):
                    entries.append(("fail", item.path, item.reason))
                    continue
                doc: Document = item
                if metadata:
                    doc = dataclasses.replace(doc, metadata={**doc.metadata, **metadata})
                counts: dict[str, int] = {}
                if redactor:
                    doc, counts = redact_document(redactor, doc, keep=FILE_METADATA_KEYS)
                unchanged = known.get(doc.external_id) == content_sha256(doc, settings_key)
                entries.append(("doc", doc, counts, not unchanged))
        except FileError as exc:
            entries.append(("fail", exc.path, exc.reason))
        blobs.append(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
    return {"path": batch["path"], "blob": np.array(blobs, dtype=object)}


class EmbedChunks:
    """One actor of the embedding pool: loads the embedder once, chunks and embeds a batch in one call.

    With ``parse`` (the keyword arguments of :func:`parse_files`), the actor parses its batch of files first,
    so that no separate parse workers run beside it (``RAG_RAY__PARSE_IN_ACTORS``).
    """

    def __init__(self, embedding_json: str, chunking_json: str, parse: Mapping[str, Any] | None = None) -> None:
        self.embedder = Embedder(EmbeddingConfig.model_validate_json(embedding_json)).warm_up()
        config = ChunkingConfig.model_validate_json(chunking_json)
        self.chunker = Chunker(config, self.embedder.tokenizer, self.embedder.max_seq_length)
        self.parse = dict(parse) if parse is not None else None

    def _chunked(self, entry: tuple[Any, ...]) -> tuple[Any, ...]:
        """A parsed entry with the document's chunks in place of its "changed" flag (None: unchanged)."""
        if entry[0] != "doc":
            return entry
        kind, doc, counts, changed = entry
        return kind, doc, counts, self.chunker.chunk(doc) if changed else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.parse is not None:
            batch = parse_files(batch, **self.parse)
        files = [[self._chunked(e) for e in pickle.loads(blob)] for blob in batch["blob"]]
        docs = [e for entries in files for e in entries if e[0] == "doc" and e[3]]
        texts = [embedding_text(e[1].title, c.text) for e in docs for c in e[3]]
        vectors = self.embedder.embed_documents(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        out, at = [], 0
        by_id = {}
        for e in docs:
            by_id[id(e)] = vectors[at : at + len(e[3])]
            at += len(e[3])
        for entries in files:
            rows = [(*e, by_id.get(id(e))) if e[0] == "doc" else e for e in entries]
            out.append(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
        return {"path": batch["path"], "blob": np.array(out, dtype=object)}


# ------------------------------------------------------------------------------ on the driver


class RayIngestor(Ingestor):
    """An :class:`~indexer.pipeline.Ingestor` whose files are parsed, chunked and embedded on Ray.

    Args:
        settings: service settings (``settings.ray`` for the pool).
        store: the database.
        embedder: the embedder (its tokenizer counts tokens here; the actors load their own).
        collection: collection name.
        create: create the collection when missing.
        address: the cluster (overrides ``RAG_RAY__ADDRESS``).

    Raises:
        ConfigError: Ray is not installed or no cluster answers at the address.
    """

    def __init__(
        self, settings: Settings, store: Store, embedder: Embedder, collection: str, *, create: bool = True,
        address: str | None = None,
    ) -> None:
        super().__init__(settings, store, embedder, collection, create=create)
        self.ray = connect(settings.ray, address)

    def _documents(self, source: Source, run: _Run, fail_fast: bool) -> Iterator[tuple[Document, int]]:
        if not isinstance(source, FileSource):
            yield from super()._documents(source, run, fail_fast)
            return
        report = run.report
        self._ready.clear()  # what an earlier, failed run left
        source.skipped, source.files_done = [], 0
        paths: list[str] = []
        for item in iter_files(source.paths, source.include, source.exclude, on_skip=source.skipped.append):
            if isinstance(item, LoadFailure):
                report.fail(item.path, item.reason)
                run.documents += 1
                if fail_fast:
                    return
            else:
                paths.append(str(item))
        if not paths:
            return
        try:
            for entries in self._pipeline(paths, run.metadata):
                for entry in entries:
                    run.read += 1
                    if entry[0] == "fail":
                        report.fail(entry[1], entry[2])
                        run.documents += 1
                        if fail_fast:
                            return
                        continue
                    _kind, doc, counts, chunks, vectors = entry
                    for kind, n in counts.items():
                        report.redactions[kind] = report.redactions.get(kind, 0) + n
                    if chunks is not None:
                        self._ready[doc.external_id] = Prepared(chunks, vectors)
                    yield doc, source.files_done + 1
                source.files_done += 1
        except self.ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            raise RayIngestError(
                f"the Ray ingest failed ({type(exc).__name__}: {first}); what was committed before stays, "
                "and running the same ingest again finishes it"
            ) from None

    def _pipeline(self, paths: list[str], metadata: Mapping[str, object]) -> Iterator[list[tuple[Any, ...]]]:
        """Each file's entries, in the order of ``paths``, from the Ray Data pipeline."""
        ray = self.ray
        conf = self.settings.ray
        data = ray.data
        ctx = data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # chunk ids in the order of a local ingest
        ctx.enable_progress_bars = False
        gpus = conf.actor_gpus if conf.actor_gpus >= 0 else (1.0 if cluster_gpus(ray) else 0.0)
        # An actor shares its node's cores with parse tasks and the raylet: threads that spin while they
        # wait made one 2-CPU actor 3.5x slower than a local ingest on the same 2 cores.
        embedding = self.settings.embedding.model_copy(update={"threads": max(1, int(conf.actor_cpus)), "spin": False})
        active = {d.external_id: d.sha256 for d in self.store.documents(self.info.id)}
        per_batch = conf.files_per_batch
        ds = data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, len(paths) // per_batch))
        parse = {
            "settings_key": self.settings_key,
            "max_file_bytes": self.settings.ingest.max_file_bytes,
            "redact": list(self.redactor.kinds),
            "phone_region": self.settings.privacy.phone_region,
            "metadata": dict(metadata),
            "active": ray.put(active),
        }
        # CPU actors parse their own files unless told otherwise: a parse worker beside them costs a Ray
        # worker's start (about 2.8 CPU-seconds) on the same cores; GPU actors leave parsing to CPU tasks.
        in_actors = conf.parse_in_actors if conf.parse_in_actors is not None else gpus == 0
        if not in_actors:
            ds = ds.map_batches(parse_files, batch_size=per_batch, num_cpus=conf.parse_cpus, max_retries=3,
                                fn_kwargs=parse)
        ds = ds.map_batches(
            EmbedChunks,
            batch_size=per_batch,
            compute=data.ActorPoolStrategy(size=conf.embed_actors),
            num_cpus=conf.actor_cpus,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=-1,
            fn_constructor_kwargs={
                "embedding_json": embedding.model_dump_json(),
                "chunking_json": self.settings.chunking.model_dump_json(),
                "parse": parse if in_actors else None,
            },
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            for blob in batch["blob"]:
                yield pickle.loads(blob)
