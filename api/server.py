"""Start-up and shutdown of the service: models, the local generator, reconciliation, uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from rag.config import Settings
from rag.embedding import Embedder
from rag.generation.client import Generator
from rag.generation.local_server import LocalLlamaServer
from rag.index.collection import CollectionBusyError, CollectionIndex
from rag.index.store import Store
from rag.pipeline import RagPipeline, load_reranker
from rag.threads import for_queries

log = logging.getLogger(__name__)

Log = Callable[[str], None]


def reconcile_all(settings: Settings, store: Store, embedder: Embedder, say: Log) -> None:
    """Repair every collection that no writer holds (what a killed ingest left)."""
    for info in store.collections():
        model = info.settings.get("embedding_model")
        dim = info.settings.get("dim")
        if not model or not dim:
            continue
        idx = CollectionIndex(settings, store, info, model, int(dim))
        try:
            with idx.writing():
                report = idx.reconcile()
        except CollectionBusyError:
            say(f"collection {info.name} is being written by another process; it reconciles itself")
            continue
        if report.changed:
            say(f"reconciled collection {info.name}: {report}")


@contextlib.contextmanager
def local_pipeline(settings: Settings, log: Log = print, *, generator: bool = True) -> Iterator[RagPipeline]:
    """A ready pipeline; starts (and afterwards stops) llama.cpp when no generator URL is set.

    Raises:
        ConfigError / ModelLoadError: a configured model is missing, naming the setting.
    """
    store = Store(settings.sqlalchemy_url)
    embedder = Embedder(settings.embedding).warm_up()
    reranker, status = load_reranker(settings)  # logs one warning when the default is missing
    reconcile_all(settings, store, embedder, log)
    server: LocalLlamaServer | None = None
    gen: Generator | None = None
    try:
        if generator:
            url = settings.generator.url
            if not url:
                server = LocalLlamaServer(settings.generator, settings.data_dir)
                log("starting the local llama.cpp generator (no RAG_GENERATOR__URL set) ...")
                url = server.start()
                log(f"local generator ready at {url}")
            gen = Generator(settings.generator, base_url=url)
            try:
                gen.warm_up()
            except Exception as exc:  # the service still searches without a generator
                log(f"[yellow]warning:[/] generator not reachable yet: {exc}")
        yield RagPipeline(settings, store, embedder, reranker, status, gen)
    finally:
        if server is not None:
            server.stop()
        store.close()


def run(settings: Settings, host: str | None = None, port: int | None = None, log: Log = print) -> None:
    """Serve the API with uvicorn until interrupted."""
    import uvicorn

    from api.main import create_app

    settings = for_queries(settings)
    host = host or settings.api.host
    port = settings.api.port if port is None else port
    if not settings.api_keys and host not in ("127.0.0.1", "localhost", "::1"):
        log(f"[yellow]no API keys configured (RAG_API_KEYS): binding to 127.0.0.1 instead of {host}[/]")
        host = "127.0.0.1"
    elif not settings.api_keys:
        log("no API keys configured (RAG_API_KEYS): serving on 127.0.0.1 only, without authentication")
    with local_pipeline(settings, log) as pipeline:
        app = create_app(settings, pipeline)
        log(f"serving on http://{host}:{port} (OpenAPI docs at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
