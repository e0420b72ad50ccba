"""The web page at ``/``: asking with checked citations, and the admin view.

One HTML template and a few ES modules under ``static/``, with no build step and nothing fetched
from another origin (see ``docs/decisions.md``, "The web page"). The page talks to the REST API
like any other client. Every response of the page and its assets carries a Content-Security-Policy
that allows scripts, styles and connections from this origin only, forbids inline scripts and
requires Trusted Types, so no string can reach an HTML sink: the page builds its DOM from text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).parent
STATIC = HERE / "static"
ASSETS = "/static"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
"""The page's Content-Security-Policy: this origin only, no inline code, no HTML from strings."""

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
"""Headers of the page and of its assets."""


class _WithHeaders:
    """Add :data:`HEADERS` to every response of a mounted app (the static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _version() -> str:
    """A hash of the assets, appended to their URLs so that a browser never mixes two releases."""
    h = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def page() -> str:
    """The page's HTML."""
    template = Template((HERE / "templates" / "index.html").read_text(encoding="utf-8"))
    return template.substitute(assets=ASSETS, version=_version())


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``."""
    html = page()
    app.mount(ASSETS, _WithHeaders(StaticFiles(directory=STATIC)), name="web-static")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(html, headers=HEADERS)
