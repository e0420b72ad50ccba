"""The ``rag`` command: one CLI for admins, users and evaluators.

This package is the composition root: it may import ``rag``, ``indexer``, ``api`` and ``eval``;
none of them imports it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from rag.errors import RagError

app = typer.Typer(
    name="rag",
    help="Retrieval-augmented generation service: ingest, serve, ask, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Evaluate retrieval and answers on BEIR-layout datasets.", no_args_is_help=True)
collections_app = typer.Typer(help="List, create and drop collections.", invoke_without_command=True)
app.add_typer(eval_app, name="eval")
app.add_typer(collections_app, name="collections")

console = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file; RAG_* variables override it")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]


def _settings(config: Path | None, **overrides):  # noqa: ANN202
    from rag.config import load_settings

    s = load_settings(config, **overrides)
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai", "sentence_transformers", "alembic", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return s


def _store(settings):  # noqa: ANN001, ANN202
    from rag.index.store import Store

    return Store(settings.sqlalchemy_url)


# admin -----------------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or directories (read recursively)")],
    collection: CollectionOpt = "default",
    include: Annotated[Optional[list[str]], typer.Option(help="glob a file must match (repeatable)")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="glob that skips a file (repeatable)")] = None,
    fail_fast: Annotated[bool, typer.Option(help="stop at the first bad file")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one summary object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Ingest documents (.txt .md .html .pdf, BEIR .jsonl) into a collection. Exit 1 if any file failed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from indexer.pipeline import Ingestor
    from rag.embedding import Embedder

    settings = _settings(config)
    store = _store(settings)
    ingestor = Ingestor(settings, store, Embedder(settings.embedding), collection)
    progress = Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        TextColumn("{task.fields[docs]} docs · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json or not console.is_terminal,
    )
    with progress:
        task = progress.add_task("ingest", total=None, docs=0, chunks=0, rate="0.0")
        state = {"docs": 0, "chunks": 0}
        import time

        t0 = time.perf_counter()

        def tick(docs: int, chunks: int) -> None:
            state["docs"] += docs
            state["chunks"] += chunks
            rate = state["chunks"] / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=docs, docs=state["docs"], chunks=state["chunks"], rate=f"{rate:.1f}")

        report = ingestor.ingest(paths, include=include, exclude=exclude, fail_fast=fail_fast, progress=tick)
    summary = report.as_json()
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(
            f"[bold]{collection}[/]: {report.documents_added} added, {report.documents_updated} updated, "
            f"{report.documents_unchanged} unchanged, {report.documents_failed} failed; "
            f"{report.chunks_added} chunks in {report.seconds:.1f} s"
        )
        for f in report.failures:
            out.print(f"  [red]skipped[/] {f['path']}: {f['reason']}", highlight=False)
    raise typer.Exit(1 if report.documents_failed else 0)


@app.command()
def delete(
    collection: CollectionOpt,
    doc_id: Annotated[Optional[str], typer.Option("--id", help="external id of one document")] = None,
    source_prefix: Annotated[Optional[str], typer.Option(help="delete every document whose source starts with this")] = None,
    config: ConfigOpt = None,
) -> None:
    """Delete one document, or every document under a source prefix."""
    from indexer.admin import delete_documents

    if (doc_id is None) == (source_prefix is None):
        raise RagErrorExit("give exactly one of --id and --source-prefix", 2)
    settings = _settings(config)
    store = _store(settings)
    n = delete_documents(settings, store, collection, external_id=doc_id, source_prefix=source_prefix)
    out.print(f"deleted {n} document(s) from {collection}")


@collections_app.callback()
def collections_main(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """List collections (default), or create / drop one."""
    if ctx.invoked_subcommand is None:
        collections_list(config)


@collections_app.command("list")
def collections_list(config: ConfigOpt = None) -> None:
    """List collections."""
    settings = _settings(config)
    store = _store(settings)
    for info in store.collections():
        s = store.stats(info.id)
        out.print(f"{info.name}\t{s['documents']} documents\t{s['chunks']} chunks")


@collections_app.command("create")
def collections_create(name: str, config: ConfigOpt = None) -> None:
    """Create an empty collection."""
    settings = _settings(config)
    _store(settings).ensure_collection(name)
    out.print(f"created {name}")


@collections_app.command("drop")
def collections_drop(name: str, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False, config: ConfigOpt = None) -> None:
    """Drop a collection with its documents and indexes."""
    from indexer.admin import drop

    settings = _settings(config)
    if not yes and not typer.confirm(f"drop collection {name!r} and all its documents?"):
        raise typer.Exit(1)
    drop(settings, _store(settings), name)
    out.print(f"dropped {name}")


@app.command()
def stats(
    collection: Annotated[Optional[str], typer.Option("--collection", "-c")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Documents, chunks, vectors, tombstones and bytes on disk per collection."""
    from indexer.admin import collection_stats

    settings = _settings(config)
    store = _store(settings)
    names = [collection] if collection else [c.name for c in store.collections()]
    data = {"collections": {n: collection_stats(settings, store, n) for n in names}}
    if as_json:
        out.print_json(json.dumps(data))
        return
    for name, s in data["collections"].items():
        out.print(
            f"[bold]{name}[/]: {s['documents']} documents, {s['chunks']} chunks, {s['vectors']} vectors "
            f"({s['index_type']}), {s['tombstones']} tombstones, {s['lexical_docs']} BM25 entries, {s['bytes'] / 1e6:.1f} MB"
        )


@app.command()
def compact(collection: CollectionOpt, config: ConfigOpt = None) -> None:
    """Remove deleted documents' tombstones from FAISS, tantivy and the database."""
    from indexer.admin import compact as do_compact

    settings = _settings(config)
    result = do_compact(settings, _store(settings), collection)
    out.print(json.dumps(result))


# users -----------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default from RAG_API__HOST)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default from RAG_API__PORT)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the REST API (starts a local llama.cpp generator when no RAG_GENERATOR__URL is set)."""
    from api.server import run

    settings = _settings(config)
    run(settings, host=host, port=port, log=console.print)


@app.command()
def ask(
    question: str,
    collection: CollectionOpt = "default",
    top_k: Annotated[int, typer.Option(help="sources to retrieve")] = 5,
    strict: Annotated[bool, typer.Option(help="drop unsupported claims")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Answer a question with cited sources and a verdict per claim (same code path as /v1/ask)."""
    from rag.runtime import open_runtime

    settings = _settings(config)
    with open_runtime(settings, reconcile=True, log=console.print) as runtime:
        answer = runtime.pipeline.ask(collection, question, top_k, None, strict)
    from api.render import print_answer

    print_answer(out, answer, as_json=as_json)


# evaluators ------------------------------------------------------------------------------------


def _ingest_corpus(settings, corpus: Path, collection: str) -> dict:  # noqa: ANN001
    """Run the real ingestion pipeline on an evaluation corpus; ``eval`` receives this, it never imports ``indexer``."""
    from indexer.pipeline import Ingestor
    from rag.embedding import Embedder

    store = _store(settings)
    try:
        return Ingestor(settings, store, Embedder(settings.embedding), collection).ingest([corpus]).as_json()
    finally:
        store.close()


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option(help="BEIR-layout directory")],
    collection: Annotated[Optional[str], typer.Option(help="collection (default: eval-<dataset>)")] = None,
    k: Annotated[str, typer.Option(help="cutoffs for recall@k")] = "1,3,5,10,100",
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output directory")] = None,
    export_hard_negatives: Annotated[Optional[Path], typer.Option(help="write mined hard negatives (JSONL)")] = None,
    limit: Annotated[int, typer.Option(help="evaluate only the first N queries (0 = all)")] = 0,
    config: ConfigOpt = None,
) -> None:
    """nDCG@10, Recall@k, MRR@10 and MAP for bm25, dense, hybrid and rerank stages."""
    from eval.runner import run_retrieval_eval

    settings = _settings(config)
    ks = tuple(int(x) for x in k.split(",") if x.strip())
    report = run_retrieval_eval(
        settings, dataset, ingest=_ingest_corpus, collection=collection, ks=ks, split=split, out_dir=out_dir,
        hard_negatives=export_hard_negatives, limit=limit, console=console,
    )
    for stage, m in report["stages"].items():
        out.print(f"{stage:8s} nDCG@10 {m['ndcg@10']:.4f}  R@10 {m['recall@10']:.4f}  R@100 {m['recall@100']:.4f}  MRR@10 {m['mrr@10']:.4f}")
    out.print(f"report: {report['out_dir']}")


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Option(help="BEIR-layout QA directory whose queries carry answers")],
    limit: Annotated[int, typer.Option(help="first N questions (0 = all)")] = 0,
    collection: Annotated[Optional[str], typer.Option()] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out")] = None,
    style: Annotated[str, typer.Option(help="answer style: short (extractive QA, the default here) or sentences")] = "short",
    top_k: Annotated[Optional[int], typer.Option(help="sources retrieved per question (default: retrieval.top_k)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Exact match, F1, faithfulness, citation precision/recall and abstention rate."""
    from eval.runner import run_answer_eval

    overrides: dict[str, Any] = {"generator": {"answer_style": style}}
    if top_k is not None:
        overrides["retrieval"] = {"top_k": top_k}
    settings = _settings(config, **overrides)
    report = run_answer_eval(
        settings, dataset, ingest=_ingest_corpus, limit=limit, collection=collection, out_dir=out_dir, console=console
    )
    keys = ("exact_match", "f1", "f1_short", "faithfulness", "citation_precision", "citation_recall", "abstention_rate")
    out.print("  ".join(f"{k} {'—' if report[k] is None else format(report[k], '.3f')}" for k in keys))
    out.print(f"report: {report['out_dir']}")


@app.command()
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="output directory")] = Path("docs/benchmarks"),
    quick: Annotated[bool, typer.Option(help="10k chunks and the peers only (< 10 min)")] = False,
    config: ConfigOpt = None,
) -> None:
    """Speed and memory benchmarks with peers side by side; prints ratios."""
    from eval.bench import run_bench

    settings = _settings(config)
    run_bench(settings, out_dir, quick=quick, console=console)


@app.command("train-reranker")
def train_reranker(
    dataset: Annotated[Path, typer.Option(help="BEIR-layout directory with qrels/<split>.tsv")],
    split: Annotated[str, typer.Option(help="training qrels split")] = "train",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="model directory (default: <data dir>/rerankers/<dataset>-<time>)")] = None,
    epochs: Annotated[int, typer.Option(help="passes over the training pairs")] = 2,
    max_pairs: Annotated[int, typer.Option(help="cap on training pairs, whole queries at a time (0 = all)")] = 0,
    base: Annotated[str, typer.Option(help="encoder to start from (HF id or path); a new scoring head is added")] = "sentence-transformers/all-MiniLM-L6-v2",
    collection: Annotated[Optional[str], typer.Option(help="collection (default: eval-<dataset>)")] = None,
    hard_negatives: Annotated[Optional[list[Path]], typer.Option(help="JSONL from `rag eval retrieval --export-hard-negatives` (repeatable)")] = None,
    feedback: Annotated[bool, typer.Option(help="add the collection's /v1/feedback judgments")] = True,
    negatives: Annotated[int, typer.Option(help="hard negatives per query")] = 4,
    random_negatives: Annotated[int, typer.Option(help="random negatives per query")] = 2,
    max_length: Annotated[int, typer.Option(help="tokens per (query, passage) pair; serve with the same RAG_RERANKER__MAX_LENGTH")] = 128,
    batch_size: Annotated[int, typer.Option(help="pairs per step")] = 16,
    learning_rate: Annotated[float, typer.Option(help="peak learning rate of the encoder")] = 3e-5,
    head: Annotated[str, typer.Option(help="new scoring head: mean (linear over mean-pooled tokens) or cls")] = "mean",
    head_learning_rate: Annotated[float, typer.Option(help="peak learning rate of the new head (random at the start)")] = 2e-3,
    seed: Annotated[int, typer.Option(help="seeds the dev split, negatives and training")] = 42,
    onnx: Annotated[bool, typer.Option(help="also export ONNX fp32/int8 and compare quality and CPU latency")] = False,
    config: ConfigOpt = None,
) -> None:
    """Fine-tune a cross-encoder on a training split's qrels with hard negatives mined by our retriever."""
    from eval.train_reranker import run_train_reranker
    from eval.training import MiningConfig, TrainConfig

    settings = _settings(config)
    train = TrainConfig(
        base=base, epochs=epochs, max_pairs=max_pairs, max_length=max_length, batch_size=batch_size,
        learning_rate=learning_rate, head=head, head_learning_rate=head_learning_rate, seed=seed,
        device=settings.reranker.device,
    )
    mining = MiningConfig(hard_negatives=negatives, random_negatives=random_negatives)
    report = run_train_reranker(
        settings, dataset, split=split, ingest=_ingest_corpus, collection=collection, out=out_dir, train=train,
        mining=mining, hard_negatives=hard_negatives or (), feedback=feedback, onnx=onnx, console=console,
    )
    before, after = report["dev_before"], report["dev_after"]
    lat = report["rerank_latency_ms"]
    out.print(
        f"{sum(report['pairs'].values())} pairs {report['pairs']} in {report['seconds']:.0f} s "
        f"({report['pairs_per_second']:.1f} pairs/s); dev nDCG@10 {before.get('ndcg@10', 0):.4f} -> {after.get('ndcg@10', 0):.4f}"
    )
    if lat:
        out.print(f"rerank top {lat['top_n']}: p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms")
    for variant, m in report.get("onnx", {}).items():
        out.print(f"{variant:10s} dev nDCG@10 {m['dev_ndcg@10']:.4f}  top-{lat.get('top_n', 20)} p50 {m.get('p50', 0):.0f} ms")
    out.print(f"model: {report['path']}  (use it with RAG_RERANKER={report['path']})")


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="corpus to ingest")] = Path("data"),
    question: Annotated[str, typer.Option()] = "How does the service keep ingestion safe when the process is killed?",
    config: ConfigOpt = None,
) -> None:
    """The README's main job: ingest data/, start the service, ask over REST, print the cited answer."""
    from api.demo import run_demo

    settings = _settings(config)
    raise typer.Exit(run_demo(settings, data, question, console=console, out=out))


class RagErrorExit(Exception):
    """A usage error with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def main() -> None:
    """Entry point: run the app and turn expected errors into one clear line, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()  # standalone mode: click handles usage errors and exit codes
    except RagErrorExit as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.code)
    except RagError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2 if isinstance(exc, ValueError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
