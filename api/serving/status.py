"""``/v1/collections`` and ``/health``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import Scope
from api.metrics import Metrics
from api.schemas import CollectionOut, CollectionsResponse, HealthResponse, ModelOut, ModelsResponse
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

    async def models(self, scope: Scope) -> ModelsResponse:
        """The collections the caller's key may use, as OpenAI model objects."""
        infos = await run_in_threadpool(self.pipeline.store.collections)
        return ModelsResponse(data=[ModelOut(id=n) for n in scope.visible([i.name for i in infos])])

    async def health(self) -> HealthResponse:
        """Each component's state; ``degraded`` when an optional component is off or down."""
        return await run_in_threadpool(self._check)

    def _check(self) -> HealthResponse:
        p = self.pipeline
        components: dict[str, dict] = {}
        try:
            components["database"] = _up(True, collections=len(p.store.collections()))
        except Exception as exc:  # report, never raise, from a health check
            components["database"] = _up(False, detail=str(exc).splitlines()[0])
        components["embedding"] = _up(True, model=p.embedder.model_id)
        rs = p.reranker_status
        components["reranker"] = {"ok": rs.enabled, "state": rs.state, "model": rs.model, "detail": rs.detail}
        gen = p.generator
        if gen is None:
            components["generator"] = {"ok": False, "state": "off", "detail": "off: no generator configured; /v1/search works"}
        else:
            components["generator"] = _up(gen.healthy(), url=gen.base_url, model=gen.model)
        # Off by configuration or for a missing optional model is not a fault; a component that should run and does not is.
        down = any(c["state"] == "down" for c in components.values())
        return HealthResponse(status="degraded" if down else "ok", components=components)


def _up(ok: bool, **facts: object) -> dict:
    """A component that should run: ``on`` when it does, ``down`` when not."""
    return {"ok": ok, "state": "on" if ok else "down", **facts}
