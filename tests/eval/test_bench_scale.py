"""The ``scale`` stage of ``rag bench`` at a tiny size: 1 shard against 4, and (``-m slow``) Ray against local ingest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eval.bench.corpus import QuerySet, load_base
from eval.bench.plan import BenchPlan
from eval.bench.report import plot_scale, scale_lines
from eval.bench.scale import (
    STAGES,
    IngestRun,
    ScaleIngest,
    ScaleResult,
    ShardedSearch,
    _median_run,
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


def _round(name: str, warm: float, with_start: float, seconds: float) -> IngestRun:
    return IngestRun(name, "ray", 1, 2.0, 10, 100, seconds, with_start, 5, 1.0, warm)


def test_rounds_report_the_median_round_and_every_rate() -> None:
    rounds = [_round("ray 1x2cpu", 30.0, 20.0, 5.0), _round("ray 1x2cpu", 20.0, 25.0, 6.0),
              _round("ray 1x2cpu", 25.0, 10.0, 7.0)]
    run = _median_run(rounds)
    # the median warm round's own figures, and the median with-start rate over the rounds
    assert (run.warm_chunks_per_s, run.seconds, run.chunks_per_s) == (25.0, 7.0, 20.0)
    assert run.rounds_warm == (30.0, 20.0, 25.0) and run.rounds_with_start == (20.0, 25.0, 10.0)
    assert IngestRun.from_json(run.to_json()) == run
    # an even count takes the lower middle; a failed round makes the configuration failed
    assert _median_run(rounds[:2]).warm_chunks_per_s == 20.0
    assert _median_run([replace(rounds[0], warm_chunks_per_s=None), rounds[2]]).warm_chunks_per_s == 25.0
    failed = IngestRun("ray 1x2cpu", "ray", 1, 2.0, error="the Ray cluster did not start")
    assert _median_run([rounds[0], failed]).error == "the Ray cluster did not start"
    # each ratio is the median of the rounds' own ratios: 30/40, 20/20, 25/50 -> 0.75
    local = _median_run([IngestRun("local", "local", warm_chunks_per_s=w, chunks_per_s=35.0) for w in (40.0, 20.0, 50.0)])
    ingest = ScaleIngest((local, run), 2)
    assert ingest.ratios()["ray 1x2cpu / local (warm)"] == pytest.approx(0.75)
    assert ingest.ratios()["overhead (1 actor, same cores, warm)"] == pytest.approx(0.25)
    one = ScaleIngest((replace(local, rounds_warm=(), rounds_with_start=()), replace(run, rounds_warm=())), 2)
    assert one.ratios()["ray 1x2cpu / local (warm)"] == pytest.approx(25.0 / 40.0)  # no rounds: the plain ratio
    text = "\n".join(scale_lines(ScaleResult(ingest, None, None, 1.0)))
    assert "30 / 20 / 25" in text


def test_full_plan_runs_the_stage_and_quick_does_not() -> None:
    assert BenchPlan.full().scale and not BenchPlan.quick().scale and not BenchPlan().scale


@pytest.mark.slow
def test_ray_ingest_against_local(tmp_path: Path) -> None:
    if ray_missing():
        pytest.skip(ray_missing())
    result = measure_scale_ingest(None, 12, tmp_path, 2, rounds=2)
    body = result.to_json()
    assert "skipped" not in body, body
    runs = {r["name"]: r for r in body["runs"]}
    assert set(runs) == {"local", "ray 1x2cpu", "ray 2x1cpu"}
    for r in runs.values():
        assert r["error"] is None, r
        assert r["chunks"] > 0 and r["chunks_per_s"] > 0
        assert len(r["rounds_warm"]) == 2 and r["warm_chunks_per_s"] in r["rounds_warm"]
    local, ray1 = runs["local"], runs["ray 1x2cpu"]
    ratio = body["ratios"]["ray 1x2cpu / local (with actor start)"]
    per_round = sorted(a / b for a, b in zip(ray1["rounds_with_start"], local["rounds_with_start"]))
    assert ratio == pytest.approx(per_round[0], rel=1e-3)  # the lower middle of two rounds' own ratios
    assert np.isfinite(body["ratios"]["overhead (1 actor, same cores, with actor start)"])
