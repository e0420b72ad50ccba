#!/usr/bin/env python
"""Load test: many concurrent clients against a real ``rag serve`` on 127.0.0.1.

Starts ``python -m cli.main serve`` as a subprocess on a free loopback port over a
prepared data dir (ingesting ``data/`` first unless ``--skip-ingest``), runs
``--search-clients`` clients against ``/v1/search`` and ``--ask-clients`` against
``/v1/ask`` for ``--duration`` seconds, samples the server's RSS once a second,
and prints one JSON summary. Exit status 0 when no request errored.

An error is a transport failure, a timeout, or any status other than 200; for
``/v1/ask`` a 429 (every generation slot busy past the bounded wait) is counted
separately, as ``rate_limited``. Memory is "flat" when the RSS at the end is at
most 1.1 times the RSS after the first ``--settle-s`` seconds of load.

The soak of docs/reliability.md (10 minutes; asks wait minutes for llama.cpp on 2 cores):

    .venv/bin/python scripts/loadtest.py --duration 600 --search-clients 32 --ask-clients 2 --ask-top-k 1 \
        --set RAG_GENERATOR__MAX_TOKENS=48 --set RAG_GENERATOR__TIMEOUT_S=600 --request-timeout 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rag.runtime.processes import free_port

REPO = Path(__file__).resolve().parents[1]
FLAT_RATIO = 1.1
"""Memory is flat when the RSS at the end is at most this times the RSS after ``--settle-s``."""

SEARCH_QUERIES = (
    "How does ingestion survive a crash?",
    "reciprocal rank fusion",
    "which settings control chunk size",
    "API keys and collections",
    "how are citations verified",
    "BM25 and dense retrieval",
    "evaluation metrics nDCG recall",
    "compact tombstones",
    "how do I start the service",
    "what is a cross-encoder reranker",
)
ASK_QUESTIONS = (
    "How does the service keep ingestion safe when the process is killed?",
    "What does reciprocal rank fusion combine?",
    "How are API keys scoped?",
)


@dataclass
class Stats:
    """Outcome counts and latencies of one endpoint."""

    clients: int
    requests: int = 0
    ok: int = 0
    errors: int = 0
    rate_limited: int = 0
    generator_unavailable: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def summary(self, seconds: float) -> dict:
        """The JSON-ready figures."""
        lat = sorted(self.latencies_ms)
        return {
            "clients": self.clients,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "rate_limited_429": self.rate_limited,
            "generator_unavailable_503": self.generator_unavailable,
            "rps": round(self.requests / seconds, 2) if seconds else 0.0,
            "p50_ms": round(_pct(lat, 50), 1),
            "p99_ms": round(_pct(lat, 99), 1),
            "max_ms": round(lat[-1], 1) if lat else 0.0,
            "error_samples": self.samples[:5],
        }


def _pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def threads(pid: int) -> int:
    """Number of threads of a process, from /proc (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _env(data_dir: Path, generator_url: str | None, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if generator_url:
        env["RAG_GENERATOR__URL"] = generator_url
    env.update(extra)
    return env


def start_server(data_dir: Path, port: int, env: dict[str, str], log_path: Path, ready_s: float) -> subprocess.Popen:
    """Start ``rag serve`` and wait until ``/health`` answers.

    Raises:
        RuntimeError: the server exited or did not answer within ``ready_s``.
    """
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not ready after {ready_s} s:\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Ask the server to stop (SIGINT, so it stops its generator too), then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _client(
    http: httpx.AsyncClient, path: str, bodies: list[dict], stats: Stats, deadline: float, max_requests: int, offset: int
) -> None:
    i = offset
    while time.monotonic() < deadline and stats.requests < max_requests:
        body = bodies[i % len(bodies)]
        i += 1
        stats.requests += 1
        t = time.perf_counter()
        try:
            r = await http.post(path, json=body)
        except httpx.HTTPError as exc:
            stats.errors += 1
            stats.samples.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        stats.latencies_ms.append((time.perf_counter() - t) * 1000.0)
        if r.status_code == 200:
            stats.ok += 1
        elif r.status_code == 429 and path == "/v1/ask":
            stats.rate_limited += 1
        elif r.status_code == 503 and path == "/v1/ask":  # still an error, but named: the generator gave up
            stats.errors += 1
            stats.generator_unavailable += 1
            stats.samples.append(f"{path}: 503 {r.text[:200]}")
        else:
            stats.errors += 1
            stats.samples.append(f"{path}: {r.status_code} {r.text[:200]}")


async def run_load(port: int, pid: int, args: argparse.Namespace) -> dict:
    """Drive the clients for ``args.duration`` seconds and collect the figures."""
    base = f"http://127.0.0.1:{port}"
    search = Stats(args.search_clients)
    ask = Stats(args.ask_clients)
    search_bodies = [{"query": q, "collection": args.collection, "top_k": 10} for q in SEARCH_QUERIES]
    ask_bodies = [{"query": q, "collection": args.collection, "top_k": args.ask_top_k} for q in ASK_QUESTIONS]
    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout closes them:
    # at equal timeouts a request sent on a connection the server is closing fails with ReadError.
    limits = httpx.Limits(max_connections=args.search_clients + args.ask_clients + 4, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=args.request_timeout, limits=limits) as http:
        for q in search_bodies[:3]:  # warm-up: first-call allocations are not a leak
            await http.post("/v1/search", json=q)
        rss: list[float] = [rss_mb(pid)]
        t0 = time.monotonic()
        at: list[float] = [0.0]  # seconds into the load of each rss sample
        deadline = t0 + args.duration
        timeline: list[tuple[float, float, int]] = [(0.0, rss[0], threads(pid))]

        async def sample() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                rss.append(rss_mb(pid))
                at.append(time.monotonic() - t0)
                if len(rss) % 10 == 1:
                    timeline.append((round(time.monotonic() - t0), round(rss[-1], 1), threads(pid)))

        tasks = [
            _client(http, "/v1/search", search_bodies, search, deadline, args.max_requests, i) for i in range(args.search_clients)
        ] + [_client(http, "/v1/ask", ask_bodies, ask, deadline, args.max_requests, i) for i in range(args.ask_clients)]
        await asyncio.gather(sample(), *tasks)
        seconds = time.monotonic() - t0
        rss.append(rss_mb(pid))
        health = await http.get("/health")
    # "Flat": the RSS at the end is at most 1.1x the RSS once the first ``settle_s`` seconds are over
    # (thread pools, arenas and readers fill up then).
    settled = next((r for r, t in zip(rss, at) if t >= args.settle_s), rss[-1])
    half = rss[: max(1, len(rss) // 2)]
    growth = rss[-1] - max(half)
    return {
        "duration_s": round(seconds, 1),
        "search": search.summary(seconds),
        "ask": ask.summary(seconds),
        "requests": search.requests + ask.requests,
        "errors": search.errors + ask.errors,
        "rss_mb": {
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "max": round(max(rss), 1),
            "settled": round(settled, 1),
            "settle_s": args.settle_s,
            "end_over_settled": round(rss[-1] / settled, 3) if settled else None,
            "growth_after_first_half_mb": round(growth, 1),
            "flat": bool(settled) and rss[-1] <= FLAT_RATIO * settled,
            "samples": len(rss),
            "timeline_s_mb_threads": timeline,
        },
        "health_after": health.status_code,
    }


def ingest(data_dir: Path, corpus: Path, collection: str, env: dict[str, str]) -> None:
    """Ingest ``corpus`` with the real CLI.

    Raises:
        RuntimeError: the ingest failed.
    """
    r = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(corpus), "-c", collection, "--json", "--create"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    if r.returncode != 0:
        raise RuntimeError(f"ingest failed ({r.returncode}):\n{r.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the load, print the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--search-clients", type=int, default=32)
    p.add_argument("--ask-clients", type=int, default=2)
    p.add_argument("--settle-s", type=float, default=120.0, help="seconds of load before the reference RSS for 'flat'")
    p.add_argument("--max-requests", type=int, default=200_000, help="hard cap per endpoint")
    p.add_argument("--request-timeout", type=float, default=180.0)
    p.add_argument("--data-dir", type=Path, default=None, help="prepared data dir (default: a temp dir)")
    p.add_argument("--corpus", type=Path, default=REPO / "data")
    p.add_argument("--collection", default="default")
    p.add_argument("--skip-ingest", action="store_true", help="the data dir already holds the collection")
    p.add_argument("--generator-url", default=None, help="use this generator instead of starting llama.cpp")
    p.add_argument("--no-rerank", action="store_true", help="serve without the cross-encoder")
    p.add_argument("--ask-top-k", type=int, default=3, help="sources per question (prompt size)")
    p.add_argument("--set", action="append", default=[], metavar="RAG_X=V", help="extra server setting (repeatable)")
    p.add_argument("--ready-timeout", type=float, default=600.0)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        extra = {"RAG_RERANKER__MODEL": ""} if args.no_rerank else {}
        extra.update(kv.split("=", 1) for kv in args.set)
        env = _env(data_dir, args.generator_url, extra)
        if not args.skip_ingest:
            ingest(data_dir, args.corpus, args.collection, env)
        port = free_port()
        log_path = Path(tmp) / "server.log"
        proc = start_server(data_dir, port, env, log_path, args.ready_timeout)
        try:
            summary = asyncio.run(run_load(port, proc.pid, args))
        finally:
            stop_server(proc)
        summary["server_exit"] = proc.returncode
    print(json.dumps(summary, indent=2))
    return 0 if summary["errors"] == 0 and summary["health_after"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
