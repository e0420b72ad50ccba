"""Prometheus metrics: per-stage latency histograms, request and error counts, token counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from rag.types import Answer, Timings

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

    def observe_stages(self, timings: Timings) -> None:
        """Record one request's per-stage timings."""
        for stage, ms in timings.as_dict().items():
            if ms:
                self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def observe_answer(self, answer: Answer) -> None:
        """Record an answer's stage timings and generator token counts."""
        self.observe_stages(answer.timings)
        for kind, n in (("prompt", answer.usage.prompt_tokens), ("completion", answer.usage.completion_tokens)):
            if n:
                self.tokens.labels(kind).inc(n)
