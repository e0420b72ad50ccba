"""Opening a runtime: the store, the embedder, the reranker and the generator, wired into the pipeline.

Example:
    >>> from rag.config import load_settings
    >>> with open_runtime(load_settings(), generator=False) as runtime:  # doctest: +SKIP
    ...     hits = runtime.pipeline.search("handbook", "travel approval").results
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import ModelLoadError
from rag.generation.client import Generator
from rag.index.collection import CollectionBusyError
from rag.index.fanout import Fanout
from rag.index.store import CollectionInfo, Store
from rag.index.writer import CollectionWriter
from rag.pipeline import ComponentStatus, RagPipeline
from rag.rerank.cross_encoder import Reranker

log = logging.getLogger(__name__)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Runtime:
    """What one process opened: the database, the models and the query pipeline over them."""

    settings: Settings
    store: Store
    embedder: Embedder
    reranker: Reranker | None
    reranker_status: ComponentStatus
    generator: Generator | None
    pipeline: RagPipeline


def load_reranker(settings: Settings) -> tuple[Reranker | None, ComponentStatus]:
    """Load the configured reranker.

    The default model may be missing on an offline machine: then reranking is off, with one
    warning. A reranker the user chose explicitly must load.

    Raises:
        ModelLoadError: an explicitly configured reranker could not be loaded.
    """
    if not settings.reranker.model:
        return None, ComponentStatus(False, "", "disabled by configuration (RAG_RERANKER__MODEL is empty)")
    reranker = Reranker(settings.reranker)
    try:
        reranker.warm_up()
    except ModelLoadError as exc:
        if settings.reranker_explicit:
            raise
        detail = (
            f"off: the default reranker {settings.reranker.model} is not installed here "
            "(set RAG_RERANKER__MODEL to a local model, e.g. one from rag train-reranker)"
        )
        log.info("reranking is %s; loading it said: %s", detail, str(exc).splitlines()[0] if str(exc) else exc)
        return None, ComponentStatus(False, settings.reranker.model, detail)
    detail = f"top {reranker.top_n} on {reranker.device}, {reranker.max_length} tokens"
    if reranker.weight < 1.0:
        detail += f", blended with retrieval (cross-encoder weight {reranker.weight:g}, BM25 share {reranker.lexical_share:g})"
    return reranker, ComponentStatus(True, settings.reranker.model, detail)


def reconcile_all(settings: Settings, store: Store, say: Log) -> None:
    """Repair every collection that no writer holds (what a killed ingest left)."""
    for info in store.collections():
        model = info.settings.get("embedding_model")
        dim = info.settings.get("dim")
        if not model or not dim:
            continue
        try:
            with CollectionWriter(settings, store, info, model, int(dim)) as writer:
                report = writer.reconciled
        except CollectionBusyError:
            say(f"collection {info.name} is being written by another process; it reconciles itself")
            continue
        if report.changed:
            say(f"reconciled collection {info.name}: {report}")


@contextlib.contextmanager
def open_runtime(
    settings: Settings,
    *,
    generator: bool | Generator = True,
    reranker: bool | tuple[Reranker | None, ComponentStatus] = True,
    reconcile: bool = False,
    embedder: Embedder | None = None,
    log: Log = print,
    fanout: Callable[[CollectionInfo], Fanout] | None = None,
) -> Iterator[Runtime]:
    """Open the store and models; with ``generator``, reach the generator, starting llama.cpp when no URL is set.

    Args:
        settings: the settings read at the entry point.
        generator: connect a generator (a local llama.cpp server is started, and stopped on exit,
            when ``RAG_GENERATOR__URL`` is empty), or use this already connected one.
        reranker: load the configured reranker, or use this one already loaded (with its status).
        reconcile: repair collections a killed writer left (the server does this at start).
        embedder: an embedder already loaded (benchmarks open one runtime per corpus size with one model).
        log: where progress lines go.
        fanout: how collections' shards are searched (default: in this process).

    Raises:
        ConfigError / ModelLoadError: a configured model is missing, naming the setting.
    """
    from rag.security.crypto import open_cipher

    store = Store(settings.sqlalchemy_url, cipher=open_cipher(settings))
    server = None
    try:
        embedder = (embedder or Embedder(settings.embedding)).warm_up(queries=True)
        if isinstance(reranker, tuple):
            rr, status = reranker
        elif reranker:
            rr, status = load_reranker(settings)  # logs one warning when the default is missing
        else:
            rr, status = None, ComponentStatus(False, "", "not loaded by this command")
        if reconcile:
            reconcile_all(settings, store, log)
        gen: Generator | None = None if isinstance(generator, bool) else generator
        if generator is True:
            url = settings.generator.url
            if not url:
                from rag.runtime.llama_server import LocalLlamaServer  # noqa: PLC0415 - only when no URL is set

                server = LocalLlamaServer(settings.generator, settings.data_dir)
                log("starting the local llama.cpp generator (no RAG_GENERATOR__URL set) ...")
                url = server.start()
                log(f"local generator ready at {url}")
            gen = Generator(settings.generator, base_url=url)
            try:
                gen.warm_up()
            except Exception as exc:  # the service still searches without a generator
                log(f"[yellow]warning:[/] generator not reachable yet: {exc}")
        pipeline = RagPipeline(settings, store, embedder, rr, status, gen, fanout=fanout)
        yield Runtime(settings, store, embedder, rr, status, gen, pipeline)
    finally:
        if server is not None:
            server.stop()
        store.close()
