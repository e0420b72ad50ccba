"""``/v1/collections``, ``/v1/models``, ``/health`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ScopeDep, StatusServiceDep
from api.schemas import CollectionsResponse, HealthResponse, ModelsResponse

router = APIRouter(tags=["service"])


@router.get("/v1/collections", response_model=CollectionsResponse)
async def collections(service: StatusServiceDep, scope: ScopeDep) -> CollectionsResponse:
    """Collections the caller's key may read, with document and chunk counts."""
    return await service.collections(scope)


@router.get("/v1/models", response_model=ModelsResponse, tags=["openai"])
async def models(service: StatusServiceDep, scope: ScopeDep) -> ModelsResponse:
    """The collections the caller's key may use, in OpenAI's model-list format (for OpenAI-compatible front ends)."""
    return await service.models(scope)


@router.get("/health", response_model=HealthResponse)
async def health(service: StatusServiceDep) -> HealthResponse:
    """Each component's state. ``degraded`` when an optional component is off or down."""
    return await service.health()


@router.get("/metrics", include_in_schema=False)
async def metrics(service: StatusServiceDep) -> Response:
    """Prometheus exposition."""
    body, media_type = service.metrics()
    return Response(body, media_type=media_type)
