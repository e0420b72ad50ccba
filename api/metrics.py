"""Prometheus metrics: per-stage latency histograms, request and error counts, token counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app, so tests can build many apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "rag_stage_seconds", "Latency of each pipeline stage", ["stage"], registry=self.registry, buckets=_BUCKETS
        )
        self.requests = Counter("rag_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.errors = Counter("rag_errors", "HTTP responses with status >= 500", ["route"], registry=self.registry)
        self.tokens = Counter("rag_tokens", "Generator tokens", ["kind"], registry=self.registry)

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        """Record one request's per-stage timings."""
        for stage, ms in timings_ms.items():
            if ms:
                self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def observe_usage(self, usage: dict[str, int]) -> None:
        """Record generator token counts."""
        for kind in ("prompt_tokens", "completion_tokens"):
            if usage.get(kind):
                self.tokens.labels(kind.removesuffix("_tokens")).inc(usage[kind])
