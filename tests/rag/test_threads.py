"""FAISS's thread count for queries reaches every thread that searches, not only the one that set it."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from rag.config import DenseConfig, Settings
from rag.index.dense import DenseIndex
from rag.threads import QUERY_THREADS, for_queries, query_threads


@pytest.fixture
def index(tmp_path) -> DenseIndex:  # noqa: ANN001
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dense = DenseIndex(tmp_path / "dense", DenseConfig(index="flat"), "test-model", 16)
    dense.add(np.arange(200, dtype=np.int64), vectors)
    return dense


def _threads_seen_by_a_new_thread(index: DenseIndex) -> tuple[int, int]:
    seen: list[int] = []

    def work() -> None:
        seen.append(faiss.omp_get_max_threads())
        index.search(np.ones(16, dtype=np.float32) / 4.0, 5)
        seen.append(faiss.omp_get_max_threads())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return seen[0], seen[1]


@pytest.mark.skipif(faiss.omp_get_max_threads() < 2, reason="one core: OpenMP runs one thread anyway")
def test_a_request_thread_searches_with_the_query_thread_count(index: DenseIndex, tmp_path) -> None:  # noqa: ANN001
    with query_threads():
        before, after = _threads_seen_by_a_new_thread(index)
    assert before > QUERY_THREADS  # a new thread starts at OpenMP's default: the bug this guards against
    assert after == QUERY_THREADS
    settings = for_queries(Settings(data_dir=tmp_path, _env_file=None))
    assert settings.embedding.threads == QUERY_THREADS
    assert _threads_seen_by_a_new_thread(index)[1] == QUERY_THREADS
