"""``rag serve --engine ray``: the API as Ray Serve replicas, with one Ray actor per collection shard.

Each replica runs the same FastAPI app as ``rag serve`` (:func:`api.main.create_app`) over its
own query pipeline, whose readers fan out to the shard actors of :mod:`rag.index.ray_shards`
instead of opening indexes themselves; every replica shares those actors. ``/metrics`` is each
replica's own, as with several uvicorn workers behind a balancer. The generator stays an
OpenAI-compatible URL (vLLM replicas in production): replicas never start llama.cpp themselves.

Replicas read their settings from their environment, as any process of the service does:
:func:`serve_on_ray` passes on this process's ``RAG_*`` and model-loading variables, and on
Kubernetes the RayService manifest (``deploy/rayservice.yaml``) sets them. :func:`build_app` is
the application builder that manifest names.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from rag.cluster import connect, import_ray, service_env
from rag.config import Settings, load_settings
from rag.errors import RagError
from rag.threads import for_queries

log = logging.getLogger(__name__)

APP_NAME = "rag"


class ServeDeployError(RagError):
    """Ray Serve could not start the API's replicas."""


class RagApi:
    """One API replica: the service's FastAPI app over a pipeline whose shards are Ray actors."""

    def __init__(self, config_path: str | None = None) -> None:
        from api.main import create_app
        from rag.index.ray_shards import RayFanout
        from rag.runtime import open_runtime

        settings = for_queries(load_settings(config_path))
        self._stack = contextlib.ExitStack()

        def fanout(info):  # noqa: ANN001, ANN202 - CollectionInfo -> RayFanout
            return RayFanout(settings, info, runtime.embedder.model_id, runtime.embedder.dim)

        runtime = self._stack.enter_context(
            open_runtime(settings, generator=bool(settings.generator.url), log=log.info, fanout=fanout)
        )
        self._asgi = create_app(settings, runtime.pipeline, None)

    def __serve_build_asgi_app__(self) -> Any:
        return self._asgi

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


def deployment(settings: Settings, config_path: str | None = None, env: dict[str, str] | None = None) -> Any:
    """The API deployment, bound: replica count (or autoscaling) and resources from ``settings.ray``."""
    import_ray()
    from ray import serve

    conf = settings.ray
    options: dict[str, Any] = {
        "name": "RagApi",
        "ray_actor_options": {"num_cpus": 1, "runtime_env": {"env_vars": env if env is not None else service_env()}},
    }
    if conf.max_replicas > conf.api_replicas:
        options["autoscaling_config"] = {
            "min_replicas": conf.api_replicas, "max_replicas": conf.max_replicas, "target_ongoing_requests": 8,
        }
    else:
        options["num_replicas"] = conf.api_replicas
    cls = serve.deployment(**options)(serve.ingress()(RagApi))
    return cls.bind(config_path)


def build_app(args: dict[str, str] | None = None) -> Any:
    """Ray Serve's application builder (``import_path: api.ray_serve:build_app``), settings from the environment.

    ``args`` may name a TOML settings file as ``config``.
    """
    config = (args or {}).get("config")
    return deployment(load_settings(config), config, env={})


def serve_on_ray(
    settings: Settings,
    host: str,
    port: int,
    *,
    address: str | None = None,
    config_path: str | None = None,
    log_line: Callable[[str], None] = print,
    ready: Callable[[], None] | None = None,
) -> None:
    """Deploy the API on the cluster and serve until interrupted; then remove it and its shard actors.

    Raises:
        ConfigError: Ray is missing or no cluster answers at the address.
    """
    ray = connect(settings.ray, address)
    from ray import serve

    from rag.index.ray_shards import stop_shard_actors

    serve.start(http_options={"host": host, "port": port})
    env = service_env()
    try:
        serve.run(deployment(settings, config_path, env), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        last = (str(exc).strip().splitlines() or ["no reason given"])[-1][:300]
        raise ServeDeployError(
            f"the API could not be deployed on Ray Serve ({last}); the replicas' logs are in the cluster's "
            "session directory, logs/serve/"
        ) from None
    replicas = settings.ray.api_replicas
    scale = f" (autoscaling to {settings.ray.max_replicas})" if settings.ray.max_replicas > replicas else ""
    log_line(f"serving on http://{host}:{port} with {replicas} Ray Serve replica(s){scale}: the page at /, docs at /docs")
    if ready is not None:
        ready()
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):
            serve.delete(APP_NAME)
        with contextlib.suppress(Exception):
            stop_shard_actors(settings.ray.namespace)
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
