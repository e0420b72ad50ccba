"""Logs hold routes, fields and error codes; query and document text only with RAG_LOG_QUERIES."""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import make_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

QUESTION = "When was the Tarbet lighthouse built exactly?"


def test_a_search_logs_nothing_of_its_query(corpus_settings, embedder, no_content_in_logs) -> None:  # noqa: ANN001
    client = make_client(corpus_settings, embedder, None)
    r = client.post("/v1/search", json={"query": QUESTION, "collection": "alpha", "top_k": 3})
    assert r.status_code == 200, r.text
    assert "1887" in r.json()["results"][0]["text"]
    assert not any("Tarbet" in line for line in no_content_in_logs.lines)


def test_a_refused_request_logs_its_route_field_and_code_but_not_its_text(corpus_settings, embedder, no_content_in_logs) -> None:  # noqa: ANN001
    client = make_client(corpus_settings, embedder, None)
    long = "lighthouse keepers of the north " * 200
    r = client.post("/v1/search", json={"query": long, "collection": "alpha"})
    assert r.status_code == 422
    r = client.post("/v1/search", json={"query": QUESTION, "collection": "alpha", "top_k": "many"})
    assert r.status_code == 422
    lines = no_content_in_logs.lines
    assert any("POST /v1/search -> 422" in line and "(field query)" in line for line in lines), lines
    assert any("POST /v1/search -> 422" in line and "(field top_k)" in line for line in lines), lines
    assert not any("keepers" in line or "Tarbet" in line for line in lines), lines


def test_an_unexpected_error_logs_where_it_was_raised_not_its_message(corpus_settings, embedder, no_content_in_logs) -> None:  # noqa: ANN001
    client = make_client(corpus_settings, embedder, None)
    secret = "the payroll of Morag Innes"

    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError(f"cannot search for {secret}")

    client.app.state.pipeline.search = broken
    r = client.post("/v1/search", json={"query": QUESTION, "collection": "alpha"})
    assert r.status_code == 500
    assert secret not in r.text
    errors = [line for line in no_content_in_logs.lines if "-> 500" in line]
    assert errors and "RuntimeError" in errors[0] and "broken" in errors[0], no_content_in_logs.lines
    assert not any(secret in line for line in no_content_in_logs.lines)


@pytest.mark.logs_queries
def test_query_logging_when_turned_on_writes_the_question(corpus_settings, embedder, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    # The check that the autouse fixture can see a leak: with RAG_LOG_QUERIES on, the question is there.
    client = make_client(corpus_settings, embedder, None, log_queries=True)
    with caplog.at_level(logging.INFO, logger="api"):
        r = client.post("/v1/search", json={"query": "zqwhere is the fog horn", "collection": "alpha"})
    assert r.status_code == 200
    assert any("zqwhere is the fog horn" in rec.getMessage() for rec in caplog.records)
