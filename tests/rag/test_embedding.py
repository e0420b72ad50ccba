"""The embedder on ONNX Runtime (its own export, cached and checked against torch) and query batching."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag.config import EmbeddingConfig, Settings
from rag.embedding import Embedder, token_batches
from rag.embedding.batching import QueryBatcher
from rag.embedding.onnx import OnnxUnavailable, model_shape

TEXTS = [
    "Travel requests are approved by the line manager.",
    "Bicycles can be parked for free in the courtyard.",
    "A short one.",
    "The incident commander posts a status update every thirty minutes until the incident is resolved, "
    "and writes the postmortem within five working days.",
]


def _embedder(cache: Path, backend: str = "onnx") -> Embedder:
    return Embedder(EmbeddingConfig(backend=backend, cache_dir=cache)).warm_up()


def test_settings_keep_exports_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_EMBEDDING__CACHE_DIR", raising=False)  # the tests' shared cache (conftest.py)
    settings = Settings(data_dir=tmp_path / "d", _env_file=None)
    assert settings.embedding.cache_dir == tmp_path / "d" / "models"
    assert settings.embedding.backend == "onnx"


def test_onnx_export_matches_torch_and_is_reused(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    onnx = _embedder(cache)
    assert onnx.backend == "onnx" and onnx.onnx_cosine is not None and onnx.onnx_cosine >= 0.999
    torch = _embedder(cache, "torch")
    assert torch.backend == "torch"
    cos = (onnx.embed_documents(TEXTS) * torch.embed_documents(TEXTS)).sum(1)
    assert cos.min() >= 0.999, cos
    norms = np.linalg.norm(onnx.embed_queries(TEXTS), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    model = entry / "model.onnx"
    before = model.stat().st_mtime_ns
    again = _embedder(cache)
    assert again.backend == "onnx" and model.stat().st_mtime_ns == before  # loaded, not exported again
    assert len(list(cache.iterdir())) == 1  # no temporary directory left behind


def test_a_damaged_cached_export_is_exported_again(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    _embedder(cache)
    (entry,) = list(cache.iterdir())
    (entry / "model.onnx").write_bytes(b"not an onnx file")
    repaired = _embedder(cache)
    assert repaired.backend == "onnx" and repaired.onnx_cosine >= 0.999
    assert (entry / "model.onnx").stat().st_size > 1_000_000


def test_int8_export_passes_its_own_bar(tmp_path: Path) -> None:
    int8 = _embedder(tmp_path / "models", "onnx-int8")
    assert int8.backend == "onnx-int8" and 0.99 <= int8.onnx_cosine < 1.0
    assert (next((tmp_path / "models").iterdir()) / "model.int8.onnx").is_file()


def test_a_pooling_the_encoder_cannot_reproduce_is_refused(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    st = embedder.model
    odd = SentenceTransformer(modules=[st[0], Pooling(st.get_embedding_dimension(), pooling_mode="max")], device="cpu")
    with pytest.raises(OnnxUnavailable, match="pooling 'max'"):
        model_shape(odd)


def test_an_unwritable_cache_means_torch_and_a_warning_naming_the_setting(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level("WARNING"):
        emb = _embedder(blocker / "models")
    assert emb.backend == "torch"
    assert "RAG_EMBEDDING__BACKEND=onnx" in caplog.text
    assert emb.embed_query("who approves travel?").shape == (emb.dim,)


def _identity(calls: list[int], delay: float = 0.0):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        time.sleep(delay)
        return np.array([[float(t.split()[-1]), 1.0] for t in texts], np.float32)

    return encode


def test_concurrent_queries_share_batches_and_get_their_own_vectors() -> None:
    calls: list[int] = []
    batcher = QueryBatcher(_identity(calls, delay=0.02), max_batch=64, wait_s=0.002)
    results: dict[int, float] = {}

    def ask(i: int) -> None:
        results[i] = float(batcher.embed(f"query {i}")[0])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert results == {i: float(i) for i in range(24)}
    assert sum(calls) == 24 and len(calls) < 24 and max(calls) > 1


def test_a_lone_query_is_not_held_back_and_errors_reach_the_caller() -> None:
    calls: list[int] = []
    batcher = QueryBatcher(_identity(calls), max_batch=8, wait_s=0.5)
    t = time.perf_counter()
    for i in range(3):
        assert batcher.embed(f"q {i}")[0] == i
    assert time.perf_counter() - t < 0.4  # a 0.5 s wait would have been paid once per query
    assert calls == [1, 1, 1]

    def broken(texts: list[str]) -> np.ndarray:
        raise ValueError("model exploded")

    failing = QueryBatcher(broken, max_batch=8, wait_s=0.0)
    with pytest.raises(ValueError, match="model exploded"):
        failing.embed("x")
    with pytest.raises(ValueError, match="model exploded"):  # the worker survives the error
        failing.embed("y")
    failing.close()
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed("after close")


def test_embed_query_equals_embed_queries(embedder: Embedder) -> None:
    single = embedder.embed_query("Who approves travel?")
    assert np.allclose(single, embedder.embed_queries(["Who approves travel?"])[0], atol=1e-6)


def test_token_batches_cover_every_text_once_within_the_budget() -> None:
    lengths = [256, 12, 256, 40, 300, 7, 256, 256, 90]
    batches = token_batches(lengths, batch_tokens=600, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for rows in batches:
        assert len(rows) <= 3
        longest = max(lengths[i] for i in rows)
        assert len(rows) == 1 or len(rows) * longest <= 600
        assert lengths[rows[0]] == longest  # longest first, so padding stays short
    assert token_batches([5000], batch_tokens=600, max_rows=3) == [[0]]  # too long for any batch: one of its own


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_small_token_batches_give_the_vectors_of_one_batch(tmp_path: Path, backend: str) -> None:
    texts = TEXTS * 3 + [TEXTS[3] * 8]  # one text reaches the model's 256 tokens
    small = Embedder(EmbeddingConfig(backend=backend, cache_dir=tmp_path, batch_tokens=64)).warm_up()
    whole = Embedder(EmbeddingConfig(backend=backend, cache_dir=tmp_path, batch_tokens=1_000_000)).warm_up()
    a, b = small.embed_documents(texts), whole.embed_documents(texts)
    assert a.shape == (len(texts), small.dim)
    assert np.allclose(a, b, atol=1e-4)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def _embed_in_threads(embedder: Embedder, texts: list[str], threads: int, times: int) -> list[np.ndarray]:
    """``embedder.embed_documents(texts)`` ``times`` times in each of ``threads`` threads at once; raises what any raised."""
    errors: list[BaseException] = []
    results: list[np.ndarray] = []

    def work() -> None:
        try:
            for _ in range(times):
                results.append(embedder.embed_documents(texts))
        except BaseException as exc:  # noqa: BLE001 - raised below, in the test's thread
            errors.append(exc)

    running = [threading.Thread(target=work) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_batches_on_torch_each_get_their_own_vectors(tmp_path: Path) -> None:
    # The length pass and sentence-transformers both tokenize, with different padding settings; the length
    # pass uses a copy of the tokenizer so that the two never change one tokenizer's state under each other
    # (a race this test does not reproduce on demand: it checks that concurrent batches stay correct).
    embedder = Embedder(EmbeddingConfig(backend="torch", cache_dir=tmp_path, batch_tokens=64)).warm_up()
    expected = embedder.embed_documents(TEXTS)
    results = _embed_in_threads(embedder, TEXTS, threads=4, times=10)
    assert len(results) == 40 and all(np.allclose(r, expected, atol=1e-5) for r in results)


def test_sessions_side_by_side_give_the_vectors_of_one_session(tmp_path: Path) -> None:
    texts = TEXTS * 4 + [TEXTS[3] * 8]
    one = Embedder(EmbeddingConfig(cache_dir=tmp_path, threads=3, sessions=1, batch_tokens=64)).warm_up()
    three = Embedder(EmbeddingConfig(cache_dir=tmp_path, threads=3, sessions=0, batch_tokens=64)).warm_up()
    assert one._pool is None
    encoders = three._pool.encoders
    assert len(encoders) == 3 and len({id(e._tokenizer) for e in encoders}) == 3  # a tokenizer each
    expected = one.embed_documents(texts)
    results = _embed_in_threads(three, texts, threads=3, times=5)  # several callers share the pool's sessions
    assert len(results) == 15 and all(np.allclose(r, expected, atol=1e-5) for r in results)
    assert np.allclose(three.embed_query(TEXTS[0]), one.embed_query(TEXTS[0]), atol=1e-5)
    assert all(e._tokenizer is not three.tokenizer for e in encoders)  # none shares the chunker's tokenizer
    three.close()
    assert np.allclose(three.embed_documents(texts), expected, atol=1e-5)  # still embeds, one batch at a time


def test_a_serving_embedder_keeps_one_session(tmp_path: Path) -> None:
    embedder = Embedder(EmbeddingConfig(cache_dir=tmp_path, threads=1)).warm_up()
    assert embedder._pool is None and embedder.backend == "onnx"


def test_queries_embed_on_the_int8_export_by_default_and_agree_with_the_documents(tmp_path: Path) -> None:
    embedder = Embedder(EmbeddingConfig(cache_dir=tmp_path)).warm_up(queries=True)
    assert (embedder.backend, embedder.query_backend) == ("onnx", "onnx-int8")
    queries, documents = embedder.embed_queries(TEXTS), embedder.embed_documents(TEXTS)
    cos = (queries * documents).sum(1)
    # the int8 bar of the load check is a mean cosine of 0.99; a text may fall a little below it
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, cos
    assert not np.allclose(queries, documents, atol=1e-4)  # close, but from the other model
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    (entry,) = list(tmp_path.iterdir())
    assert sorted(p.name for p in entry.glob("*.onnx")) == ["model.int8.onnx", "model.onnx"]
    # int8 scales activations by the batch's range: each query embeds alone, so its vector never depends
    # on the other requests' queries it is batched with
    for text, vector in zip(TEXTS, queries, strict=True):
        assert np.array_equal(embedder.embed_queries([text])[0], vector)
        assert np.array_equal(embedder.embed_query(text), vector)


@pytest.mark.parametrize(("backend", "query_backend", "expected"), [
    ("onnx", "onnx", "onnx"), ("torch", "auto", "torch"), ("onnx", "torch", "torch"),
])
def test_the_query_backend_follows_its_setting(tmp_path: Path, backend: str, query_backend: str, expected: str) -> None:
    embedder = Embedder(EmbeddingConfig(backend=backend, query_backend=query_backend, cache_dir=tmp_path))
    queries = embedder.embed_queries(TEXTS)  # loads the query encoder on first use
    assert embedder.query_backend == expected
    if expected == embedder.backend:
        assert np.allclose(queries, embedder.embed_documents(TEXTS), atol=1e-5)
    else:
        assert (queries * embedder.embed_documents(TEXTS)).sum(1).min() >= 0.999

