"""``/v1/collections``, ``/health`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import PipelineDep, ScopeDep
from api.schemas import CollectionOut, CollectionsResponse, HealthResponse

router = APIRouter(tags=["service"])


@router.get("/v1/collections", response_model=CollectionsResponse)
async def collections(pipeline: PipelineDep, scope: ScopeDep) -> CollectionsResponse:
    """Collections the caller's key may read, with document and chunk counts."""

    def load() -> list[CollectionOut]:
        out = []
        for info in pipeline.store.collections():
            if scope.collections is not None and info.name not in scope.collections:
                continue
            stats = pipeline.store.stats(info.id)
            out.append(CollectionOut(name=info.name, documents=stats["documents"], chunks=stats["chunks"]))
        return out

    return CollectionsResponse(collections=await run_in_threadpool(load))


@router.get("/health", response_model=HealthResponse)
async def health(pipeline: PipelineDep, request: Request) -> HealthResponse:
    """Each component's state. ``degraded`` when an optional component is off or down."""

    def check() -> HealthResponse:
        components: dict[str, dict] = {}
        try:
            n = len(pipeline.store.collections())
            components["database"] = {"ok": True, "collections": n}
        except Exception as exc:  # report, never raise, from a health check
            components["database"] = {"ok": False, "detail": str(exc).splitlines()[0]}
        components["embedding"] = {"ok": True, "model": pipeline.embedder.model_id}
        rs = pipeline.reranker_status
        components["reranker"] = {"ok": rs.enabled, "model": rs.model, "detail": rs.detail}
        gen = pipeline.generator
        if gen is None:
            components["generator"] = {"ok": False, "detail": "not configured"}
        else:
            components["generator"] = {"ok": gen.healthy(), "url": gen.base_url, "model": gen.model}
        ok = all(c["ok"] for c in components.values())
        return HealthResponse(status="ok" if ok else "degraded", components=components)

    return await run_in_threadpool(check)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
