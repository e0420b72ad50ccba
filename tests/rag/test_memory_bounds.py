"""Memory that stays flat under load: the malloc arena cap of `rag serve` and the bounds of the in-process caches.

The soak that measures the RSS itself is the ``slow`` test in tests/reliability/test_load.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import api.server
from rag.config import load_settings
from rag.index.reader import ReaderCache
from rag.security.keys import Rate
from rag.security.ratelimit import RateLimiter
from rag.threads import SERVER_MALLOC_ARENAS, limit_malloc_arenas

REPO = Path(__file__).resolve().parents[2]

# 16 threads malloc at the same moment; glibc's malloc_stats() prints one "Arena N:" line per arena.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from rag.threads import limit_malloc_arenas
    limit_malloc_arenas(int(sys.argv[1]))
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = threading.Barrier(16)
    def work():
        start.wait()
        for p in [libc.malloc(4096) for _ in range(2000)]:
            libc.free(p)
    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc.malloc_stats()
    """
)


def _arenas(cap: int) -> int:
    r = subprocess.run([sys.executable, "-c", _PROBE, str(cap)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return sum(line.startswith("Arena ") for line in r.stderr.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_arena_cap_holds_with_many_threads() -> None:
    assert _arenas(SERVER_MALLOC_ARENAS) <= SERVER_MALLOC_ARENAS
    assert _arenas(0) > SERVER_MALLOC_ARENAS  # without the cap, 16 contending threads get arenas of their own


def test_arena_cap_zero_changes_nothing() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.parametrize("arenas", [2, 0])
def test_serve_caps_arenas_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arenas: int) -> None:
    calls: list[str] = []
    monkeypatch.setattr(api.server, "limit_malloc_arenas", lambda n: calls.append(f"arenas={n}"))

    def no_runtime(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - stops run() before models load
        calls.append("runtime")
        raise RuntimeError("stop")

    monkeypatch.setattr(api.server, "open_runtime", no_runtime)
    with pytest.raises(RuntimeError, match="stop"):
        api.server.run(load_settings(data_dir=tmp_path, api={"malloc_arenas": arenas}), log=lambda _: None)
    assert calls == [f"arenas={arenas}", "runtime"]


def test_serve_caps_arenas_by_default() -> None:
    assert load_settings().api.malloc_arenas == SERVER_MALLOC_ARENAS


def _reader(name: str, cid: int) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(name=name, id=cid), refresh=lambda: None)


def test_reader_cache_is_bounded_and_least_recently_used_goes() -> None:
    opened: list[str] = []

    def open_reader(info):  # noqa: ANN001, ANN202
        opened.append(info.name)
        return _reader(info.name, info.id)

    cache = ReaderCache(open_reader, lambda: {1, 2, 3, 4}, max_readers=2)
    a, b, c = (SimpleNamespace(name=n, id=i) for n, i in (("a", 1), ("b", 2), ("c", 3)))
    cache.get(a), cache.get(b), cache.get(a), cache.get(c)  # b is the least recently used when c comes
    assert len(cache) == 2
    cache.get(a)
    cache.get(b)
    assert opened == ["a", "b", "c", "b"]


def test_reader_cache_closes_readers_of_dropped_collections() -> None:
    live = {1, 2}
    cache = ReaderCache(lambda info: _reader(info.name, info.id), lambda: set(live))
    cache.get(SimpleNamespace(name="a", id=1))
    cache.get(SimpleNamespace(name="b", id=2))
    live.remove(1)  # "a" was dropped elsewhere
    live.add(3)
    cache.get(SimpleNamespace(name="c", id=3))
    assert len(cache) == 2  # b and c
    live.remove(2)  # "b" dropped and made again
    live.add(4)
    again = cache.get(SimpleNamespace(name="b", id=4))
    assert again.info.id == 4 and len(cache) == 2
    cache.discard("b")
    assert len(cache) == 1


def test_reader_cache_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_readers"):
        ReaderCache(lambda info: info, set, max_readers=0)


def test_rate_limiter_keeps_at_most_max_buckets() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], max_buckets=100)
    rate = Rate(count=5, period_s=1.0)
    for key_id in range(1_000):
        limiter.take(key_id, rate)
        now[0] += 0.001
    assert len(limiter) <= 100


def test_rate_limiter_pruning_keeps_the_limit_of_busy_keys() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], max_buckets=10)
    slow, fast = Rate(count=2, period_s=3600.0), Rate(count=2, period_s=1.0)
    assert [limiter.take(7, slow) for _ in range(2)] == [0, 0]
    for key_id in range(100, 130):  # keys whose buckets refill within 2 s, so pruning drops them
        now[0] += 2.0
        limiter.take(key_id, fast)
    assert len(limiter) <= 10
    assert limiter.take(7, slow) > 0  # key 7's empty bucket survived the pruning
