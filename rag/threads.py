"""Thread settings for processes that answer queries.

A query embeds one short text and searches one vector. Intra-op threads do not speed that up,
and on a busy machine they fight: on the 2-core benchmark machine a one-sentence query took
490 ms to embed with 2 torch threads and 13.5 ms with 1, and FAISS's OpenMP threads likewise
spin against the request threads. Query-serving processes (``rag serve``, the latency part of
``rag bench``) therefore run one torch and one FAISS thread per request; ingestion keeps all
cores for its large batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rag.config import Settings

QUERY_THREADS = 1


def for_queries(settings: Settings) -> Settings:
    """Settings for a query-serving process, and FAISS set to one thread.

    An explicit ``embedding.threads`` is kept, and then FAISS is left alone too.
    """
    if settings.embedding.threads:
        return settings
    import faiss

    faiss.omp_set_num_threads(QUERY_THREADS)
    return settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"threads": QUERY_THREADS})}
    )


@contextlib.contextmanager
def query_threads() -> Iterator[None]:
    """One torch and one FAISS thread inside the block (for measuring query latency), restored after."""
    import faiss
    import torch

    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(QUERY_THREADS)
    faiss.omp_set_num_threads(QUERY_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        faiss.omp_set_num_threads(faiss_before)
