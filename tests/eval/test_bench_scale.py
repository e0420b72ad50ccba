"""The ``scale`` stage of ``rag bench`` at a tiny size: 1 shard against 4, and (``-m slow``) Ray against local ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.bench.corpus import QuerySet, load_base
from eval.bench.plan import BenchPlan
from eval.bench.report import plot_scale, scale_lines
from eval.bench.scale import (
    STAGES,
    ScaleIngest,
    ScaleResult,
    ShardedSearch,
    measure_scale_ingest,
    measure_sharded_search,
    ray_missing,
    scale_ratios,
)
from rag.config import Settings
from tests.eval.test_bench import HashingEmbedder


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> ShardedSearch:
    tmp = tmp_path_factory.mktemp("scale")
    settings = Settings(data_dir=tmp / "data", reranker={"model": ""})
    embedder = HashingEmbedder(settings).warm_up()
    plan = BenchPlan(dataset=None, synthetic_docs=300)
    base = load_base(settings, embedder, plan, lambda m: None)
    queries = QuerySet(list(base.queries.values()), base.query_vectors)
    return measure_sharded_search(settings, base, queries, 2000, 4, 23, tmp / "work", embedder)


def test_sharded_search_fields(sharded: ShardedSearch) -> None:
    body = sharded.to_json()
    assert body["chunks"] >= 2000 and body["shards"] == 4 and body["queries"] == 20
    assert set(body["latency_ms"]) == {"1", "4"}
    for label in ("1", "4"):
        assert body["build_s"][label] >= 0
        for stage in STAGES:
            assert body["latency_ms"][label][stage]["p50"] > 0
    for stage in STAGES:
        p1, p4 = body["latency_ms"]["1"][stage]["p50"], body["latency_ms"]["4"][stage]["p50"]
        assert body["p50_ratio"][stage] == pytest.approx(p4 / p1, rel=1e-3)
        assert 0.0 <= body["overlap_at_10"][stage] <= 1.0
    # Both are HNSW (one index kind, as at 100k), and BM25 uses collection-wide statistics
    assert body["dense_kind"] == {"1": "hnsw", "4": "hnsw"}
    assert body["overlap_at_10"]["dense"] > 0.9
    assert body["overlap_at_10"]["bm25"] == 1.0
    assert ShardedSearch.from_json(body).to_json() == body


def test_scale_section_plot_and_ratios(sharded: ShardedSearch, tmp_path: Path) -> None:
    result = ScaleResult(ScaleIngest(skipped="import ray failed (test)"), sharded, None, 1.0)
    text = "\n".join(scale_lines(result))
    assert "import ray failed (test)" in text and "4 shards" in text
    assert ScaleResult.from_json(result.to_json()).to_json() == result.to_json()
    png = plot_scale(tmp_path / "scale.png", result).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    rows = {r.name: r.value for r in scale_ratios(result)}
    assert rows["hybrid p50 4 shards / 1 shard"] == sharded.ratios()["hybrid"]


def test_full_plan_runs_the_stage_and_quick_does_not() -> None:
    assert BenchPlan.full().scale and not BenchPlan.quick().scale and not BenchPlan().scale


@pytest.mark.slow
def test_ray_ingest_against_local(tmp_path: Path) -> None:
    if ray_missing():
        pytest.skip(ray_missing())
    result = measure_scale_ingest(None, 12, tmp_path, 2)
    body = result.to_json()
    assert "skipped" not in body, body
    runs = {r["name"]: r for r in body["runs"]}
    assert set(runs) == {"local", "ray 1x2cpu", "ray 2x1cpu"}
    for r in runs.values():
        assert r["error"] is None, r
        assert r["chunks"] > 0 and r["chunks_per_s"] > 0
    local, ray1 = runs["local"], runs["ray 1x2cpu"]
    ratio = body["ratios"]["ray 1x2cpu / local (with actor start)"]
    assert ratio == pytest.approx(ray1["chunks_per_s"] / local["chunks_per_s"], rel=1e-3)
    assert np.isfinite(body["ratios"]["overhead (1 actor, same cores, with actor start)"])
