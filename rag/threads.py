"""Thread settings for processes that answer queries.

A query embeds one short text and searches one vector. Intra-op threads do not speed that up,
and on a busy machine they fight: on the 2-core benchmark machine a one-sentence query took
490 ms to embed with 2 torch threads and 13.5 ms with 1, and FAISS's OpenMP threads likewise
spin against the request threads. Query-serving processes (``rag serve``, the latency part of
``rag bench``) therefore run one torch and one FAISS thread per request; ingestion keeps all
cores for its large batches.

A serving process also caps glibc's malloc arenas (:func:`limit_malloc_arenas`). glibc gives
threads that contend for the allocator arenas of their own, up to 8 per core, and never hands an
arena's freed pages back while anything near its top is live. A server runs up to 40 request
threads (Starlette's threadpool), each allocating tokenizer, tensor and response buffers, so
every arena grows to its own high-water mark (docs/reliability.md, "Memory under load").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator

from rag.config import Settings

QUERY_THREADS = 1
SERVER_MALLOC_ARENAS = 2
"""Arenas a query-serving process keeps: the main one and one for all other threads."""

_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


_faiss_threads: int | None = None
"""FAISS's OpenMP threads for every thread of this process that searches; None: OpenMP's default."""
_applied = threading.local()


def faiss_threads_here() -> None:
    """Give the calling thread this process's FAISS thread count (a no-op after the first call per thread).

    OpenMP keeps its thread count per thread: ``omp_set_num_threads`` in the main thread leaves the
    request threads (AnyIO's worker pool, the shard fan-out) at one OpenMP thread per core, and the
    second one spun beside every search. Under ``rag serve`` at 100k chunks that thread cost 8.3 ms of
    the 25 ms of CPU per ``/v1/search``; with one thread the request cost 14 ms. FAISS calls this
    before each search.
    """
    n = _faiss_threads
    if n is None or getattr(_applied, "n", None) == n:
        return
    import faiss

    faiss.omp_set_num_threads(n)
    _applied.n = n


def _set_faiss_threads(n: int | None) -> None:
    global _faiss_threads
    _faiss_threads = n
    faiss_threads_here()


def for_queries(settings: Settings) -> Settings:
    """Settings for a query-serving process, and FAISS set to one thread in every thread that searches.

    An explicit ``embedding.threads`` is kept, and then FAISS is left alone too.
    """
    if settings.embedding.threads:
        return settings
    _set_faiss_threads(QUERY_THREADS)
    return settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"threads": QUERY_THREADS})}
    )


@contextlib.contextmanager
def query_threads() -> Iterator[None]:
    """One torch and one FAISS thread inside the block, in this thread and in those that search meanwhile
    (for measuring query latency); this thread's counts are restored after."""
    global _faiss_threads
    import faiss
    import torch

    torch_before, faiss_before, setting_before = torch.get_num_threads(), faiss.omp_get_max_threads(), _faiss_threads
    applied_before = getattr(_applied, "n", None)
    torch.set_num_threads(QUERY_THREADS)
    _set_faiss_threads(QUERY_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        _faiss_threads = setting_before
        faiss.omp_set_num_threads(faiss_before)
        _applied.n = applied_before


def limit_malloc_arenas(arenas: int = SERVER_MALLOC_ARENAS) -> bool:
    """Cap the number of glibc malloc arenas of this process (``mallopt(M_ARENA_MAX, arenas)``).

    Call it before the process starts its worker threads: arenas that already exist are kept,
    the cap only stops new ones. Same effect as ``MALLOC_ARENA_MAX`` in the environment.

    Args:
        arenas: the most arenas; 0 leaves glibc's default (8 per core).

    Returns:
        True when the cap was set; False for ``arenas=0`` or a C library without ``mallopt``
        (musl, macOS), where nothing changes.
    """
    if arenas <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1
