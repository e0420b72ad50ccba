"""The bench's HTTP load generator, against a real local HTTP server: every request counted, errors counted, and
both sides' CPU per request reported, with either client library."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eval.bench.api_load import ApiLoadResult, _drive
from eval.bench.common import API_CLIENTS


class _Search(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Search.seen.append(body)
        status = 503 if body["query"] == "refused" else 200
        out = b'{"results": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # 32 clients connect at once; the default backlog of 5 resets some


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = _Server(("127.0.0.1", 0), _Search)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Search.seen = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_each_client_count_is_driven_and_errors_are_counted(server: str, client: str) -> None:
    cpu = time.process_time  # stands in for the server's /proc reading: the server is a thread of this process
    loads = asyncio.run(_drive(server, "c", ["a query", "refused", "another"], 0.3, cpu, client))
    assert [x.clients for x in loads] == list(API_CLIENTS)
    warm_up = 3
    assert sum(x.requests + x.errors for x in loads) + warm_up == len(_Search.seen)
    assert {b["collection"] for b in _Search.seen} == {"c"} and {b["query"] for b in _Search.seen} == {
        "a query", "refused", "another"}
    for x in loads:
        assert x.requests > 0 and x.rps > 0 and x.latency is not None
        # one query in three is refused with 503, cycled in order across the clients; only answers count as requests
        assert abs(x.errors - (x.requests + x.errors) / 3) <= x.clients + 1, x
        assert x.cpu_ms_per_request is not None and x.cpu_ms_per_request > 0
        assert x.client_cpu_ms_per_request is not None and x.client_cpu_ms_per_request > 0


def test_a_dead_server_is_all_errors_and_no_throughput() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loads = asyncio.run(_drive(f"http://127.0.0.1:{port}", "c", ["q"], 0.2, time.process_time, "aiohttp"))
    assert all(x.requests == 0 and x.errors > 0 and x.rps == 0 for x in loads), loads


def test_the_client_and_its_cpu_survive_the_json_round_trip(server: str) -> None:
    loads = asyncio.run(_drive(server, "c", ["q"], 0.2, time.process_time, "aiohttp"))
    result = ApiLoadResult("10k", 500, loads, cores=2, client="aiohttp")
    again = ApiLoadResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.client == "aiohttp" and again.loads == result.loads
    assert again.ideal_rps == result.ideal_rps and again.ideal_rps is not None
