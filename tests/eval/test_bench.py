"""``rag bench``: a tiny synthetic run checks the report's shape; the real benchmark is opt-in (``-m slow``)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from eval.bench import BenchPlan, iter_replicas, make_level, run_bench, write_bench_report
from eval.bench.levels import size_from_json
from eval.bench.targets import _growth
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import InputError
from rag.models import packaged_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TARGET_NAMES = (
    "hybrid /v1/search p50 at 100k chunks, no rerank, with query embedding (ms)",
    "BM25 speedup tantivy vs rank-bm25 at 100k (x)",
    "hybrid speedup vs Haystack in-memory at 100k, both with query embedding (x)",
    "hybrid nDCG@10 minus Haystack's on SciFact",
    "HNSW recall@10 vs exact at 100k (configured efSearch)",
    "IVF-PQ + recheck recall@10 at 100k (configured nprobe)",
    "IVF-PQ compressed code bytes per vector",
    "hybrid latency growth 100k -> 1M, with query embedding, no rerank (x)",
    "ingestion time outside embedding (share)",
    "search-only throughput, 32 clients over HTTP (req/s)",
    "32-client throughput / ideal (cores / server CPU s per search)",
    "rerank of the top 20, ONNX int8 reranker, p50 (ms)",
    "verify stage for the demo's answer, p50 (ms)",
    "ingestion, 256-token chunks (chunks/s)",
)


class HashingEmbedder(Embedder):
    """The real tokenizer with bag-of-words hashed vectors: fast and deterministic, no model weights."""

    DIM = 64

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.embedding)
        self._tok = None

    @property
    def model_id(self) -> str:
        return "test-hashing"

    def warm_up(self, *, queries: bool = False) -> HashingEmbedder:
        if self._tok is None:
            from transformers import AutoTokenizer

            path = packaged_path("sentence-transformers/all-MiniLM-L6-v2")
            if path is None:
                pytest.skip("the packaged MiniLM tokenizer is not installed")
            self._tok = AutoTokenizer.from_pretrained(str(path))
        return self

    @property
    def dim(self) -> int:
        return self.DIM

    @property
    def tokenizer(self):  # noqa: ANN201
        return self.warm_up()._tok

    @property
    def max_seq_length(self) -> int:
        return 256

    def _query_encoder(self):  # noqa: ANN202 - queries hash like documents
        return self._encode

    def _encode(self, texts: list[str], run=None) -> np.ndarray:  # noqa: ANN001 - one encoder for both
        out = np.zeros((len(texts), self.DIM), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(word.encode()) % self.DIM] += 1.0
            out[i, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def tiny_plan() -> BenchPlan:
    return BenchPlan(
        sizes=(500,), index_only_sizes=(1500,), queries=20, slow_queries=3, quality_queries=10, dataset=None,
        synthetic_docs=500, api_seconds=0, ingest_docs=0, backend_sample=0, verify_runs=1, large_ef_construction=16,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    settings = Settings(data_dir=tmp / "data", reranker={"model": ""})
    out = tmp / "out"
    report = run_bench(settings, out, plan=tiny_plan(), embedder=HashingEmbedder(settings)).to_json()
    return report, out


def test_report_files_and_keys(tiny_run: tuple[dict, Path]) -> None:
    report, out = tiny_run
    for name in ("bench.json", "bench.md", "latency_vs_size.png", "ann_recall_latency.png"):
        assert (out / name).is_file(), name
    for name in ("latency_vs_size.png", "ann_recall_latency.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    saved = json.loads((out / "bench.json").read_text())
    for key in ("mode", "machine", "corpus", "sizes", "targets", "ratios", "api_throughput", "gpu"):
        assert key in saved, key
    assert saved["mode"] == "custom"
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["name"]
    assert list(saved["sizes"]) == ["500", "2k"]  # the index-only size is labelled by its target, rounded
    assert not (out / "bench.gpu.json").exists() or "gpu" in saved["gpu"]


def test_targets_structure(tiny_run: tuple[dict, Path]) -> None:
    report, _ = tiny_run
    targets = report["targets"]
    assert [t["name"] for t in targets] == list(TARGET_NAMES)
    for t in targets:
        assert set(t) == {"name", "value", "target", "met"}
        assert t["met"] in (True, False, None)
        assert (t["value"] is None) == (t["met"] is None)
    # No 100k level in the tiny run, so the 100k targets are not measured; the code size is a constant.
    by_name = {t["name"]: t for t in targets}
    assert by_name["BM25 speedup tantivy vs rank-bm25 at 100k (x)"]["met"] is None
    assert by_name["hybrid nDCG@10 minus Haystack's on SciFact"]["value"] is not None or "error" in json.dumps(
        report["sizes"]["500"]["peers"]["hybrid"].get("haystack", {})
    )


def test_verify_stage_is_measured_on_the_demo_answer(tiny_run: tuple[dict, Path]) -> None:
    report, out = tiny_run
    v = report["verify"]
    assert v["claims"] == 4 and v["sources"] == 5, v
    assert 0 < v["cold_ms"]["p50"] and 0 < v["warm_ms"]["p50"]
    target = next(t for t in report["targets"] if t["name"].startswith("verify stage"))
    assert target["value"] == v["cold_ms"]["p50"]
    assert "## Verify stage on the demo's answer" in (out / "bench.md").read_text()


def test_levels_latency_and_peers(tiny_run: tuple[dict, Path]) -> None:
    report, out = tiny_run
    small, large = report["sizes"]["500"], report["sizes"]["2k"]
    assert small["chunks"] == 500 and large["chunks"] >= 1500
    for stage in ("embed", "bm25", "dense", "fuse", "total", "core", "hybrid_no_embed"):
        lat = small["latency_ms"][stage]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"], stage
    assert small["latency_ms"]["rerank"] is None  # no reranker configured
    assert "core" in large["latency_ms"] and 0.0 <= large["dense_recall@10"] <= 1.0
    # the index-only hybrid with the query embedded as /v1/search embeds it, at both sizes; growth is measured on it
    served = [report["sizes"][label]["latency_ms"]["served"]["p50"] for label in ("500", "2k")]
    assert all(v > 0 for v in served), served
    growth = _growth(size_from_json(small), size_from_json(large))
    assert growth == round(served[1] / served[0], 2)
    dense = small["peers"]["dense"]
    assert dense["ours"]["recall@10"] == 1.0  # flat at this size
    assert [p["ef_search"] for p in dense["hnsw"]["sweep"]] == [16, 32, 64, 128, 256]
    assert dense["ivfpq"]["code_bytes_per_vector"] <= 64
    assert all(0.0 <= p["recall@10"] <= 1.0 for p in dense["ivfpq"]["sweep"])
    assert small["peers"]["lexical"]["rank_bm25"]["queries"] == 3
    assert "_index" not in small["peers"]["lexical"]["rank_bm25"]
    assert 0.0 <= small["peers"]["ndcg@10"]["ours"] <= 1.0
    assert "500" in report["ratios"] and report["ratios"]["500"]["rank_bm25 / tantivy (BM25)"] > 0
    md = (out / "bench.md").read_text()
    assert "## Targets" in md and "## Peers at 500" in md and report["machine"]["cpu"] in md


def test_replicas_perturb_text_and_keep_vectors_normalised(tmp_path: Path) -> None:
    from eval.bench import BaseCorpus, BaseDoc
    from rag.types import ChunkDraft

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    docs = [BaseDoc(f"d{i}", "t", (ChunkDraft(0, " ".join(f"w{j}" for j in range(40)), 0, 10, 10),)) for i in range(3)]
    base = BaseCorpus(docs, vecs, {}, np.zeros((0, 8), np.float32))
    reps = list(iter_replicas(base, 7))
    assert [r[0] for r in reps[:4]] == ["d0", "d1", "d2", "d0#r1"]
    assert sum(len(r[2]) for r in reps) >= 7
    assert reps[3][2][0] != docs[0].chunks[0].text  # perturbed
    np.testing.assert_allclose(np.linalg.norm(reps[3][3], axis=1), 1.0, rtol=1e-5)
    assert float(reps[3][3][0] @ vecs[0]) > 0.9  # close to its original
    level = make_level(base, 2)  # never below the base corpus
    assert level.n == 3 and level.doc_of == ["d0", "d1", "d2"]


def test_report_writer_rejects_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_bench_report(tmp_path, {"machine": {}})


@pytest.mark.slow
def test_quick_benchmark_on_scifact(tmp_path: Path) -> None:
    """The real quick plan: SciFact, the real embedder, every peer, the API and ingestion."""
    from tests.conftest import shared_dataset

    shared_dataset("scifact")
    settings = Settings(data_dir=tmp_path / "data")
    report = run_bench(settings, tmp_path / "out", quick=True).to_json()
    assert report["mode"] == "quick"
    assert report["sizes"]["10k"]["chunks"] >= 10_000
    assert report["targets"][-1]["name"] == "rag bench --quick wall time (s)"


def test_ann_sweep_reuses_a_saved_hnsw_index(tmp_path: Path) -> None:
    """The sweep reads the collection's saved HNSW file instead of building a second graph."""
    import faiss

    from eval.bench.ann import ann_sweep
    from rag.config import DenseConfig
    from rag.index.dense import DenseIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = DenseConfig(index="hnsw", pq_m=8, hnsw_ef_construction=40)
    idx = DenseIndex.open(tmp_path, cfg, "m", 16)
    idx.rebuild(np.arange(len(x)), x)
    idx.save()
    flat = faiss.IndexFlatIP(16)
    flat.add(x)
    _, truth = flat.search(x[:20], 10)
    out = ann_sweep(x, x[:20], truth, cfg, tmp_path / f"dense.{idx.generation}.faiss").to_json()
    assert out["hnsw"]["build_s"] is None  # reused, not rebuilt
    assert out["hnsw"]["sweep"][-1]["recall@10"] >= 0.95
    assert out["ivfpq"]["code_bytes_per_vector"] == 8.0
