"""Reliability fixtures: the API suite's real corpus and real llama.cpp generator, reused by import."""

from __future__ import annotations

from tests.api.conftest import corpus_settings, local_generator  # noqa: F401  (pytest fixtures)
