"""Tests for the FAISS dense index: kinds, filters inside the search, persistence, safety."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from rag.config import DenseConfig
from rag.errors import ConfigError, IndexMismatchError
from rag.index.dense import EXACT_ALLOW_MAX, MANIFEST_NAME, DenseIndex, IndexCorruptError
from rag.types import Hit

DIM = 32
N = 4000
MODEL = "test-model"
# Small PQ settings keep training quick; the refine step restores exact scores.
IVF = {"pq_m": 8, "pq_nbits": 6, "ivf_nlist": 32, "ivf_nprobe": 8, "refine_factor": 10}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 centres, closer to real embeddings than isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    return unit(centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM)))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = clustered(N, seed=1)
    ids = np.arange(N, dtype=np.int64) * 7 + 1000  # ids unlike FAISS's internal 0..n-1
    queries = unit(clustered(40, seed=2) + 0.1)
    return ids, vectors, queries


@pytest.fixture(scope="module")
def built(tmp_path_factory, data) -> dict[str, DenseIndex]:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # small indexes build faster without thread start-up
    ids, vectors, _ = data
    out = {}
    for kind in ("flat", "hnsw", "ivfpq"):
        index = DenseIndex.open(tmp_path_factory.mktemp(kind), DenseConfig(index=kind, **IVF), MODEL, DIM)
        index.rebuild(ids, vectors)
        out[kind] = index
    faiss.omp_set_num_threads(threads)
    return out


def brute_force(ids, vectors, query, k, allowed=None):
    scores = vectors @ query
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    if allowed is not None:
        order = [i for i in order if ids[i] in allowed]
    return [int(ids[i]) for i in order[:k]]


def test_kinds_are_what_was_asked(built):
    assert {kind: index.kind for kind, index in built.items()} == {"flat": "flat", "hnsw": "hnsw", "ivfpq": "ivfpq"}
    assert all(index.ntotal == N for index in built.values())


def test_flat_matches_brute_force_in_order(built, data):
    ids, vectors, queries = data
    for query in queries[:5]:
        hits = built["flat"].search(query, 10)
        assert [h.chunk_id for h in hits] == brute_force(ids, vectors, query, 10)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, np.sort(vectors @ query)[::-1][:10], rtol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_recall_at_10_against_flat(built, data, kind):
    _, _, queries = data
    exact = built["flat"].search_batch(queries, 10)
    approx = built[kind].search_batch(queries, 10)
    recall = np.mean([len({h.chunk_id for h in a} & {h.chunk_id for h in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9, f"{kind} recall@10 = {recall:.3f}"


def test_ivfpq_scores_are_exact_after_refine(built, data):
    ids, vectors, queries = data
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    for hit in built["ivfpq"].search(queries[0], 10):
        assert hit.score == pytest.approx(float(by_id[hit.chunk_id] @ queries[0]), abs=1e-5)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
@pytest.mark.parametrize("allow_size", [50, 3000], ids=["exact-path", "selector-path"])
def test_allow_filters_before_truncation(built, data, kind, allow_size):
    ids, vectors, queries = data
    query = queries[0]
    # The ids the query likes least: a post-filter on the top k would return none of them.
    allowed = ids[np.argsort(vectors @ query)[:allow_size]]
    assert (allow_size <= EXACT_ALLOW_MAX) == (allow_size == 50)
    before = allowed.copy()
    hits = built[kind].search(query, 10, allow=allowed)
    np.testing.assert_array_equal(allowed, before)  # input untouched
    assert len(hits) == 10
    assert {h.chunk_id for h in hits} <= set(allowed.tolist())
    if kind == "flat" or allow_size == 50:
        assert [h.chunk_id for h in hits] == brute_force(ids, vectors, query, 10, set(allowed.tolist()))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_deny_filters_before_truncation(built, data, kind):
    _, _, queries = data
    top = [h.chunk_id for h in built[kind].search(queries[0], 30)]
    hits = built[kind].search(queries[0], 10, deny=np.array(top[:20]))
    assert len(hits) == 10
    assert [h.chunk_id for h in hits] == top[20:30]


def test_allow_minus_deny_and_empty_allow(built, data):
    ids, _, queries = data
    hits = built["flat"].search(queries[0], 10, allow=ids[:5], deny=ids[:2])
    assert sorted(h.chunk_id for h in hits) == ids[2:5].tolist()
    assert built["flat"].search(queries[0], 10, allow=np.array([], np.int64)) == []
    assert built["flat"].search(queries[0], 10, allow=np.array([-5, 12345678])) == []


def test_k_larger_than_ntotal_and_empty_index(tmp_path):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    query = clustered(1, seed=3)[0]
    assert index.search(query, 5) == []
    index.add(np.array([3, 1, 2]), clustered(3, seed=4))
    assert sorted(h.chunk_id for h in index.search(query, 100)) == [1, 2, 3]


def test_ties_break_by_chunk_id(tmp_path):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    vector = clustered(1, seed=5)
    index.add(np.array([9, 4, 7]), np.repeat(vector, 3, axis=0))
    assert [h.chunk_id for h in index.search(vector[0], 3)] == [4, 7, 9]


def test_search_batch_returns_one_list_per_query(built, data):
    _, _, queries = data
    batch = built["hnsw"].search_batch(queries[:3], 5)
    assert [len(hits) for hits in batch] == [5, 5, 5]
    assert batch[1] == built["hnsw"].search(queries[1], 5)
    assert all(isinstance(h, Hit) for h in batch[0])


@pytest.mark.parametrize(
    ("ids", "vectors"),
    [
        (np.array([1, 2]), np.zeros((2, DIM), np.float64)),
        (np.array([1, 2]), np.zeros((2, DIM + 1), np.float32)),
        (np.array([1, 2, 3]), np.zeros((2, DIM), np.float32)),
        (np.array([1, 1]), np.zeros((2, DIM), np.float32)),
        (np.array([1.5, 2.0]), np.zeros((2, DIM), np.float32)),
    ],
    ids=["float64", "wrong-dim", "count", "duplicate", "float-ids"],
)
def test_bad_input_raises_value_error(tmp_path, ids, vectors):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    with pytest.raises(ValueError):
        index.add(ids, vectors)


def test_add_rejects_ids_already_present(tmp_path):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    index.add(np.array([1, 2]), clustered(2, seed=6))
    with pytest.raises(ValueError, match="already"):
        index.add(np.array([2, 3]), clustered(2, seed=7))


def test_save_and_reopen(tmp_path, data):
    ids, vectors, queries = data
    config = DenseConfig(index="hnsw")
    index = DenseIndex.open(tmp_path, config, MODEL, DIM)
    index.add(ids[:500], vectors[:500])
    index.save()
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["model_id"] == MODEL and manifest["dim"] == DIM
    assert manifest["metric"] == "inner_product" and manifest["normalized"] is True
    assert manifest["kind"] == "hnsw" and manifest["ntotal"] == 500 and manifest["generation"] == 1
    assert index.bytes_on_disk > 500 * 4 * DIM

    again = DenseIndex.open(tmp_path, config, MODEL, DIM)
    assert again.kind == "hnsw" and again.ntotal == 500 and again.generation == 1
    np.testing.assert_array_equal(np.sort(again.ids()), np.sort(ids[:500]))
    assert again.search(queries[0], 10) == index.search(queries[0], 10)


def test_old_generations_are_pruned(tmp_path):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    for i in range(4):
        index.add(np.array([i]), clustered(1, seed=10 + i))
        index.save()
    assert sorted(p.name for p in tmp_path.glob("dense.*.faiss")) == ["dense.3.faiss", "dense.4.faiss"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(("model_id", "dim", "named"), [("other-model", DIM, "other-model"), (MODEL, 64, "64")])
def test_other_model_or_dim_is_a_mismatch(tmp_path, model_id, dim, named):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    index.add(np.array([1]), clustered(1, seed=8))
    index.save()
    with pytest.raises(IndexMismatchError) as err:
        DenseIndex.open(tmp_path, DenseConfig(index="flat"), model_id, dim)
    assert named in str(err.value)
    assert (MODEL if model_id != MODEL else str(DIM)) in str(err.value)


def test_corrupt_index_file_raises(tmp_path):
    index = DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    index.add(np.arange(10), clustered(10, seed=9))
    index.save()
    path = tmp_path / "dense.1.faiss"
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="sha256"):
        DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)
    path.unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        DenseIndex.open(tmp_path, DenseConfig(index="flat"), MODEL, DIM)


def test_ivfpq_on_tiny_data_falls_back_to_flat(tmp_path):
    config = DenseConfig(index="ivfpq", **IVF)
    index = DenseIndex.open(tmp_path, config, MODEL, DIM)
    index.rebuild(np.arange(50), clustered(50, seed=11))  # < 2**pq_nbits = 64
    assert index.kind == "flat"
    assert not index.needs_rebuild
    index.save()
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["kind"] == "flat"
    assert DenseIndex.open(tmp_path, config, MODEL, DIM).kind == "flat"
    index.add(np.arange(50, 3000), clustered(2950, seed=12))
    assert index.needs_rebuild  # now there is enough to train on


def test_auto_resolves_by_count_when_rebuilt(tmp_path):
    config = DenseConfig(index="auto", auto_flat_below=100, auto_hnsw_below=10_000)
    index = DenseIndex.open(tmp_path, config, MODEL, DIM)
    assert index.kind == "flat"
    index.add(np.arange(150), clustered(150, seed=13))
    assert index.kind == "flat" and index.needs_rebuild
    index.rebuild(index.ids(), clustered(150, seed=13))
    assert index.kind == "hnsw" and not index.needs_rebuild


def test_unknown_kind_lists_valid_ones(tmp_path):
    config = DenseConfig.model_construct(index="annoy")
    with pytest.raises(ConfigError, match="flat | hnsw | ivfpq | auto"):
        DenseIndex.open(tmp_path, config, MODEL, DIM)


def test_pq_m_must_divide_dim(tmp_path):
    with pytest.raises(ConfigError, match="PQ_M"):
        DenseIndex.open(tmp_path, DenseConfig(index="ivfpq", pq_m=5), MODEL, DIM)


def test_reader_picks_up_writer_save(tmp_path):
    config = DenseConfig(index="flat")
    writer = DenseIndex.open(tmp_path, config, MODEL, DIM)
    reader = DenseIndex.open(tmp_path, config, MODEL, DIM)
    assert reader.reload_if_changed() is False  # nothing saved yet
    writer.add(np.array([1, 2]), clustered(2, seed=14))
    writer.save()
    assert reader.reload_if_changed() is True
    assert sorted(reader.ids().tolist()) == [1, 2]
    assert reader.reload_if_changed() is False
    writer.add(np.array([3]), clustered(1, seed=15))
    writer.save()
    assert reader.reload_if_changed() is True
    assert reader.ntotal == 3 and reader.generation == 2


def test_bytes_per_vector(built):
    assert built["flat"].bytes_per_vector == 4 * DIM
    assert built["hnsw"].bytes_per_vector > 4 * DIM
    assert built["ivfpq"].bytes_per_vector == IVF["pq_m"] * IVF["pq_nbits"] / 8
    assert built["ivfpq"].refine_bytes_per_vector == 4 * DIM
    assert built["flat"].refine_bytes_per_vector == 0


def test_query_of_wrong_shape_raises(built):
    with pytest.raises(ValueError, match="query"):
        built["flat"].search(np.zeros(DIM + 1, np.float32), 3)
    with pytest.raises(ValueError, match="k"):
        built["flat"].search(np.zeros(DIM, np.float32), 0)

