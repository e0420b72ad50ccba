"""``/v1/collections`` and ``/health``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import Scope
from api.metrics import Metrics
from api.schemas import CollectionOut, CollectionsResponse, HealthResponse
from rag.pipeline import RagPipeline


class StatusService:
    """What the service holds and whether its parts are up.

    Args:
        pipeline: the query pipeline (its store, models and generator).
        metrics: the app's Prometheus registry.
    """

    def __init__(self, pipeline: RagPipeline, metrics: Metrics) -> None:
        self.pipeline = pipeline
        self._metrics = metrics

    def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type."""
        return generate_latest(self._metrics.registry), CONTENT_TYPE_LATEST

    async def collections(self, scope: Scope) -> CollectionsResponse:
        """Collections the caller's key may read, with document and chunk counts."""

        def load() -> list[CollectionOut]:
            store = self.pipeline.store
            out = []
            for info in store.collections():
                if scope.collections is not None and info.name not in scope.collections:
                    continue
                stats = store.stats(info.id)
                out.append(CollectionOut(name=info.name, documents=stats["documents"], chunks=stats["chunks"]))
            return out

        return CollectionsResponse(collections=await run_in_threadpool(load))

    async def health(self) -> HealthResponse:
        """Each component's state; ``degraded`` when an optional component is off or down."""
        return await run_in_threadpool(self._check)

    def _check(self) -> HealthResponse:
        p = self.pipeline
        components: dict[str, dict] = {}
        try:
            components["database"] = {"ok": True, "collections": len(p.store.collections())}
        except Exception as exc:  # report, never raise, from a health check
            components["database"] = {"ok": False, "detail": str(exc).splitlines()[0]}
        components["embedding"] = {"ok": True, "model": p.embedder.model_id}
        rs = p.reranker_status
        components["reranker"] = {"ok": rs.enabled, "model": rs.model, "detail": rs.detail}
        gen = p.generator
        if gen is None:
            components["generator"] = {"ok": False, "detail": "not configured"}
        else:
            components["generator"] = {"ok": gen.healthy(), "url": gen.base_url, "model": gen.model}
        ok = all(c["ok"] for c in components.values())
        return HealthResponse(status="ok" if ok else "degraded", components=components)
