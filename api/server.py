"""Start-up and shutdown of the service: models, the local generator, reconciliation, uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rag.config import Settings
from rag.runtime import open_runtime
from rag.threads import for_queries

log = logging.getLogger(__name__)

Log = Callable[[str], None]


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
    with open_runtime(settings, reconcile=True, log=log) as runtime:
        app = create_app(settings, runtime.pipeline)
        log(f"serving on http://{host}:{port} (OpenAPI docs at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
