"""Write evaluation reports: JSON for machines, Markdown and PNG plots for people.

Plots are drawn on matplotlib ``Figure`` objects with the Agg canvas directly,
so no global backend is switched and no display is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.datasets import baselines_for
from rag.errors import InputError
from rag.security.crypto import DataCipher, write_export

RETRIEVAL_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100", "coverage")
RETRIEVAL_KEYS: tuple[str, ...] = ("dataset", "queries", "stages", "latency_ms", "config")
ANSWER_METRICS: tuple[str, ...] = (
    "exact_match",
    "f1",
    "faithfulness",
    "citation_precision",
    "citation_recall",
    "abstention_rate",
)
ANSWER_KEYS: tuple[str, ...] = (*ANSWER_METRICS, "latency_ms", "config")
LATENCY_KEYS: tuple[str, ...] = ("p50", "p90", "p99")


def write_retrieval_report(
    out_dir: Path,
    report: Mapping[str, Any],
    recall_curves: Mapping[str, Mapping[int, float]],
) -> list[Path]:
    """Write a retrieval evaluation as JSON, Markdown and two plots.

    ``report`` holds ``dataset``, ``queries``, ``stages`` (stage -> metric ->
    value, see ``RETRIEVAL_METRICS``), ``latency_ms`` (stage -> p50/p90/p99),
    ``config`` and optionally ``split`` and ``pooling`` (a note on how chunk
    hits became document scores). Published baselines for the dataset, when
    known, are shown beside our stages in the Markdown and the nDCG plot.

    Args:
        out_dir: output directory, created if needed.
        report: the report; written to ``report.json`` unchanged.
        recall_curves: stage -> cutoff k -> recall@k.

    Returns:
        Paths of ``report.json``, ``report.md``, ``recall_at_k.png`` and
        ``ndcg_by_stage.png``.

    Raises:
        InputError: ``report`` lacks a required key.
    """
    _require(report, RETRIEVAL_KEYS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    baselines = baselines_for(str(report["dataset"]), str(report.get("split", "test")))

    stages: Mapping[str, Mapping[str, Any]] = report["stages"]
    rows = [[stage, "this run", *(_fmt(metrics.get(m)) for m in RETRIEVAL_METRICS)] for stage, metrics in stages.items()]
    rows += [[label, "reference", *(_fmt(values.get(m)) for m in RETRIEVAL_METRICS)] for label, values in baselines.items()]
    sections = [
        f"# Retrieval report: {report['dataset']}",
        _summary_line(report),
        "## Effectiveness",
        _table(["stage", "source", *RETRIEVAL_METRICS], rows),
    ]
    if baselines:
        sections.append(
            "Reference rows come from `eval.datasets.PUBLISHED_BASELINES`; "
            "rows labelled *check run* are not published figures."
        )
    if report.get("pooling"):
        sections.append(f"**Pooling:** {report['pooling']}")
    sections += _full_recall_sections(report)
    sections += _latency_and_config(report)

    paths = [
        _write_json(out_dir / "report.json", report),
        _write_text(out_dir / "report.md", "\n\n".join(sections) + "\n"),
        _plot_recall_curves(out_dir / "recall_at_k.png", recall_curves, str(report["dataset"])),
        _plot_ndcg(out_dir / "ndcg_by_stage.png", stages, baselines, str(report["dataset"])),
    ]
    return paths


def write_answer_report(
    out_dir: Path, report: Mapping[str, Any], rows: Iterable[Mapping[str, Any]], cipher: DataCipher | None = None
) -> list[Path]:
    """Write an answer evaluation as JSON, Markdown, per-question JSONL and a plot.

    ``report`` holds the answer metrics of ``ANSWER_METRICS`` (a value may be
    ``None`` when it was not measured), ``latency_ms`` (stage -> p50/p90/p99),
    ``config`` and optionally ``dataset``, ``split`` and ``queries``.

    Args:
        out_dir: output directory, created if needed.
        report: the report; written to ``report.json`` unchanged.
        rows: one JSON-serialisable dict per question.

    Returns:
        Paths of ``report.json``, ``report.md``, ``answers.jsonl`` and
        ``answer_metrics.png``.

    Raises:
        InputError: ``report`` lacks a required key.
    """
    _require(report, ANSWER_KEYS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = report.get("dataset")
    baselines = baselines_for(str(dataset), str(report.get("split", "test"))) if dataset else {}
    baselines = {label: values for label, values in baselines.items() if any(m in values for m in ANSWER_METRICS)}

    table_rows = [["this run", *(_fmt(report.get(m)) for m in ANSWER_METRICS)]]
    table_rows += [[label, *(_fmt(values.get(m)) for m in ANSWER_METRICS)] for label, values in baselines.items()]
    sections = [
        f"# Answer report: {dataset}" if dataset else "# Answer report",
        _summary_line(report),
        "## Answer quality",
        _table(["run", *ANSWER_METRICS], table_rows),
        "Exact match and F1 use the SQuAD v1.1 normaliser. Reference rows, when present, are readers given the "
        "gold paragraph, so they bound the answer step alone, not retrieval plus answering.",
        *_planner_sections(report),
        *_latency_and_config(report),
    ]

    # questions, answers and cited texts: sealed with the data key when there is one
    answers_path = write_export(
        out_dir / "answers.jsonl",
        "".join(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n" for row in rows),
        cipher,
    )

    return [
        _write_json(out_dir / "report.json", report),
        _write_text(out_dir / "report.md", "\n\n".join(sections) + "\n"),
        answers_path,
        _plot_answers(out_dir / "answer_metrics.png", report),
    ]


PLAN_ANSWER_METRICS: tuple[str, ...] = (
    "exact_match", "f1", "hotpot_em", "hotpot_f1", "handed_full_recall", "hops_mean", "fallback_rate",
)


def _full_recall_sections(report: Mapping[str, Any]) -> list[str]:
    """Full recall@k per stage, per query type, and per planner (collected and handed evidence)."""
    sections: list[str] = []
    full: Mapping[str, Mapping[str, float]] = report.get("full_recall") or {}
    if full:
        keys = sorted({k for m in full.values() for k in m}, key=lambda k: int(k.split("@")[1]))
        sections += [
            "## Full recall@k (all gold documents of a query in the top k)",
            _table(["stage", *keys], [[stage, *(_fmt(m.get(k)) for k in keys)] for stage, m in full.items()]),
        ]
    for kind, block in (report.get("by_type") or {}).items():
        stages = block["stages"]
        keys = list(next(iter(stages.values())).keys()) if stages else []
        sections += [
            f"### Type `{kind}` ({block['queries']} queries)",
            _table(["stage", *keys], [[stage, *(_fmt(m.get(k)) for k in keys)] for stage, m in stages.items()]),
        ]
    plans: Mapping[str, Mapping[str, Any]] = report.get("plans") or {}
    if plans:
        keys = [k for k in next(iter(plans.values())) if k.startswith(("collected_", "handed_"))]
        rows = [[mode, "all", *(_fmt(m.get(k)) for k in keys), _fmt(m.get("hops_mean")), _fmt(m.get("fallback_rate"))]
                for mode, m in plans.items()]
        for mode, m in plans.items():
            rows += [[mode, kind, *(_fmt(b.get(k)) for k in keys), "", ""] for kind, b in m.get("by_type", {}).items()]
        sections += [
            "## Planners: evidence collected (full recall@k of the steps' round-robin union) and handed to the generator",
            _table(["planner", "type", *keys, "hops", "fallback"], rows),
        ]
    return sections


def _planner_sections(report: Mapping[str, Any]) -> list[str]:
    """The planners side by side, overall and per query type."""
    modes: Mapping[str, Mapping[str, Any]] = report.get("planners") or {}
    if not modes:
        return []
    rows = []
    for mode, m in modes.items():
        p50 = (m.get("latency_ms") or {}).get("total", {}).get("p50")
        rows.append([mode, "all", *(_fmt(m.get(k)) for k in PLAN_ANSWER_METRICS), _fmt_ms(p50)])
        for kind, b in (m.get("by_type") or {}).items():
            rows.append([mode, kind, *(_fmt(b.get(k)) for k in PLAN_ANSWER_METRICS[:6]), "", ""])
    return [
        "## Planners",
        _table(["planner", "type", *PLAN_ANSWER_METRICS, "total p50 ms"], rows),
        (
            "hotpot_em / hotpot_f1 follow HotpotQA's hotpot_evaluate_v1.py; handed_full_recall is the share of "
            "questions with all gold documents among the sources handed to the generator."
        ),
    ]


def _require(report: Mapping[str, Any], keys: Sequence[str]) -> None:
    missing = [key for key in keys if key not in report]
    if missing:
        raise InputError("report", f"missing keys: {', '.join(missing)}")


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays expose item()/tolist(); paths become strings.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    return _write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        return f"{float(value):.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_line(report: Mapping[str, Any]) -> str:
    facts = [f"{key}: **{report[key]}**" for key in ("dataset", "split", "queries") if key in report]
    return " · ".join(facts) if facts else ""


def _latency_and_config(report: Mapping[str, Any]) -> list[str]:
    latency: Mapping[str, Mapping[str, float]] = report.get("latency_ms") or {}
    rows = [[stage, *(_fmt_ms(values.get(p)) for p in LATENCY_KEYS)] for stage, values in latency.items()]
    config = json.dumps(report.get("config", {}), indent=2, ensure_ascii=False, default=_jsonable)
    return [
        "## Latency (ms)",
        _table(["stage", *LATENCY_KEYS], rows) if rows else "No latencies recorded.",
        "## Config",
        f"```json\n{config}\n```",
    ]


def _fmt_ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f}"


def _new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=120)
    return path


def _plot_recall_curves(path: Path, curves: Mapping[str, Mapping[int, float]], dataset: str) -> Path:
    figure = _new_figure()
    axes = figure.add_subplot()
    for stage, points in curves.items():
        # Cutoffs may arrive as strings after a JSON round trip.
        ks = sorted((int(k), float(v)) for k, v in points.items())
        if ks:
            axes.plot([k for k, _ in ks], [v for _, v in ks], marker="o", label=stage)
    axes.set_xscale("log")
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("k (log scale)")
    axes.set_ylabel("recall@k")
    axes.set_title(f"Recall@k by stage: {dataset}")
    axes.grid(True, which="both", alpha=0.3)
    if axes.lines:
        axes.legend()
    return _save(figure, path)


def _plot_ndcg(
    path: Path,
    stages: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, float]],
    dataset: str,
) -> Path:
    figure = _new_figure(width=10.0)
    axes = figure.add_subplot()
    names = list(stages)
    values = [float(stages[name].get("ndcg@10") or 0.0) for name in names]
    bars = axes.bar(names, values, color="tab:blue")
    axes.bar_label(bars, fmt="%.3f")
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 3))]
    references = [(label, values["ndcg@10"]) for label, values in baselines.items() if "ndcg@10" in values]
    for index, (label, value) in enumerate(references):
        axes.axhline(value, linestyle=styles[index % len(styles)], color=f"C{index + 1}", label=f"{label}: {value:.3f}")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("nDCG@10")
    axes.set_title(f"nDCG@10 by stage: {dataset}")
    if references:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


def _plot_answers(path: Path, report: Mapping[str, Any]) -> Path:
    figure = _new_figure(width=11.0)
    metric_axes, latency_axes = figure.subplots(1, 2)
    measured = [(m, float(report[m])) for m in ANSWER_METRICS if report.get(m) is not None]
    bars = metric_axes.bar([m for m, _ in measured], [v for _, v in measured], color="tab:green")
    metric_axes.bar_label(bars, fmt="%.3f")
    metric_axes.set_ylim(0.0, 1.05)
    metric_axes.set_title("Answer metrics")
    metric_axes.tick_params(axis="x", labelrotation=30)

    latency: Mapping[str, Mapping[str, float]] = report.get("latency_ms") or {}
    stages = list(latency)
    width = 0.8 / len(LATENCY_KEYS)
    for index, key in enumerate(LATENCY_KEYS):
        positions = [i + (index - (len(LATENCY_KEYS) - 1) / 2) * width for i in range(len(stages))]
        latency_axes.bar(positions, [float(latency[s].get(key) or 0.0) for s in stages], width, label=key)
    latency_axes.set_xticks(range(len(stages)), stages)
    latency_axes.set_ylabel("ms")
    latency_axes.set_title("Latency by stage")
    if stages:
        latency_axes.legend()
    return _save(figure, path)
