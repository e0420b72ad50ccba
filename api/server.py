"""Start-up and shutdown of the service: models, the local generator, reconciliation, uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.runtime import open_runtime
from rag.threads import for_queries, limit_malloc_arenas

if TYPE_CHECKING:
    from api.serving.admin import AdminBackend
    from rag.embedding import Embedder
    from rag.index.store import Store

log = logging.getLogger(__name__)

Log = Callable[[str], None]


def run(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    log: Log = print,
    admin: Callable[[Settings, Store, Embedder], AdminBackend] | None = None,
) -> None:
    """Serve the API and the web page with uvicorn until interrupted.

    Args:
        settings: the service settings.
        host: bind address (``RAG_API__HOST`` when None); without API keys only loopback is used.
        port: port (``RAG_API__PORT`` when None).
        log: where start-up lines go.
        admin: builds the admin endpoints' write operations from the server's settings, store and
            embedder (``indexer.service.AdminOperations``; the CLI passes it, since ``api/`` may not
            import ``indexer/``). Without it the admin endpoints answer 503.
    """
    import uvicorn

    from api.main import create_app

    limit_malloc_arenas(settings.api.malloc_arenas)  # before models and worker threads allocate
    settings = for_queries(settings)
    host = host or settings.api.host
    port = settings.api.port if port is None else port
    if settings.log_queries:
        log("[yellow]query logging is on (RAG_LOG_QUERIES): the log will hold the text of every question[/]")
    with open_runtime(settings, reconcile=True, log=log) as runtime:
        p = runtime.pipeline
        app = create_app(settings, p, admin(settings, p.store, p.embedder) if admin is not None else None)
        host = _bind_host(host, bool(settings.api_keys) or app.state.keyring.any_keys(), log)
        log(f"serving on http://{host}:{port}: the page at /, OpenAPI docs at /docs")
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def _bind_host(host: str, keyed: bool, log: Log) -> str:
    """``host``, or loopback when no API key is configured (with a line saying so)."""
    if not keyed and host not in ("127.0.0.1", "localhost", "::1"):
        log(f"[yellow]no API keys configured (RAG_API_KEYS or `rag keys create`): binding to 127.0.0.1 instead of {host}[/]")
        return "127.0.0.1"
    if not keyed:
        log("no API keys configured (RAG_API_KEYS or `rag keys create`): serving on 127.0.0.1 only, without authentication")
    return host


def run_on_ray(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    address: str | None = None,
    config_path: Path | None = None,
    log: Log = print,
) -> None:
    """Serve the API as Ray Serve replicas on a cluster (``rag serve --engine ray``) until interrupted.

    The replicas share one generator URL: without ``RAG_GENERATOR__URL`` this process starts the
    local llama.cpp server and hands its URL to them. The admin endpoints answer 503 there
    (ingest with ``rag ingest --engine ray``).
    """
    import os

    from api.ray_serve import serve_on_ray
    from rag.index.store import Store
    from rag.security.crypto import open_cipher
    from rag.security.keys import KeyRing

    settings = for_queries(settings)
    store = Store(settings.sqlalchemy_url, cipher=open_cipher(settings))
    try:
        keyed = bool(settings.api_keys) or KeyRing(store).any_keys()
    finally:
        store.close()
    host = _bind_host(host or settings.api.host, keyed, log)
    port = settings.api.port if port is None else port
    server = None
    try:
        if not settings.generator.url:
            from rag.runtime.llama_server import LocalLlamaServer

            server = LocalLlamaServer(settings.generator, settings.data_dir)
            log("starting the local llama.cpp generator for the replicas (no RAG_GENERATOR__URL set) ...")
            os.environ["RAG_GENERATOR__URL"] = server.start()
        serve_on_ray(settings, host, port, address=address, config_path=str(config_path) if config_path else None,
                     log_line=log)
    finally:
        if server is not None:
            server.stop()
