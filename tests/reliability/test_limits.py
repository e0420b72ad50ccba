"""Item 8: resource limits over a real uvicorn server on 127.0.0.1.

Oversized bodies (declared and streamed), huge ``top_k``, very long questions, deeply
nested JSON, and slow clients that send headers and then trickle the body must get
bounded, clear 4xx answers, and the server must stay up (``/health`` after each).
Figure: ``RELIABILITY limits cases=N failures=F slowloris_headers=...``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from rag.runtime.processes import free_port
from tests.api.conftest import make_client

BODY_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def base_url(corpus_settings, embedder) -> Iterator[str]:  # noqa: ANN001
    app = make_client(corpus_settings, embedder, None, api={"body_timeout_s": BODY_TIMEOUT_S, "max_body_bytes": 1_000_000}).app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _trickle(port: int, body: bytes, delay: float, budget_s: float) -> tuple[str, float]:
    """Send headers at once, then the body one byte per ``delay`` s; return the status line and seconds taken."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=budget_s) as s:
        s.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        s.setblocking(False)
        reply = b""
        for byte in body:
            try:
                s.send(bytes([byte]))
            except OSError:
                break
            time.sleep(delay)
            try:
                reply += s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                break
            if reply or time.monotonic() - t0 > budget_s:
                break
        s.settimeout(max(budget_s - (time.monotonic() - t0), 0.1))
        try:
            while b"\r\n" not in reply:
                more = s.recv(4096)
                if not more:
                    break
                reply += more
        except OSError:
            pass
    return reply.split(b"\r\n", 1)[0].decode("latin-1"), time.monotonic() - t0


def test_limits_are_bounded_and_the_server_stays_up(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    http = httpx.Client(base_url=base_url, timeout=30)
    q = {"collection": "alpha"}
    cases: list[tuple[str, int, set[int]]] = []

    def check(name: str, response: httpx.Response, allowed: set[int]) -> None:
        cases.append((name, response.status_code, allowed))
        if response.status_code >= 400:
            assert response.json()["error"]["message"], name  # a clear, enveloped error
        assert http.get("/health").status_code == 200, f"server down after {name}"

    check("declared 2 MB body", http.post("/v1/search", content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"}), {413})

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(40):
            yield b"a" * 50_000
        yield b'", "collection": "alpha"}'

    check("streamed 2 MB body, no length", http.post("/v1/search", content=chunks(), headers={"content-type": "application/json"}), {413})
    for k in (101, 10_000, 10**9, 10**40, 0, -5):
        check(f"top_k={k}", http.post("/v1/search", json={**q, "query": "fog", "top_k": k}), {422})
    check("question 4,001 chars", http.post("/v1/search", json={**q, "query": "fog " * 1001}), {422})
    check("question 300,000 chars", http.post("/v1/search", json={**q, "query": "x" * 300_000}), {413, 422})
    check("ask question 100,000 chars", http.post("/v1/ask", json={**q, "query": "y" * 100_000}), {413, 422})
    check("chat 100 long messages", http.post("/v1/chat/completions", json={"model": "alpha", "messages": [{"role": "user", "content": "z" * 9_000}] * 100}), {413, 422})
    check("nested JSON 100k deep", http.post("/v1/search", content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}), {400, 422})
    check("nested filters 5k deep", http.post("/v1/search", content=b'{"query": "fog", "filters": ' + b'{"metadata": ' * 5000 + b"1" + b"}" * 5001, headers={"content-type": "application/json"}), {400, 422})
    check("1,000 metadata filters", http.post("/v1/search", json={**q, "query": "fog", "filters": {"metadata": {f"k{i}": i for i in range(1000)}}}), {422})
    check("in-list of 5,000", http.post("/v1/search", json={**q, "query": "fog", "filters": {"metadata": {"k": {"in": list(range(5000))}}}}), {422})
    check("not JSON", http.post("/v1/search", content=b"\xff\xfe garbage", headers={"content-type": "application/json"}), {400, 422})

    # A slow client: headers at once, then one body byte every 0.3 s; the body never completes in time.
    slow_body = b'{"query": "fog horn", "collection": "alpha", "top_k": 3}' + b" " * 200
    status, took = _trickle(port, slow_body, 0.3, budget_s=BODY_TIMEOUT_S + 10)
    cases.append((f"slow body ({took:.1f} s)", int(status.split()[1]) if len(status.split()) > 1 else 0, {408}))
    assert took < BODY_TIMEOUT_S + 5, f"a slow body held the request for {took:.1f} s"
    # Meanwhile-style check: 20 idle connections holding half-sent headers do not stop service.
    idle = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        idle.append(s)
    t0 = time.monotonic()
    r = http.post("/v1/search", json={**q, "query": "fog horn"})
    served_while_idle = time.monotonic() - t0
    check("search while 20 half-open header connections wait", r, {200})
    time.sleep(6)  # longer than uvicorn's keep-alive timeout: are half-sent headers dropped?
    still_open = 0
    for s in idle:
        s.setblocking(False)
        try:
            still_open += s.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        s.close()
    check("health after all", http.get("/health"), {200})

    failures = [c for c in cases if c[1] not in c[2]]
    print(
        f"RELIABILITY limits cases={len(cases)} failures={len(failures)} "
        f"slow_body_answer={status!r} in {took:.1f}s search_while_20_slowloris={served_while_idle * 1000:.0f}ms "
        f"half_sent_headers_still_open_after_6s={still_open}/20"
    )
    for c in cases:
        print(f"  {c[0]}: {c[1]} (allowed {sorted(c[2])})")
    assert not failures, failures
