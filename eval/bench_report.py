"""Write ``rag bench`` results: ``bench.json``, ``bench.md`` and two PNG plots (and ``bench.gpu.json`` on a GPU).

Plots use matplotlib ``Figure`` objects on the Agg canvas, so no global backend is switched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rag.errors import InputError

BENCH_KEYS: tuple[str, ...] = ("machine", "corpus", "sizes", "targets", "ratios")
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
}


def write_bench_report(out_dir: Path, report: Mapping[str, Any]) -> list[Path]:
    """Write the benchmark report files.

    Args:
        out_dir: directory (created).
        report: what :func:`eval.bench.run_bench` measured; needs ``machine``, ``corpus``,
            ``sizes``, ``targets`` and ``ratios``.

    Returns:
        The paths written.

    Raises:
        InputError: a required key is missing.
    """
    missing = [k for k in BENCH_KEYS if k not in report]
    if missing:
        raise InputError("report", f"missing keys: {', '.join(missing)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    body = {k: v for k, v in report.items()}
    paths.append(_write(out_dir / "bench.json", json.dumps(body, indent=2, sort_keys=False, default=str) + "\n"))
    gpu = report.get("gpu") or {}
    if "gpu" in gpu:
        payload = {"machine": report["machine"], "gpu": gpu}
        paths.append(_write(out_dir / "bench.gpu.json", json.dumps(payload, indent=2) + "\n"))
    paths.append(_write(out_dir / "bench.md", markdown(report)))
    paths.append(plot_latency(out_dir / "latency_vs_size.png", report["sizes"]))
    paths.append(plot_ann(out_dir / "ann_recall_latency.png", report["sizes"]))
    return paths


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _ms(entry: Any, key: str = "p50") -> str:
    if not isinstance(entry, Mapping) or entry.get(key) is None:
        return "—"
    v = float(entry[key])
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


def _reranker_line(reranker: Mapping[str, Any]) -> str:
    if not reranker.get("enabled"):
        return f"Reranker: none ({reranker.get('detail') or 'not configured'}); the rerank column is empty."
    backend = f", backend {reranker['backend']}" if reranker.get("backend") else ""
    return f"Reranker: `{reranker.get('model')}` ({reranker.get('detail')}{backend}); timed over 30 queries per size."


def markdown(report: Mapping[str, Any]) -> str:
    """The Markdown summary: targets, ratios, per-stage latency, peers, API, ingestion, backends, memory."""
    m = report["machine"]
    c = report["corpus"]
    lines = [
        "# Benchmarks (`rag bench`)",
        "",
        f"Machine: **{m.get('name')}** ({m.get('platform')}, Python {m.get('python')}); "
        f"load average at start {m.get('load_average_at_start')}. Mode: {report.get('mode')}, "
        f"run time {report.get('seconds')} s.",
        "",
        "The machine is shared and noisy: compare the **ratios** measured in one run; absolute times are context.",
        "",
        f"Corpus: {c.get('dataset')} ({c.get('base_documents')} documents, {c.get('base_chunks')} chunks of "
        f"{c.get('chunk_size')} tokens, {c.get('embedding_model')}), {c.get('queries')} queries. "
        f"Larger sizes replicate it ({c.get('replication')}).",
        "",
        _reranker_line(report.get("reranker") or {}),
        "",
        "## Targets",
        "",
    ]
    rows = [[t["name"], _fmt(t["value"]), t["target"], {True: "met", False: "**not met**", None: "not measured"}[t["met"]]]
            for t in report["targets"]]
    lines += _table(["target", "value", "goal", "status"], rows)
    lines += ["## Ratios (peer p50 / ours p50, same run)", ""]
    rrows = [[label, key, _fmt(v)] for label, rs in report["ratios"].items() for key, v in rs.items()]
    lines += _table(["size", "comparison", "x"], rrows)
    lines += ["## Latency per stage (ms, p50 / p90 / p99)", ""]
    stages = ["embed", "bm25", "dense", "fuse", "rerank", "total", "hybrid_no_embed", "core"]
    rows = []
    for label, s in report["sizes"].items():
        lat = s.get("latency_ms", {})
        rows.append([f"{label} ({s.get('chunks')})"] + [
            "/".join(_ms(lat.get(st), k) for k in ("p50", "p90", "p99")) if lat.get(st) else "—" for st in stages
        ])
    lines += _table(["size"] + [STAGE_LABELS[s] for s in stages], rows)
    for label, s in report["sizes"].items():
        peers = s.get("peers")
        if not peers:
            continue
        lines += [f"## Peers at {label} ({s.get('chunks')} chunks)", ""]
        lex = peers.get("lexical", {})
        rows = [["tantivy (ours)", "—", _ms(s["latency_ms"].get("bm25")), _ms(s["latency_ms"].get("bm25"), "p99"), "all"]]
        for key in ("rank_bm25", "bm25s"):
            p = lex.get(key, {})
            rows.append([key, _fmt(p.get("build_s")), _ms(p.get("latency_ms")), _ms(p.get("latency_ms"), "p99"), p.get("queries", p.get("error", "—"))])
        lines += ["Lexical, top 100 per query:", ""] + _table(["system", "build s", "p50 ms", "p99 ms", "queries"], rows)
        dense = peers.get("dense", {})
        rows = []
        ours = dense.get("ours", {})
        rows.append([f"ours ({ours.get('kind')}, configured)", _fmt(ours.get("recall@10")), _ms(ours.get("latency_ms")), _fmt(ours.get("bytes_per_vector"))])
        for key in ("faiss_flat", "numpy"):
            p = dense.get(key, {})
            rows.append([key, _fmt(p.get("recall@10")), _ms(p.get("latency_ms")), _fmt(p.get("bytes_per_vector"))])
        h = dense.get("hnsw", {})
        for pt in h.get("sweep", []):
            rows.append([f"HNSW M={h.get('m')} efC={h.get('ef_construction')} efSearch={pt['ef_search']}",
                         _fmt(pt["recall@10"]), _ms(pt["latency_ms"]), _fmt(h.get("bytes_per_vector"))])
        iv = dense.get("ivfpq", {})
        for pt in iv.get("sweep", []):
            rows.append([f"IVF{iv.get('nlist')}-PQ{iv.get('pq_m')} + recheck x{iv.get('refine_factor')} nprobe={pt['nprobe']}",
                         _fmt(pt["recall@10"]), _ms(pt["latency_ms"]),
                         f"{_fmt(iv.get('code_bytes_per_vector'))} code ({_fmt(iv.get('bytes_per_vector_with_recheck'))} with recheck vectors)"])
        lines += ["Dense (single-query search; recall@10 against exact search):", ""]
        lines += _table(["index", "recall@10", "p50 ms", "bytes/vector"], rows)
        hyb = peers.get("hybrid", {})
        nd = peers.get("ndcg@10", {})
        rows = [["ours /v1/search path (with query embedding)", _ms(s["latency_ms"].get("total")), _ms(s["latency_ms"].get("total"), "p99"), _fmt(nd.get("ours"))],
                ["ours without query embedding", _ms(s["latency_ms"].get("hybrid_no_embed")), _ms(s["latency_ms"].get("hybrid_no_embed"), "p99"), _fmt(nd.get("ours"))]]
        for key in ("rank_bm25_numpy", "haystack"):
            p = hyb.get(key, {})
            rows.append([f"{key} (precomputed query vector)", _ms(p.get("latency_ms")), _ms(p.get("latency_ms"), "p99"),
                         _fmt(nd.get(key)) if "error" not in p else p["error"]])
        note = f" nDCG@10 over {nd.get('queries')} SciFact queries (chunks max-pooled to documents)." if nd else ""
        lines += [f"Hybrid (BM25 + dense + RRF, {CANDIDATES_NOTE}).{note}", ""]
        lines += _table(["system", "p50 ms", "p99 ms", "nDCG@10"], rows)
    api = report.get("api_throughput", {})
    if api and not api.get("skipped"):
        lines += [f"## API throughput: `POST /v1/search` over loopback at {api.get('size')} ({api.get('chunks')} chunks)", ""]
        if (report.get("reranker") or {}).get("enabled"):
            lines += ["Each request includes the rerank stage (the server runs with the reranker above).", ""]
        if "error" in api:
            lines += [f"error: {api['error']}", ""]
        rows = [[k, v["requests"], v["errors"], v["rps"], _ms(v["latency_ms"]), _ms(v["latency_ms"], "p99")]
                for k, v in api.items() if isinstance(v, Mapping) and "rps" in v]
        lines += _table(["clients", "requests", "errors", "req/s", "p50 ms", "p99 ms"], rows)
    ing = report.get("ingestion")
    if ing:
        lines += ["## Ingestion (`rag ingest --json`)", ""]
        if "error" in ing or "skipped" in ing:
            lines += [str(ing.get("error") or ing.get("skipped")), ""]
        else:
            lines += [f"{ing['documents']} documents, {ing['chunks']} chunks in {ing['seconds']} s: "
                      f"**{ing['chunks_per_s']} chunks/s**; time outside embedding: {ing['overhead_outside_embedding']:.1%}.", ""]
            lines += _table(["stage", "seconds", "share"], [[k, v, f"{ing['stage_share'].get(k, 0):.1%}"] for k, v in ing["stages_s"].items()])
    be = report.get("embedding_backends")
    if be:
        lines += [f"## Embedding backends on CPU ({be.get('sample_chunks')} chunks)", "",
                  f"Our `RAG_EMBEDDING__BACKEND=onnx`: {be.get('rag_onnx_backend')}. ONNX: {be.get('onnx')}.", ""]
        rows = [[k, v.get("chunks_per_s"), v.get("mean_cosine_to_torch"), v.get("adi_dense_ndcg@10")]
                for k, v in be.items() if isinstance(v, Mapping)]
        lines += _table(["backend", "chunks/s", "mean cosine to torch", "adi dense nDCG@10"], rows)
    lines += ["## Index memory", ""]
    rows = []
    for label, s in report["sizes"].items():
        mem = s.get("memory", {})
        rows.append([label, s.get("chunks"), s.get("dense_kind"), mem.get("dense_bytes_per_vector"),
                     _mb(mem.get("dense_bytes_on_disk")), _mb(mem.get("lexical_bytes_on_disk")),
                     _mb(mem.get("database_bytes")), mem.get("process_rss_mb"), s.get("build_s")])
    lines += _table(["size", "chunks", "dense index", "bytes/vector", "FAISS MB", "tantivy MB", "database MB", "RSS MB", "build s"], rows)
    gpu = report.get("gpu", {})
    lines += ["## GPU", "", f"{gpu.get('gpu', gpu.get('skipped', '—'))}" + (" — see `bench.gpu.json`." if "gpu" in gpu else ""), ""]
    lines += ["Plots: `latency_vs_size.png` (p50 per stage against corpus size, log-log) and "
              "`ann_recall_latency.png` (recall@10 against latency for the ANN settings).", ""]
    return "\n".join(lines)


def _mb(v: Any) -> str:
    return "—" if v is None else f"{v / 1e6:.1f}"


def _figure() -> Figure:
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_latency(path: Path, sizes: Mapping[str, Any]) -> Path:
    """p50 latency of each stage against corpus size, log-log."""
    figure = _figure()
    ax = figure.add_subplot()
    for stage in ("embed", "bm25", "dense", "fuse", "total", "core"):
        pts = sorted((s["chunks"], s["latency_ms"][stage]["p50"]) for s in sizes.values()
                     if isinstance(s.get("latency_ms", {}).get(stage), Mapping))
        if pts:
            ax.plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], marker="o", label=STAGE_LABELS[stage])
    for key, label in (("rank_bm25", "rank-bm25"), ("bm25s", "bm25s")):
        pts = sorted((s["chunks"], s["peers"]["lexical"][key]["latency_ms"]["p50"]) for s in sizes.values()
                     if isinstance(s.get("peers", {}).get("lexical", {}).get(key, {}).get("latency_ms"), Mapping))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="x", linestyle="--", label=f"{label} (peer)")
    pts = sorted((s["chunks"], s["peers"]["hybrid"]["haystack"]["latency_ms"]["p50"]) for s in sizes.values()
                 if isinstance(s.get("peers", {}).get("hybrid", {}).get("haystack", {}).get("latency_ms"), Mapping))
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="x", linestyle="--", label="Haystack hybrid (peer)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the collection (log)")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_title("Query latency per stage against corpus size")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    figure.savefig(path, dpi=120)
    return path


def plot_ann(path: Path, sizes: Mapping[str, Any]) -> Path:
    """recall@10 against p50 latency for each ANN setting, one series per index and size."""
    figure = _figure()
    ax = figure.add_subplot()
    for label, s in sizes.items():
        dense = s.get("peers", {}).get("dense", {})
        for kind, param in (("hnsw", "ef_search"), ("ivfpq", "nprobe")):
            sweep = dense.get(kind, {}).get("sweep", [])
            if not sweep:
                continue
            xs = [p["latency_ms"]["p50"] for p in sweep]
            ys = [p["recall@10"] for p in sweep]
            line = ax.plot(xs, ys, marker="o", label=f"{kind} {label}")[0]
            for p, x, y in zip(sweep, xs, ys, strict=True):
                ax.annotate(str(p[param]), (x, y), fontsize=6, textcoords="offset points", xytext=(2, 2), color=line.get_color())
        flat = dense.get("faiss_flat", {}).get("latency_ms")
        if isinstance(flat, Mapping):
            ax.plot([flat["p50"]], [1.0], marker="s", linestyle="none", label=f"exact flat {label}")
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query, ms (log)")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title("ANN recall against latency (labels: efSearch / nprobe)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    figure.savefig(path, dpi=120)
    return path
