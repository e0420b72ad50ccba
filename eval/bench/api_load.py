"""Throughput of the HTTP API: ``POST /v1/search`` (no rerank) with 1, 8 and 32 concurrent clients over loopback.

``eval`` may not import ``api``: the server is started with the ``rag serve`` command in a subprocess. Its CPU
time (user + system, from ``/proc``) per answered request gives the ideal rate, cores / CPU seconds of one search,
against which the measured rate is judged.

The clients run on the same cores as the server, so what they cost is taken from it. They use aiohttp when it is
installed (the ``dev`` extra): on 2 cores, against a 100k collection with 32 clients and 32 keep-alive connections
for both, its client spent 0.26-0.30 ms of CPU per request against httpx's 0.83-0.87 ms, and the server answered
11 % more requests in the same run. The load generator's CPU per request (its event loop's thread) is reported beside
the server's. Rates and CPU per request count answered searches (200) only; a refused or failed request is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.bench.common import (
    API_CLIENTS,
    REPO,
    TOP_K,
    WARM_UP,
    JsonDict,
    LatencyStats,
    cli_env,
    stats_json,
)
from rag.config import cpu_count
from rag.runtime.processes import free_port, stop_process

READY_TIMEOUT_S = 300


@dataclass(frozen=True)
class ClientLoad:
    """Requests answered by ``clients`` concurrent clients in the time given to each count."""

    clients: int
    requests: int
    errors: int
    rps: float
    latency: LatencyStats | None
    cpu_ms_per_request: float | None = None
    client_cpu_ms_per_request: float | None = None

    def to_json(self) -> JsonDict:
        """``{"requests", "errors", "rps", "latency_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request"}``."""
        return {"requests": self.requests, "errors": self.errors, "rps": self.rps, "latency_ms": stats_json(self.latency),
                "server_cpu_ms_per_request": self.cpu_ms_per_request,
                "client_cpu_ms_per_request": self.client_cpu_ms_per_request}

    @classmethod
    def from_json(cls, clients: int, data: Mapping[str, Any]) -> ClientLoad:
        """The inverse of :meth:`to_json`."""
        return cls(clients, data["requests"], data["errors"], data["rps"], LatencyStats.from_json(data["latency_ms"]),
                   data.get("server_cpu_ms_per_request"), data.get("client_cpu_ms_per_request"))


@dataclass(frozen=True)
class ApiLoadResult:
    """The API load test, at one level; ``skipped`` when the plan has none, ``error`` when the server failed.

    Attributes:
        size: the level's label.
        chunks: chunks in its collection.
        loads: one result per client count, in :data:`API_CLIENTS` order.
        error: why no load was measured.
        skipped: the plan measured no API throughput.
    """

    size: str = ""
    chunks: int = 0
    loads: tuple[ClientLoad, ...] = ()
    error: str | None = None
    skipped: bool = False
    cores: int = 0
    client: str = ""

    @property
    def ideal_rps(self) -> float | None:
        """Cores divided by the server's CPU seconds per search with one client (no queueing, no batching)."""
        one = next((x for x in self.loads if x.clients == 1), None)
        if one is None or not one.cpu_ms_per_request or not self.cores:
            return None
        return round(self.cores * 1000.0 / one.cpu_ms_per_request, 1)

    def load(self, clients: int) -> ClientLoad | None:
        """The result at ``clients`` concurrent clients, if measured."""
        return next((x for x in self.loads if x.clients == clients), None)

    def to_json(self) -> JsonDict:
        """The ``api_throughput`` object: ``{"skipped": true}``, or size, chunks and one entry per client count."""
        if self.skipped:
            return {"skipped": True}
        out: JsonDict = {"size": self.size, "chunks": self.chunks, "cores": self.cores, "ideal_rps": self.ideal_rps,
                         "client": self.client}
        if self.error is not None:
            out["error"] = self.error
        out.update({str(load.clients): load.to_json() for load in self.loads})
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiLoadResult:
        """The inverse of :meth:`to_json`."""
        if data.get("skipped"):
            return cls(skipped=True)
        loads = tuple(ClientLoad.from_json(int(k), v) for k, v in data.items() if k.isdigit())
        return cls(data.get("size", ""), data.get("chunks", 0), loads, data.get("error"), cores=data.get("cores", 0),
                   client=data.get("client", ""))


def _wait_ready(proc: subprocess.Popen, log: Any, base: str) -> str | None:
    """None once ``/health`` answers 200; otherwise why the server will not."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            log.seek(0)
            return f"server exited with {proc.returncode}: {log.read().decode(errors='replace')[-500:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return None
        if time.monotonic() > deadline:
            return f"server did not become ready in {READY_TIMEOUT_S} s"
        time.sleep(0.5)


def measure_api(data_dir: Path, collection: str, queries: list[str], seconds: float, say: Callable[[str], None],
                *, size: str = "", chunks: int = 0, models: Path | None = None) -> ApiLoadResult:
    """Requests per second, latency and server CPU per request of ``POST /v1/search`` (no rerank) per client count.

    Args:
        data_dir: the data dir holding ``collection`` (the server opens it; nothing else may hold it).
        collection: the collection searched.
        queries: query texts, cycled.
        seconds: time per client count.
        say: where progress lines go.
        size: the level's label, for the report.
        chunks: chunks in the collection, for the report.
        models: the ONNX export cache the server shares (see ``cli_env``).
    """
    port = free_port()
    log = tempfile.TemporaryFile()
    env = {**cli_env(data_dir, models), "RAG_RERANKER__MODEL": ""}  # search only: the reranker has its own target
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        error = _wait_ready(proc, log, base)
        if error is not None:
            return ApiLoadResult(size, chunks, error=error)
        say(f"API ready on {base}; {seconds:.0f} s per client count")
        client = "aiohttp" if importlib.util.find_spec("aiohttp") is not None else "httpx"
        loads = asyncio.run(_drive(base, collection, queries, seconds, lambda: _cpu_seconds(proc.pid), client))
        return ApiLoadResult(size, chunks, loads, cores=cpu_count(), client=client)
    finally:
        stop_process(proc, timeout_s=20)
        log.close()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None where ``/proc`` is absent)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Post = Callable[[dict[str, Any]], Awaitable[int]]


@contextlib.asynccontextmanager
async def _poster(base: str, client: str, connections: int) -> AsyncIterator[Post]:
    """``post(body) -> status`` for ``POST /v1/search``, on one pool of keep-alive connections; 0 when no response came."""
    if client == "aiohttp":
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=connections), timeout=timeout) as session:

            async def post_aiohttp(body: dict[str, Any]) -> int:
                try:
                    async with session.post("/v1/search", json=body) as r:
                        await r.read()
                        return r.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    return 0

            yield post_aiohttp
        return
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=connections)) as http:

        async def post_httpx(body: dict[str, Any]) -> int:
            try:
                return (await http.post("/v1/search", json=body)).status_code
            except httpx.HTTPError:
                return 0

        yield post_httpx


async def _drive(base: str, collection: str, queries: list[str], seconds: float,
                 cpu: Callable[[], float | None], client: str = "httpx") -> tuple[ClientLoad, ...]:
    out = []
    async with _poster(base, client, max(API_CLIENTS)) as post:
        for q in queries[:WARM_UP]:
            await post({"query": q, "collection": collection, "top_k": TOP_K})
        for clients in API_CLIENTS:
            lat: list[float] = []  # answered searches only
            errors = 0
            stop = time.perf_counter() + seconds
            counter = iter(range(10**9))

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    q = queries[next(counter) % len(queries)]
                    t = time.perf_counter()
                    if await post({"query": q, "collection": collection, "top_k": TOP_K}) != 200:
                        errors += 1
                        continue
                    lat.append((time.perf_counter() - t) * 1000.0)

            # the client's CPU is this thread's, the one running the event loop (not the bench's other threads)
            t0, cpu0, own0 = time.perf_counter(), cpu(), time.thread_time()
            await asyncio.gather(*(worker() for _ in range(clients)))
            elapsed, cpu1, own1 = time.perf_counter() - t0, cpu(), time.thread_time()
            per = round((cpu1 - cpu0) * 1000.0 / len(lat), 2) if lat and cpu0 is not None and cpu1 is not None else None
            own = round((own1 - own0) * 1000.0 / len(lat), 2) if lat else None
            out.append(ClientLoad(clients, len(lat), errors, round(len(lat) / elapsed, 2), LatencyStats.of(lat), per, own))
    return tuple(out)
