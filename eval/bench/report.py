"""Write a ``rag bench`` report: ``bench.json``, ``bench.md`` and two PNG plots (and ``bench.gpu.json`` on a GPU).

Plots use matplotlib ``Figure`` objects on the Agg canvas, so no global backend is switched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.bench.ann import DensePeers
from eval.bench.common import LatencyStats
from eval.bench.levels import SizeResult
from eval.bench.peers import LevelPeers, PeerResult
from eval.bench.results import BENCH_KEYS, BenchReport, RerankerInfo
from eval.bench.scale import OVERHEAD_DEFINITION, STAGES as SCALE_STAGES, ScaleResult

__all__ = ["BENCH_KEYS", "markdown", "plot_ann", "plot_latency", "plot_scale", "scale_lines", "write_bench_report"]

CANDIDATES_NOTE = "100 candidates per retriever"
STAGE_LABELS = {
    "embed": "query embedding",
    "bm25": "BM25 (tantivy)",
    "dense": "dense (FAISS)",
    "fuse": "fusion + chunk rows",
    "fusion": "RRF only",
    "rerank": "rerank",
    "total": "/v1/search path (no rerank)",
    "hybrid_no_embed": "hybrid without query embedding",
    "core": "index-only hybrid (no embed, no DB)",
    "served": "index-only hybrid with query embedding as served",
}
TABLE_STAGES = ("embed", "bm25", "dense", "fuse", "rerank", "total", "hybrid_no_embed", "core", "served")
PLOT_STAGES = ("embed", "bm25", "dense", "fuse", "total", "core")
STATUS = {True: "met", False: "**not met**", None: "not measured"}


def write_bench_report(out_dir: Path, report: BenchReport | Mapping[str, Any]) -> list[Path]:
    """Write the benchmark report files.

    Args:
        out_dir: directory (created).
        report: what :func:`eval.bench.run_bench` measured, or a saved ``bench.json`` (which needs
            ``machine``, ``corpus``, ``sizes``, ``targets`` and ``ratios``).

    Returns:
        The paths written.

    Raises:
        InputError: a saved report lacks a required key.
    """
    if not isinstance(report, BenchReport):
        report = BenchReport.from_json(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = report.to_json()
    paths = [_write(out_dir / "bench.json", json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")]
    if report.gpu.gpu is not None:
        payload = {"machine": body["machine"], "gpu": body["gpu"]}
        paths.append(_write(out_dir / "bench.gpu.json", json.dumps(payload, indent=2) + "\n"))
    paths.append(_write(out_dir / "bench.md", markdown(report)))
    paths.append(plot_latency(out_dir / "latency_vs_size.png", report.sizes))
    paths.append(plot_ann(out_dir / "ann_recall_latency.png", report.sizes))
    if report.scale is not None:
        paths.append(plot_scale(out_dir / "scale.png", report.scale))
    return paths


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _ms(stats: LatencyStats | None, key: str = "p50") -> str:
    if stats is None:
        return "—"
    v = float(getattr(stats, key))
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _mb(v: Any) -> str:
    return "—" if v is None else f"{v / 1e6:.1f}"


def _reranker_line(reranker: RerankerInfo) -> str:
    if not reranker.enabled:
        return f"Reranker: none ({reranker.detail or 'not configured'}); the rerank column is empty."
    backend = f", backend {reranker.backend}" if reranker.backend else ""
    return f"Reranker: `{reranker.model}` ({reranker.detail}{backend}); timed over 30 queries per size."


def _header(report: BenchReport) -> list[str]:
    m, c = report.machine, report.corpus
    return [
        "# Benchmarks (`rag bench`)",
        "",
        f"Machine: **{m.name}** ({m.platform}, Python {m.python}); "
        f"load average at start {m.load_average_at_start}. Mode: {report.mode}, "
        f"run time {report.seconds} s.",
        "",
        "The machine is shared and noisy: compare the **ratios** measured in one run; absolute times are context.",
        "",
        f"Corpus: {c.dataset} ({c.base_documents} documents, {c.base_chunks} chunks of "
        f"{c.chunk_size} tokens, {c.embedding_model}), {c.queries} queries. "
        f"Larger sizes replicate it ({c.replication}).",
        "",
        _reranker_line(report.reranker),
        "",
    ]


def _summary(report: BenchReport) -> list[str]:
    lines = ["## Targets", ""]
    lines += _table(["target", "value", "goal", "status"],
                    [[t.name, _fmt(t.value), t.target, STATUS[t.met]] for t in report.targets])
    lines += ["## Ratios (peer p50 / ours p50, same run)", ""]
    lines += _table(["size", "comparison", "x"], [[r.size, r.name, _fmt(r.value)] for r in report.ratios])
    lines += ["## Latency per stage (ms, p50 / p90 / p99)", ""]
    rows = []
    for label, s in report.sizes.items():
        lat = s.latency()
        rows.append([f"{label} ({s.chunks})"] + [
            "/".join(_ms(lat.get(st), k) for k in ("p50", "p90", "p99")) if lat.get(st) else "—" for st in TABLE_STAGES
        ])
    return lines + _table(["size"] + [STAGE_LABELS[s] for s in TABLE_STAGES], rows)


def _lexical_table(s: SizeResult, peers: LevelPeers) -> list[str]:
    bm25 = s.latency().get("bm25")
    rows: list[list[Any]] = [["tantivy (ours)", "—", _ms(bm25), _ms(bm25, "p99"), "all"]]
    for key, p in (("rank_bm25", peers.lexical.rank_bm25), ("bm25s", peers.lexical.bm25s)):
        rows.append([key, _fmt(p.build_s), _ms(p.latency), _ms(p.latency, "p99"), p.queries if p.error is None else p.error])
    return ["Lexical, top 100 per query:", ""] + _table(["system", "build s", "p50 ms", "p99 ms", "queries"], rows)


def _dense_table(dense: DensePeers) -> list[str]:
    ours = dense.ours
    rows = [[f"ours ({ours.kind}, configured)", _fmt(ours.recall_at_10), _ms(ours.latency), _fmt(ours.bytes_per_vector)]
            if ours is not None else ["ours (None, configured)", "—", "—", "—"]]
    for key, p in (("faiss_flat", dense.faiss_flat), ("numpy", dense.numpy)):
        rows.append([key, _fmt(p.recall_at_10), _ms(p.latency), _fmt(p.bytes_per_vector)])
    h = dense.hnsw
    for pt in h.sweep:
        rows.append([f"HNSW M={h.m} efC={h.ef_construction} efSearch={pt.value}",
                     _fmt(pt.recall_at_10), _ms(pt.latency), _fmt(h.bytes_per_vector)])
    iv = dense.ivfpq
    for pt in iv.sweep:
        rows.append([f"IVF{iv.nlist}-PQ{iv.pq_m} + recheck x{iv.refine_factor} nprobe={pt.value}",
                     _fmt(pt.recall_at_10), _ms(pt.latency),
                     f"{_fmt(iv.code_bytes_per_vector)} code ({_fmt(iv.bytes_per_vector_with_recheck)} with recheck vectors)"])
    lines = ["Dense (single-query search; recall@10 against exact search):", ""]
    return lines + _table(["index", "recall@10", "p50 ms", "bytes/vector"], rows)


def _hybrid_table(s: SizeResult, peers: LevelPeers) -> list[str]:
    lat = s.latency()
    nd = peers.quality.ndcg_at_10 if peers.quality is not None else {}
    total, no_embed = lat.get("total"), lat.get("hybrid_no_embed")
    rows = [["ours /v1/search path (with query embedding)", _ms(total), _ms(total, "p99"), _fmt(nd.get("ours"))],
            ["ours without query embedding", _ms(no_embed), _ms(no_embed, "p99"), _fmt(nd.get("ours"))]]
    for key, peer in (("rank_bm25_numpy", peers.hybrid.rank_bm25_numpy), ("haystack", peers.hybrid.haystack)):
        p = peer or PeerResult()
        rows.append([f"{key} (precomputed query vector)", _ms(p.latency), _ms(p.latency, "p99"),
                     _fmt(nd.get(key)) if p.error is None else p.error])
    note = ""
    if peers.quality is not None:
        note = f" nDCG@10 over {peers.quality.queries} SciFact queries (chunks max-pooled to documents)."
    lines = [f"Hybrid (BM25 + dense + RRF, {CANDIDATES_NOTE}).{note}", ""]
    return lines + _table(["system", "p50 ms", "p99 ms", "nDCG@10"], rows)


def _peer_sections(sizes: Mapping[str, SizeResult]) -> list[str]:
    lines: list[str] = []
    for label, s in sizes.items():
        if s.peers is None:
            continue
        lines += [f"## Peers at {label} ({s.chunks} chunks)", ""]
        lines += _lexical_table(s, s.peers) + _dense_table(s.peers.dense) + _hybrid_table(s, s.peers)
    return lines


def _api_section(report: BenchReport) -> list[str]:
    api = report.api_throughput
    if api.skipped:
        return []
    lines = [f"## API throughput: `POST /v1/search` over loopback at {api.size} ({api.chunks} chunks)", ""]
    lines += ["Search only: the server runs without the reranker. The ideal rate is the cores divided by the server's "
              f"CPU time per request with one client: {api.ideal_rps} req/s on {api.cores} cores. The clients "
              f"({api.client or 'httpx'}) run on the same cores; their CPU per request is in the last column.", ""]
    if api.error is not None:
        lines += [f"error: {api.error}", ""]
    ideal = api.ideal_rps
    rows = [[str(v.clients), v.requests, v.errors, v.rps, _ms(v.latency), _ms(v.latency, "p99"),
             v.cpu_ms_per_request if v.cpu_ms_per_request is not None else "—",
             round(v.rps / ideal, 2) if ideal else "—",
             v.client_cpu_ms_per_request if v.client_cpu_ms_per_request is not None else "—"] for v in api.loads]
    return lines + _table(["clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "server CPU ms/request",
                           "share of ideal", "client CPU ms/request"], rows)


def _verify_section(report: BenchReport) -> list[str]:
    v = report.verify
    if v is None:
        return []
    lines = ["## Verify stage on the demo's answer", ""]
    if v.error is not None:
        return lines + [f"error: {v.error}", ""]
    lines += [f"{v.claims} claims against {v.sources} sources ({v.supported} judged supported). Cold: one verify per "
              "fresh runtime, as the demo's first question; warm: the same answer again in one runtime.", ""]
    return lines + _table(["", "p50 ms", "p90 ms", "p99 ms"],
                          [["cold", _ms(v.cold), _ms(v.cold, "p90"), _ms(v.cold, "p99")],
                           ["warm", _ms(v.warm), _ms(v.warm, "p90"), _ms(v.warm, "p99")]])


def _ingest_and_backends(report: BenchReport) -> list[str]:
    lines: list[str] = []
    ing = report.ingestion
    if ing is not None:
        lines += ["## Ingestion (`rag ingest --json`)", ""]
        if ing.error is not None or ing.skipped is not None:
            lines += [str(ing.error or ing.skipped), ""]
        else:
            lines += [f"{ing.documents} documents, {ing.chunks} chunks in {ing.seconds} s: "
                      f"**{ing.chunks_per_s} chunks/s**; time outside embedding: {ing.overhead_outside_embedding:.1%}.", ""]
            lines += _table(["stage", "seconds", "share"],
                            [[k, v, f"{ing.stage_share.get(k, 0):.1%}"] for k, v in ing.stages_s.items()])
    be = report.embedding_backends
    if be is not None:
        lines += [f"## Embedding backends on CPU ({be.sample_chunks} chunks)", "",
                  f"Our `RAG_EMBEDDING__BACKEND=onnx`: {be.rag_onnx_backend}. ONNX: {be.onnx}.", ""]
        rows = [[b.name, b.chunks_per_s, b.mean_cosine_to_torch, b.adi_ndcg_at_10] for b in be.backends]
        lines += _table(["backend", "chunks/s", "mean cosine to torch", "adi dense nDCG@10"], rows)
    return lines


def scale_lines(scale: ScaleResult | None) -> list[str]:
    """The ``scale`` stage's section: Ray ingestion against local, then 1 shard against several."""
    if scale is None:
        return []
    lines = [f"## Scale-out (`scale` stage, {scale.seconds} s)", ""]
    ing = scale.ingest
    if ing is not None:
        lines += ["### Ingestion: Ray against a local ingest", ""]
        if ing.skipped is not None:
            lines += [f"Skipped: {ing.skipped}", ""]
        else:
            lines += [f"Same corpus, fresh data dir per run, through `rag ingest --json` on a {ing.cores}-core machine. "
                      f"A local {ing.cores}-CPU Ray cluster started once ({ing.ray_start_s} s) and was warmed by an "
                      f"untimed ingest ({ing.warmup_s} s); each ingest is a new Ray job, so its actors start inside "
                      "it: *with actor start* is chunks / seconds as reported, *warm* is the marginal rate over a "
                      "small ingest in the same configuration. The local ingest embeds with every core; "
                      f"`1x{ing.cores}cpu` (one actor reserving every core) is the same-cores comparison, "
                      f"`{ing.cores}x1cpu` one single-threaded actor per core. Overhead: {OVERHEAD_DEFINITION}.", ""]
            rounds = max((len(r.rounds_warm) for r in ing.runs), default=0)
            if rounds > 1:
                lines += [f"The configurations ran in {rounds} interleaved rounds; each row is the round with the median "
                          "warm rate, and *chunks/s with actor start* is the median of its own; every round's warm "
                          "rate is in the last column. Each ratio is the median over the rounds of Ray's rate over "
                          "the local rate of the same round.", ""]
            rows = [[r.name, r.chunks, r.seconds, _fmt(r.chunks_per_s), r.small_chunks, r.small_seconds,
                     _fmt(r.warm_chunks_per_s), " / ".join(_fmt(v) for v in r.rounds_warm), r.error or ""]
                    for r in ing.runs]
            lines += _table(["run", "chunks", "seconds", "chunks/s with actor start", "small chunks", "small s",
                             "warm chunks/s", "warm chunks/s per round", "error"], rows)
            lines += _table(["ratio", "value"], [[k, _fmt(v)] for k, v in ing.ratios().items()])
    if scale.search_error is not None:
        lines += [f"Sharded search failed: {scale.search_error}", ""]
    srch = scale.search
    if srch is not None:
        n = str(srch.shards)
        lines += [f"### Search: {srch.chunks} chunks in 1 shard against {srch.shards} shards", "",
                  f"{srch.queries} queries, the two collections alternating first; precomputed query vectors, "
                  f"{CANDIDATES_NOTE}, hybrid loads the top 10 rows. Dense index: {srch.dense_kind.get('1')} "
                  f"(1 shard), {srch.dense_kind.get(n)} ({srch.shards} shards), both HNSW, so dense "
                  f"overlap is the approximate index's agreement with the other. Build: {srch.build_s} s.", ""]
        ratio = srch.ratios()
        rows = [[st, "/".join(_ms(srch.latency["1"].get(st), k) for k in ("p50", "p90", "p99")),
                 "/".join(_ms(srch.latency[n].get(st), k) for k in ("p50", "p90", "p99")),
                 _fmt(ratio.get(st)), _fmt(srch.overlap_at_10.get(st))] for st in SCALE_STAGES]
        lines += _table(["stage", "1 shard ms p50/p90/p99", f"{srch.shards} shards ms p50/p90/p99",
                         f"p50 {srch.shards}/1", "top-10 overlap"], rows)
    return lines + ["Plot: `scale.png`.", ""]


def _memory_and_gpu(report: BenchReport) -> list[str]:
    lines = ["## Index memory", ""]
    rows = []
    for label, s in report.sizes.items():
        mem = s.memory
        rows.append([label, s.chunks, s.dense_kind, mem.dense_bytes_per_vector, _mb(mem.dense_bytes_on_disk),
                     _mb(mem.lexical_bytes_on_disk), _mb(mem.database_bytes), mem.process_rss_mb, s.build_s])
    lines += _table(["size", "chunks", "dense index", "bytes/vector", "FAISS MB", "tantivy MB", "database MB", "RSS MB", "build s"], rows)
    gpu = report.gpu
    what = gpu.gpu if gpu.gpu is not None else gpu.skipped if gpu.skipped is not None else "—"
    lines += ["## GPU", "", f"{what}" + (" — see `bench.gpu.json`." if gpu.gpu is not None else ""), ""]
    lines += ["Plots: `latency_vs_size.png` (p50 per stage against corpus size, log-log) and "
              "`ann_recall_latency.png` (recall@10 against latency for the ANN settings).", ""]
    return lines


def markdown(report: BenchReport) -> str:
    """The Markdown summary: targets, ratios, per-stage latency, peers, API, ingestion, backends, memory."""
    lines = _header(report) + _summary(report) + _peer_sections(report.sizes) + _api_section(report) + _verify_section(report)
    lines += _ingest_and_backends(report) + scale_lines(report.scale) + _memory_and_gpu(report)
    return "\n".join(lines)


def _figure() -> Figure:
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Log x axis, labels, grid and legend; write the PNG."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    figure.savefig(path, dpi=120)
    return path


def _peer_series(sizes: Mapping[str, SizeResult], pick: Any) -> list[tuple[int, float]]:
    """(chunks, p50) of the peer ``pick(peers)`` at every size where it was timed."""
    pts = []
    for s in sizes.values():
        peer = pick(s.peers) if s.peers is not None else None
        if peer is not None and peer.latency is not None:
            pts.append((s.chunks, peer.latency.p50))
    return sorted(pts)


def plot_latency(path: Path, sizes: Mapping[str, SizeResult]) -> Path:
    """p50 latency of each stage against corpus size, log-log."""
    figure = _figure()
    ax = figure.add_subplot()
    for stage in PLOT_STAGES:
        pts = sorted((s.chunks, s.latency()[stage].p50) for s in sizes.values() if s.latency().get(stage) is not None)
        if pts:
            ax.plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], marker="o", label=STAGE_LABELS[stage])
    peers = (("rank-bm25", lambda p: p.lexical.rank_bm25), ("bm25s", lambda p: p.lexical.bm25s),
             ("Haystack hybrid", lambda p: p.hybrid.haystack))
    for label, pick in peers:
        pts = _peer_series(sizes, pick)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="x", linestyle="--", label=f"{label} (peer)")
    ax.set_yscale("log")
    return _save(figure, ax, path, "chunks in the collection (log)", "p50 latency, ms (log)",
                 "Query latency per stage against corpus size")


def plot_scale(path: Path, scale: ScaleResult) -> Path:
    """Two bar charts: chunks/s per ingest run (with actor start and warm), and p50 per stage for 1 and N shards."""
    figure = Figure(figsize=(9.5, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    runs = [r for r in (scale.ingest.runs if scale.ingest is not None else ()) if r.error is None]
    xs = range(len(runs))
    left.bar([x - 0.2 for x in xs], [r.chunks_per_s or 0 for r in runs], 0.4, label="with actor start")
    left.bar([x + 0.2 for x in xs], [r.warm_chunks_per_s or 0 for r in runs], 0.4, label="warm")
    left.set_xticks(list(xs), [r.name for r in runs], fontsize=8)
    left.set_ylabel("chunks/s")
    left.set_title("Ingestion" if runs else "Ingestion (not measured)")
    if runs:
        left.legend(fontsize=7)
    srch = scale.search
    if srch is not None:
        n = str(srch.shards)
        xs = range(len(SCALE_STAGES))
        for off, label, lat in ((-0.2, "1 shard", srch.latency["1"]), (0.2, f"{srch.shards} shards", srch.latency[n])):
            right.bar([x + off for x in xs], [lat[s].p50 if lat.get(s) else 0 for s in SCALE_STAGES], 0.4, label=label)
        right.set_xticks(list(xs), list(SCALE_STAGES))
        right.legend(fontsize=7)
    right.set_ylabel("p50 ms")
    right.set_title(f"Search at {srch.chunks} chunks" if srch is not None else "Search (not measured)")
    figure.savefig(path, dpi=120)
    return path


def plot_ann(path: Path, sizes: Mapping[str, SizeResult]) -> Path:
    """recall@10 against p50 latency for each ANN setting, one series per index and size."""
    figure = _figure()
    ax = figure.add_subplot()
    for label, s in sizes.items():
        if s.peers is None:
            continue
        dense = s.peers.dense
        for kind, sweep in (("hnsw", dense.hnsw.sweep), ("ivfpq", dense.ivfpq.sweep)):
            points = [p for p in sweep if p.latency is not None]
            if not points:
                continue
            xs = [p.latency.p50 for p in points]  # type: ignore[union-attr]
            ys = [p.recall_at_10 for p in points]
            line = ax.plot(xs, ys, marker="o", label=f"{kind} {label}")[0]
            for p, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(str(p.value), (x, y), fontsize=6, textcoords="offset points", xytext=(2, 2), color=line.get_color())
        if dense.faiss_flat.latency is not None:
            ax.plot([dense.faiss_flat.latency.p50], [1.0], marker="s", linestyle="none", label=f"exact flat {label}")
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    return _save(figure, ax, path, "p50 latency per query, ms (log)", "recall@10 vs exact",
                 "ANN recall against latency (labels: efSearch / nprobe)")
