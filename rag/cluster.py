"""Joining a Ray cluster, for the ``ray`` engine of ingestion, search and serving.

Ray is an optional extra (``pip install 'rag-service[ray]'``): only this module and the modules
that run on the cluster import it, and only when ``--engine ray`` is asked for.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from rag.config import RayConfig
from rag.errors import ConfigError

ADDRESS_SETTING = "RAG_RAY__ADDRESS"

# What the cluster's worker processes are given from this environment: model loading and the
# embedding settings. Never the database URL, API keys or key files.
_FORWARDED_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "RAG_EMBEDDING__", "RAG_CHUNKING__", "RAG_LEXICAL__")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed, saying how to install it.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--engine", f"the ray engine needs Ray ({exc}); install the extra: pip install 'rag-service[ray]'"
        ) from None
    return ray


def worker_env() -> dict[str, str]:
    """The environment variables an ingest's workers get from this process."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIXES)}


def service_env() -> dict[str, str]:
    """What the service's own processes on the cluster (shard actors, API replicas) get: every ``RAG_*``
    setting, the database and keys included, and the model-loading variables."""
    return {k: v for k, v in os.environ.items() if k.startswith(("RAG_", *_FORWARDED_PREFIXES))}


def connect(config: RayConfig, address: str | None = None) -> Any:
    """Join the cluster (or start a local one with ``address="local"``); returns ``ray``.

    Args:
        config: the Ray settings.
        address: overrides ``config.address`` (``--address``).

    Raises:
        ConfigError: Ray is missing, or no cluster answers at the address (naming it and the setting).
    """
    ray = import_ray()
    where = address or config.address
    _probe(where, config.connect_timeout_s)
    if ray.is_initialized():
        return ray
    try:
        ray.init(
            address=None if where == "local" else where,
            namespace=config.namespace,
            runtime_env={"env_vars": worker_env()},
            log_to_driver=False,
            logging_level=logging.WARNING,
            include_dashboard=False if where == "local" else None,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--address / {ADDRESS_SETTING}", f"cannot join a Ray cluster at {where!r}: {first}"
        ) from None
    return ray


def _probe(where: str, timeout_s: float) -> None:
    """Fail fast when a ``HOST:PORT`` or ``ray://HOST:PORT`` address accepts no connection.

    ``ray.init`` keeps retrying such an address for many minutes (14 measured here); ``auto`` and ``local``
    are Ray's to resolve and fail quickly on their own.

    Raises:
        ConfigError: the address is malformed or nothing listens there within ``timeout_s``.
    """
    if where in ("auto", "local"):
        return
    target = where.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address / {ADDRESS_SETTING}",
                          f"{where!r} is not auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--address / {ADDRESS_SETTING}",
            f"cannot join a Ray cluster at {where!r}: nothing answered within {timeout_s:g} s ({exc.strerror or exc}); "
            "start one with `ray start --head` or check the address",
        ) from None


def cluster_gpus(ray: Any) -> float:
    """GPUs the joined cluster has."""
    return float(ray.cluster_resources().get("GPU", 0.0))
