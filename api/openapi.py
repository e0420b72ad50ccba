"""The OpenAPI document, with the schemas of streamed events that FastAPI cannot infer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.schemas import ASK_EVENTS, ChatCompletionChunk, ChatStreamError

STREAMS: dict[str, dict[str, type[BaseModel]]] = {
    "/v1/ask": ASK_EVENTS,
    "/v1/chat/completions": {"chunk": ChatCompletionChunk, "error": ChatStreamError},
}
"""Streaming route -> its events' ``data`` models (SSE event name -> model)."""


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe each stream's events under ``text/event-stream``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for path, events in STREAMS.items():
                refs = []
                for model in events.values():
                    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                    schemas.update(schema.pop("$defs", {}))
                    schemas[model.__name__] = schema
                    refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
                content = spec["paths"][path]["post"]["responses"]["200"]["content"]
                content["text/event-stream"] = {
                    "schema": {"oneOf": refs},
                    "x-events": {name: model.__name__ for name, model in events.items()},
                }
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
