"""The REST API over a real pipeline: search, ask, streaming, OpenAI compatibility, keys, bad input."""

from __future__ import annotations

import json

import pytest
from openai import OpenAI

from tests.api.conftest import make_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def client(corpus_settings, embedder, local_generator):  # noqa: ANN001, ANN201
    return make_client(corpus_settings, embedder, local_generator)


@pytest.fixture(scope="module")
def search_client(corpus_settings, embedder):  # noqa: ANN001, ANN201
    """No generator configured at all: search must work, ask must say 503."""
    return make_client(corpus_settings, embedder, None)


def test_search_returns_scored_results_with_timings(search_client) -> None:  # noqa: ANN001
    r = search_client.post("/v1/search", json={"query": "when was the Tarbet lighthouse built", "collection": "alpha", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["external_id"] for x in body["results"]][0] == "a1"
    assert len(body["results"]) == 2
    first = body["results"][0]
    assert set(first) >= {"chunk_id", "document_id", "source", "title", "section", "char_start", "char_end", "text", "scores"}
    assert first["scores"]["rrf"] > 0 and first["scores"]["bm25"] is not None and first["scores"]["dense"] is not None
    assert set(body["timings_ms"]) >= {"embed", "bm25", "dense", "fuse", "total"}
    assert body["pipeline"]["rerank"] is False


def test_search_filters_apply_inside_retrieval(search_client) -> None:  # noqa: ANN001
    r = search_client.post(
        "/v1/search",
        json={"query": "Tarbet lighthouse", "collection": "alpha", "top_k": 5, "filters": {"metadata": {}, "source_prefix": "/nonexistent"}},
    )
    assert r.status_code == 200 and r.json()["results"] == []


def test_ask_without_generator_is_503_and_search_still_works(search_client) -> None:  # noqa: ANN001
    r = search_client.post("/v1/ask", json={"query": "When was the lighthouse built?", "collection": "alpha"})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable"
    assert search_client.post("/v1/search", json={"query": "fog horn", "collection": "alpha"}).status_code == 200


def test_ask_with_dead_generator_is_503(corpus_settings, embedder) -> None:  # noqa: ANN001
    dead = make_client(corpus_settings, embedder, "http://127.0.0.1:9/v1", generator={"url": "http://127.0.0.1:9/v1", "timeout_s": 2})
    r = dead.post("/v1/ask", json={"query": "When was the lighthouse built?", "collection": "alpha"})
    assert r.status_code == 503 and "generator" in r.json()["error"]["message"]


@pytest.mark.generator
def test_ask_cites_returned_sources(client) -> None:  # noqa: ANN001
    r = client.post("/v1/ask", json={"query": "In which year was the Tarbet lighthouse built?", "collection": "alpha", "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"answer", "citations", "claims", "faithfulness", "abstained", "pipeline", "timings_ms", "usage"}
    assert set(body["timings_ms"]) == {"plan", "embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total"}
    assert body["timings_ms"]["generate"] > 0
    assert not body["abstained"], body
    assert "1887" in body["answer"]
    assert body["citations"], "an answer must cite its sources"
    ids = {c["chunk_id"] for c in body["citations"]}
    search = client.post("/v1/search", json={"query": "In which year was the Tarbet lighthouse built?", "collection": "alpha", "top_k": 3}).json()
    assert ids <= {x["chunk_id"] for x in search["results"]}
    for claim in body["claims"]:
        assert claim["verdict"] in ("supported", "unsupported", "uncited")
        for n in claim["citations"]:
            assert n in {c["n"] for c in body["citations"]}
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.generator
def test_the_same_question_twice_gets_the_same_answer(client) -> None:  # noqa: ANN001
    """Temperature 0 must be repeatable: the local server re-reads every prompt (no reuse of the last one's cache)."""
    body = {"query": "Who was the last keeper of the Tarbet lighthouse and when did they retire?", "collection": "alpha"}
    other = {"query": "How often does the fog horn sound?", "collection": "alpha"}
    first = client.post("/v1/ask", json=body).json()
    client.post("/v1/ask", json=other)
    second = client.post("/v1/ask", json=body).json()
    third = client.post("/v1/ask", json=body).json()
    assert all("answer" in a for a in (first, second, third)), (first, second, third)
    assert first["answer"] == second["answer"] == third["answer"]
    assert first["claims"] == second["claims"] == third["claims"]


@pytest.mark.generator
def test_a_streamed_answer_reports_the_same_usage_as_a_plain_one(client) -> None:  # noqa: ANN001
    """llama-cpp-python's server sends no usage in streams; our entry point adds the final usage chunk."""
    body = {"query": "How often does the fog horn sound?", "collection": "alpha"}
    plain = client.post("/v1/ask", json=body).json()
    with client.stream("POST", "/v1/ask", json={**body, "stream": True}) as r:
        lines = list(r.iter_lines())
    done = json.loads(lines[lines.index("event: done") + 1].removeprefix("data: "))
    assert plain["usage"]["prompt_tokens"] > 100  # the system prompt and sources
    assert done["usage"] == plain["usage"]


def test_ask_stream_sends_events_in_order(client) -> None:  # noqa: ANN001
    with client.stream("POST", "/v1/ask", json={"query": "How often does the fog horn sound?", "collection": "alpha", "stream": True}) as r:
        assert r.status_code == 200
        events = [line.removeprefix("event: ") for line in r.iter_lines() if line.startswith("event: ")]
    assert events[0] == "citations"
    assert events[-2:] == ["verification", "done"]
    assert "token" in events and set(events[1:-2]) == {"token"}


@pytest.mark.generator
def test_openai_client_gets_citations(client) -> None:  # noqa: ANN001
    oa = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    resp = oa.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "Who was the last keeper of Tarbet lighthouse?"}])
    assert "Morag" in resp.choices[0].message.content
    rag = resp.model_extra["rag"]
    assert rag["citations"] and rag["claims"]

    stream = oa.chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "Who was the last keeper of Tarbet lighthouse?"}], stream=True
    )
    text, final = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.model_extra.get("rag"):
            final = chunk.model_extra["rag"]
    assert "Morag" in text
    assert final is not None and final["citations"], "citations must survive streaming"


def test_keys_are_scoped_to_collections(corpus_settings, embedder) -> None:  # noqa: ANN001
    c = make_client(corpus_settings, embedder, None, api_keys={"key-a": ["alpha"], "key-b": ["beta"]})
    a = {"Authorization": "Bearer key-a"}
    assert c.post("/v1/search", json={"query": "saffron", "collection": "alpha"}).status_code == 401
    assert c.post("/v1/search", json={"query": "saffron", "collection": "alpha"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    r = c.post("/v1/search", json={"query": "saffron recipe", "collection": "beta"}, headers=a)
    assert r.status_code == 403 and r.json()["error"]["param"] == "collection"
    r = c.post("/v1/search", json={"query": "saffron recipe cardamom", "collection": "alpha", "top_k": 10}, headers=a)
    assert r.status_code == 200
    assert all(x["external_id"].startswith("a") for x in r.json()["results"])
    names = [x["name"] for x in c.get("/v1/collections", headers=a).json()["collections"]]
    assert names == ["alpha"]


BAD_BODIES = [
    ("not json", None),
    ({}, "query"),
    ({"collection": "alpha"}, "query"),
    ({"query": ""}, "query"),
    ({"query": "x", "top_k": 0}, "top_k"),
    ({"query": "x", "top_k": "many"}, "top_k"),
    ({"query": "x", "top_k": 10**9}, "top_k"),
    ({"query": 5}, "query"),
    ({"query": "x", "collection": ""}, "collection"),
    ({"query": "x", "filters": {"metadata": {"year": {"between": 3}}}}, "filters.metadata.year"),
    ({"query": "x", "filters": "yes"}, "filters"),
    ({"query": "x", "unknown_field": 1}, "unknown_field"),
    ({"query": "   "}, "query"),
    ({"query": "x" * 5000}, "query"),
]


@pytest.mark.parametrize("body,param", BAD_BODIES)
@pytest.mark.parametrize("route", ["/v1/search", "/v1/ask"])
def test_malformed_requests_get_4xx_naming_the_field(search_client, route, body, param) -> None:  # noqa: ANN001
    if body == "not json":
        r = search_client.post(route, content=b"{not json", headers={"content-type": "application/json"})
    else:
        r = search_client.post(route, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param:
        assert param.split(".")[0] in (err["param"] or "") + err["message"]


def test_unknown_collection_is_404(search_client) -> None:  # noqa: ANN001
    r = search_client.post("/v1/search", json={"query": "x", "collection": "nope"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "collection"


def test_oversized_body_is_413(search_client) -> None:  # noqa: ANN001
    r = search_client.post("/v1/search", content=json.dumps({"query": "x" * 2_000_000}).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def _requests(client, route: str, status: int) -> float:  # noqa: ANN001
    line = f'rag_requests_total{{route="{route}",status="{status}"}} '
    found = [x for x in client.get("/metrics").text.splitlines() if x.startswith(line)]
    return float(found[0][len(line):]) if found else 0.0


def test_health_and_metrics(search_client) -> None:  # noqa: ANN001
    h = search_client.get("/health").json()
    # No generator and no reranker by configuration: off, which is not degradation.
    assert h["status"] == "ok" and h["components"]["generator"]["ok"] is False
    assert h["components"]["generator"]["state"] == "off" and h["components"]["reranker"]["state"] == "off"
    assert h["components"]["reranker"]["ok"] is False and h["components"]["database"]["ok"] is True
    ok, missing = _requests(search_client, "/v1/search", 200), _requests(search_client, "/v1/search", 404)
    search_client.post("/v1/search", json={"query": "fog", "collection": "alpha"})
    text = search_client.get("/metrics").text
    assert 'rag_stage_seconds_bucket{le="0.001",stage="bm25"}' in text
    assert _requests(search_client, "/v1/search", 200) == ok + 1
    search_client.post("/v1/search", json={"query": "fog", "collection": "no-such-collection"})
    assert _requests(search_client, "/v1/search", 404) == missing + 1
    too_big = search_client.post("/v1/search", content=b"x" * (search_client.app.state.settings.api.max_body_bytes + 1),
                                 headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and _requests(search_client, "unmatched", 413) >= 1


def test_health_is_degraded_when_a_configured_generator_is_down(corpus_settings, embedder) -> None:  # noqa: ANN001
    from rag.runtime.processes import free_port

    client = make_client(corpus_settings, embedder, f"http://127.0.0.1:{free_port()}/v1")
    h = client.get("/health").json()
    assert h["status"] == "degraded" and h["components"]["generator"]["state"] == "down"


def test_missing_default_reranker_is_off_in_one_line(tmp_path) -> None:  # noqa: ANN001
    from rag.config import load_settings
    from rag.runtime import load_reranker

    settings = load_settings(data_dir=tmp_path)  # the default ms-marco reranker, which does not install offline
    assert not settings.reranker_explicit
    reranker, status = load_reranker(settings)
    assert reranker is None and status.state == "off"
    assert "\n" not in status.detail and status.detail.startswith("off:") and "RAG_RERANKER__MODEL" in status.detail


def test_openapi_docs(search_client) -> None:  # noqa: ANN001
    spec = search_client.get("/openapi.json").json()
    assert {"/v1/search", "/v1/ask", "/v1/chat/completions", "/v1/collections", "/health", "/v1/feedback"} <= set(spec["paths"])
    assert search_client.get("/docs").status_code == 200


def test_reference_pages_load_nothing_from_other_hosts(search_client) -> None:  # noqa: ANN001
    import re

    for page in ("/docs", "/redoc"):
        html = search_client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
        urls = [a or b for a, b in urls if a or b]
        assert urls, page
        assert all(u.startswith("/") for u in urls), f"{page} loads {urls}"
        for u in urls:
            if u.startswith("/docs-assets/"):
                assert search_client.get(u).status_code == 200, u


def test_openapi_declares_the_bearer_scheme_and_stream_events(search_client) -> None:  # noqa: ANN001
    spec = search_client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    events = spec["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert set(events["x-events"]) == {"citations", "token", "verification", "done", "error"}
    assert {"CitationsEvent", "VerificationEvent", "DoneEvent", "ChatCompletionChunk"} <= set(spec["components"]["schemas"])


def test_models_lists_the_collections_a_key_may_use(corpus_settings, embedder) -> None:  # noqa: ANN001
    c = make_client(corpus_settings, embedder, None, api_keys={"key-a": ["alpha"]})
    r = c.get("/v1/models", headers={"authorization": "Bearer key-a"})
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert [m["id"] for m in r.json()["data"]] == ["alpha"] and r.json()["data"][0]["object"] == "model"
    assert c.get("/v1/models").status_code == 401


def test_feedback_is_stored(search_client) -> None:  # noqa: ANN001
    hit = search_client.post("/v1/search", json={"query": "fog horn", "collection": "alpha"}).json()["results"][0]
    r = search_client.post("/v1/feedback", json={"query": "fog horn", "collection": "alpha", "chunk_id": hit["chunk_id"], "relevant": True})
    assert r.status_code == 200 and r.json()["id"] >= 1
    r = search_client.post("/v1/feedback", json={"query": "fog horn", "collection": "alpha", "chunk_id": 10**9, "relevant": True})
    assert r.status_code == 404


def test_searches_beyond_search_threads_wait_their_turn(corpus_settings, embedder) -> None:  # noqa: ANN001
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    api = {**corpus_settings.api.model_dump(), "search_threads": 2}
    client = make_client(corpus_settings, embedder, None, api=api)
    pipeline = client.app.state.pipeline
    real, running, most, lock = pipeline.search, [0], [0], threading.Lock()

    def search(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real search, counted
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    pipeline.search = search
    body = {"query": "when was the Tarbet lighthouse built", "collection": "alpha", "top_k": 1}
    with client, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.post("/v1/search", json=body).status_code, range(8)))
    assert codes == [200] * 8
    assert most[0] == 2  # eight at once, never more than two searching
