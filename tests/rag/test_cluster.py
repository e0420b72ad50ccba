"""Joining a Ray cluster: an address that does not answer is a quick, named error, not a long hang."""

from __future__ import annotations

import socket
import time

import pytest

from rag.config import RayConfig
from rag.errors import ConfigError

pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

from rag.cluster import connect  # noqa: E402


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nothing_listens_fails_within_the_timeout(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConfigError, match="RAG_RAY__ADDRESS") as err:
        connect(RayConfig(connect_timeout_s=2.0), address)
    assert time.monotonic() - start < 10
    assert address in str(err.value) and "nothing answered" in str(err.value)


@pytest.mark.parametrize("address", ["not-an-address", "host:", ":6379", "ray://host:port"])
def test_a_malformed_address_is_named(address: str) -> None:
    with pytest.raises(ConfigError, match="is not auto, local, HOST:PORT"):
        connect(RayConfig(), address)
