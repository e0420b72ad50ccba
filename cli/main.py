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
documents_app = typer.Typer(help="List a collection's documents, or show one with its chunks.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(collections_app, name="collections")
app.add_typer(documents_app, name="documents")

from cli.keys import keys_app  # noqa: E402 - after the app it joins

app.add_typer(keys_app, name="keys")


def _is_tty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


# Output that is not a terminal (a pipe, a file, a test) is not wrapped at 80 columns.
console = Console(stderr=True, soft_wrap=not _is_tty(sys.stderr))
out = Console(soft_wrap=not _is_tty(sys.stdout))

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file; RAG_* variables override it")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]


AddressOpt = Annotated[
    Optional[str], typer.Option("--address", help="with --engine ray: auto, ray://HOST:PORT, HOST:PORT or local")
]


def _check_engine(engine: str, address: str | None) -> None:
    """Refuse an unknown ``--engine``, or ``--address`` without ``--engine ray`` (exit 2)."""
    if engine not in ("local", "ray"):
        raise RagErrorExit(f"--engine: expected local or ray, got {engine!r}", 2)
    if address is not None and engine != "ray":
        raise RagErrorExit("--address: only with --engine ray", 2)


def _settings(config: Path | None, **overrides):  # noqa: ANN202
    from rag.config import load_settings, unknown_settings

    for warning in unknown_settings(os.environ):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    s = load_settings(config, environment=os.environ.keys(), **overrides)
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai", "sentence_transformers", "alembic", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return s


def _store(settings):  # noqa: ANN001, ANN202
    from rag.index.store import Store
    from rag.security.crypto import open_cipher

    return Store(settings.sqlalchemy_url, cipher=open_cipher(settings))


# admin -----------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _ingest_progress(enabled: bool):  # noqa: ANN202 - rich Progress, imported here
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[docs]} docs · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        TextColumn("· ETA {task.fields[eta]}"),
        console=console,
        disable=not enabled,
    )


def _missing_collection(store, name: str, *, create_hint: bool) -> RagErrorExit:  # noqa: ANN001
    from indexer.admin import closest_collection

    close = closest_collection(store, name)
    hint = f" (did you mean {close!r}?)" if close else ""
    how = f"; create it with `rag collections create {name}` or pass --create" if create_hint else ""
    return RagErrorExit(f"collection {name!r} does not exist{hint}{how}", 2)


def _print_ingest(collection: str, report) -> None:  # noqa: ANN001 - IngestReport
    parts = [f"{report.documents_added} added", f"{report.documents_updated} updated"]
    if report.documents_rechunked:
        parts.append(f"{report.documents_rechunked} rechunked (chunking settings changed)")
    if report.documents_renamed:
        parts.append(f"{report.documents_renamed} renamed")
    if report.documents_deleted:
        parts.append(f"{report.documents_deleted} deleted (files gone)")
    parts += [f"{report.documents_unchanged} unchanged", f"{report.documents_failed} failed"]
    extra = f", {len(report.skipped)} files skipped" if report.skipped else ""
    out.print(
        f"[bold]{collection}[/]: {', '.join(parts)}{extra}; {report.chunks_added} chunks in {report.seconds:.1f} s",
        highlight=False,
    )
    for r in report.renamed:
        out.print(f"  renamed {r['from']} -> {r['to']}", highlight=False, markup=False)
    for d in report.deleted:
        out.print(f"  deleted {d}", highlight=False, markup=False)
    for f in report.failures:
        out.print(f"  [red]failed[/] {f['path']}: {f['reason']}", highlight=False)
    shown = 10
    for s in report.skipped[:shown]:
        out.print(f"  [yellow]skipped[/] {s['path']}: {s['reason']}", highlight=False)
    if len(report.skipped) > shown:
        out.print(f"  … and {len(report.skipped) - shown} more skipped (all of them with --json)", highlight=False)
    if report.skipped:
        from indexer.loaders.registry import supported_suffixes

        out.print(f"  (supported: {supported_suffixes()})", highlight=False)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or directories (read recursively)")],
    collection: CollectionOpt = "default",
    include: Annotated[Optional[list[str]], typer.Option(help="glob a file must match (repeatable)")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="glob that skips a file (repeatable)")] = None,
    fail_fast: Annotated[bool, typer.Option(help="stop at the first bad file")] = False,
    sync: Annotated[
        bool,
        typer.Option("--sync", help="delete documents under PATHS whose files are gone; a renamed file stays one document"),
    ] = False,
    metadata: Annotated[
        Optional[list[str]],
        typer.Option("--metadata", help="KEY=VALUE added to every document's metadata (repeatable)"),
    ] = None,
    create: Annotated[bool, typer.Option("--create", help="create the collection if it does not exist")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one summary object")] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="local, or ray: parse, chunk and embed on a Ray cluster (extra 'ray')")
    ] = "local",
    address: AddressOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest files (.txt .md .html .pdf .docx .pptx .xlsx .csv, BEIR .jsonl) into a collection. Exit 1 if any failed."""
    from contextlib import nullcontext

    from indexer.pipeline import Ingestor, IngestProgress, parse_metadata
    from rag.embedding import Embedder
    from rag.errors import NotFoundError

    extra = parse_metadata(metadata or [])
    _check_engine(engine, address)
    settings = _settings(config)
    store = _store(settings)
    try:
        store.collection(collection)
    except NotFoundError:
        if not create:
            raise _missing_collection(store, collection, create_hint=True) from None
    show = not as_json and console.is_terminal
    with console.status("loading the embedding model") if show else nullcontext():
        if engine == "ray":
            from indexer.ray_ingest import RayIngestor

            ingestor = RayIngestor(settings, store, Embedder(settings.embedding), collection, address=address)
        else:
            ingestor = Ingestor(settings, store, Embedder(settings.embedding), collection)
    progress = _ingest_progress(show)
    with progress:
        task = progress.add_task("ingest", total=None, docs=0, chunks=0, rate="0.0", eta="—")

        def tick(p: IngestProgress) -> None:
            rate = p.chunks / max(p.seconds, 1e-9)
            eta = "—" if p.eta_s is None else _clock(p.eta_s)
            progress.update(
                task, completed=p.files_done, total=p.files_total, docs=p.documents, chunks=p.chunks,
                rate=f"{rate:.1f}", eta=eta,
            )

        report = ingestor.ingest(
            paths, include=include, exclude=exclude, fail_fast=fail_fast, progress=tick if show else None,
            sync=sync, metadata=extra,
        )
    if as_json:
        out.print_json(json.dumps(report.as_json()))
    else:
        _print_ingest(collection, report)
    raise typer.Exit(1 if report.documents_failed else 0)


@app.command()
def delete(
    collection: CollectionOpt,
    doc_id: Annotated[Optional[str], typer.Option("--id", help="external id of one document, or its file's path")] = None,
    source_prefix: Annotated[
        Optional[str], typer.Option(help="delete every document whose source starts with this (a path is resolved)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Delete one document, or every document under a source prefix. Exit 1 when nothing matched."""
    from indexer.admin import (
        collection_or_hint,
        delete_documents,
        no_match_hint,
        resolve_document_id,
        resolve_source_prefix,
    )

    if (doc_id is None) == (source_prefix is None):
        raise RagErrorExit("give exactly one of --id and --source-prefix", 2)
    settings = _settings(config)
    store = _store(settings)
    info = collection_or_hint(store, collection)
    if doc_id is not None:
        resolved = resolve_document_id(store, info, doc_id)
        n = 0 if resolved is None else delete_documents(settings, store, collection, external_id=resolved)
        what = f"no document {doc_id!r}"
    else:
        prefix = resolve_source_prefix(store, info, source_prefix)
        n = delete_documents(settings, store, collection, source_prefix=prefix)
        what = f"no document whose source starts with {prefix!r}"
    if not n:
        raise RagErrorExit(f"{what} in {collection}; {no_match_hint(store, info, doc_id or source_prefix)}", 1)
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
        redact = info.settings.get("redact")
        shown = f"\tredact: {','.join(redact)}" if redact else ""
        if int(info.settings.get("shards") or 1) > 1:
            shown += f"\t{info.settings['shards']} shards"
        out.print(f"{info.name}\t{s['documents']} documents\t{s['chunks']} chunks{shown}", highlight=False)


@collections_app.command("create")
def collections_create(
    name: str,
    redact: Annotated[
        Optional[str],
        typer.Option(
            "--redact",
            help="personal data replaced by placeholders at ingestion, comma-separated: email,phone,credit_card,iban,ip",
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option("--shards", help="index shards, each with its own FAISS and tantivy index, searched in parallel"),
    ] = 1,
    config: ConfigOpt = None,
) -> None:
    """Create an empty collection. Exit 1 if it exists, 2 for an unknown --redact kind or a bad --shards."""
    from rag.errors import NotFoundError
    from rag.index.shards import SHARDS_SETTING, check_shards
    from rag.privacy import KINDS, parse_kinds

    kinds = parse_kinds(redact, "--redact") if redact is not None else ()
    if redact is not None and not kinds:
        raise RagErrorExit(f"--redact: name at least one kind; valid kinds: {', '.join(KINDS)}", 2)
    check_shards(shards)
    settings = _settings(config)
    store = _store(settings)
    try:
        store.collection(name)
    except NotFoundError:
        store.ensure_collection(name)
        extra: dict[str, object] = {"redact": list(kinds)} if kinds else {}
        if shards > 1:
            extra[SHARDS_SETTING] = shards
        if extra:
            store.update_collection_settings(name, extra)
        notes = [f"redact: {','.join(kinds)}"] * bool(kinds) + [f"{shards} shards"] * (shards > 1)
        out.print(f"created {name}" + (f" ({'; '.join(notes)})" if notes else ""), highlight=False)
        return
    raise RagErrorExit(f"collection {name!r} already exists", 1)


@collections_app.command("drop")
def collections_drop(name: str, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False, config: ConfigOpt = None) -> None:
    """Drop a collection with its documents and indexes."""
    from indexer.admin import collection_or_hint, drop

    settings = _settings(config)
    store = _store(settings)
    collection_or_hint(store, name)
    if not yes and not typer.confirm(f"drop collection {name!r} and all its documents?"):
        raise typer.Exit(1)
    drop(settings, store, name)
    out.print(f"dropped {name}")


@documents_app.command("list")
def documents_list(
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection name")],
    all_versions: Annotated[bool, typer.Option("--all", help="also pending and deleted versions")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """A collection's documents: state, chunks, external id and title, by external id."""
    from indexer.admin import document_json, list_documents

    settings = _settings(config)
    docs = list_documents(_store(settings), collection, all_states=all_versions)
    if as_json:
        out.print_json(json.dumps({"collection": collection, "documents": [document_json(d) for d in docs]}))
        return
    for d in docs:
        # Tab-separated, as written (rich would expand the tabs): `cut -f3` gives the ids.
        sys.stdout.write(f"{d.state}\t{d.chunks} chunks\t{d.external_id}\t{d.title}\n")
    console.print(f"{len(docs)} {'document version(s)' if all_versions else 'document(s)'} in {collection}")


@documents_app.command("show")
def documents_show(
    doc_id: Annotated[str, typer.Argument(metavar="ID", help="external id, or the file's path")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection name")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """One document: source, state, metadata and its chunks."""
    from indexer.admin import document_json, show_document

    settings = _settings(config)
    doc, chunks = show_document(_store(settings), collection, doc_id)
    if as_json:
        out.print_json(json.dumps(document_json(doc, chunks)))
        return
    p = lambda text: out.print(text, highlight=False, markup=False)  # noqa: E731
    p(doc.external_id)
    p(f"  source:   {doc.source}")
    p(f"  title:    {doc.title}")
    p(f"  state:    {doc.state} · {doc.chunks} chunks · sha256 {doc.sha256[:12]}")
    p(f"  updated:  {doc.updated_at.isoformat() if doc.updated_at else '—'}")
    p(f"  metadata: {json.dumps(doc.metadata, ensure_ascii=False, default=str)}")
    for c in chunks:
        preview = " ".join(c.text.split())
        preview = preview[:77] + "…" if len(preview) > 78 else preview
        section = f" [{c.section}]" if c.section else ""
        p(f"  #{c.ordinal}{section} chars {c.char_start}-{c.char_end}, {c.token_count} tokens: {preview}")


@app.command()
def stats(
    collection: Annotated[Optional[str], typer.Option("--collection", "-c")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Documents, chunks, vectors, tombstones and bytes on disk per collection."""
    from indexer.admin import collection_or_hint, collection_stats

    settings = _settings(config)
    store = _store(settings)
    names = [collection_or_hint(store, collection).name] if collection else [c.name for c in store.collections()]
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
    from indexer.admin import collection_or_hint
    from indexer.admin import compact as do_compact

    settings = _settings(config)
    store = _store(settings)
    collection_or_hint(store, collection)
    result = do_compact(settings, store, collection)
    out.print(json.dumps(result))


# users -----------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default from RAG_API__HOST)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default from RAG_API__PORT)")] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (uvicorn), or ray: Ray Serve replicas and shard actors (extra 'ray')")
    ] = "local",
    address: AddressOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the REST API and the web page at / (starts a local llama.cpp generator when no RAG_GENERATOR__URL is set)."""
    from api.server import run, run_on_ray
    from indexer.service import AdminOperations

    _check_engine(engine, address)
    settings = _settings(config)
    if engine == "ray":
        run_on_ray(settings, host=host, port=port, address=address, config_path=config, log=console.print)
        return
    run(settings, host=host, port=port, log=console.print, admin=AdminOperations)


PlannerOpt = Annotated[
    Optional[str], typer.Option(help="planning mode: auto | direct | iterative | decompose (default: RAG_PLANNER__MODE)")
]


@app.command()
def ask(
    question: Annotated[Optional[str], typer.Argument(help="the question (with --chat: the first one, optional)")] = None,
    collection: CollectionOpt = "default",
    top_k: Annotated[int, typer.Option(help="sources to retrieve")] = 5,
    strict: Annotated[bool, typer.Option(help="drop unsupported claims")] = False,
    planner: PlannerOpt = None,
    chat: Annotated[bool, typer.Option("--chat", help="keep a conversation: follow-ups are rewritten to stand alone")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Answer a question with cited sources and a verdict per claim (same code path as /v1/ask).

    With --chat, questions are read from the terminal one per line until an empty line, `exit` or
    end of input; each follow-up is rewritten into a standalone question using the earlier turns.
    """
    from rag.runtime import open_runtime
    from rag.threads import for_queries

    if not chat and not (question or "").strip():
        raise RagErrorExit("give a question, or --chat for a conversation", 2)
    if planner is not None:
        _check_planner(planner)
    settings = for_queries(_settings(config))
    _check_collection(settings, collection)  # before spending seconds on starting the generator
    from api.render import print_answer

    with open_runtime(settings, reconcile=True, log=console.print) as runtime:
        if not chat:
            answer = runtime.pipeline.ask(collection, question or "", top_k, None, strict, planner=planner)
            print_answer(out, answer, as_json=as_json)
            if not as_json:
                _print_plan(answer)
            return
        _chat_loop(runtime.pipeline, collection, top_k, strict, planner, question, as_json)


def _check_planner(planner: str) -> None:
    from rag.planning import PLANNER_MODES

    if planner not in PLANNER_MODES:
        raise RagErrorExit(f"--planner: unknown planner {planner!r}; valid: {' | '.join(PLANNER_MODES)}", 2)


def _chat_loop(pipeline, collection: str, top_k: int, strict: bool, planner: str | None,  # noqa: ANN001
               first: str | None, as_json: bool) -> None:
    """``rag ask --chat``: one conversation in the terminal, each answer checked and cited."""
    from api.render import print_answer
    from rag.types import Turn

    history: list[Turn] = []
    pending = (first or "").strip()
    if not as_json:
        console.print("conversation: one question per line; an empty line or `exit` ends it", highlight=False)
    while True:
        if not pending:
            try:
                pending = input("you> ").strip()
            except EOFError:
                break
        if not pending or pending.lower() in ("exit", "quit"):
            break
        answer = pipeline.ask(collection, pending, top_k, None, strict, history=tuple(history), planner=planner)
        print_answer(out, answer, as_json=as_json)
        if not as_json:
            _print_plan(answer)
        history.append(Turn(pending, answer.answer))
        pending = ""


def _print_plan(answer) -> None:  # noqa: ANN001 - rag.types.Answer
    """One line per plan step when the plan did more than search the question as asked."""
    plan = answer.plan
    if plan is None:
        return
    p = lambda text: out.print(text, highlight=False, markup=False)  # noqa: E731
    if plan.rewrite is not None:
        note = f" (rewrite failed: {plan.rewrite.fallback})" if plan.rewrite.fallback else ""
        p(f"searched as: {plan.rewrite.question}{note}")
    if len(plan.steps) > 1 or plan.fallback:
        p(f"plan: {plan.mode} (asked {plan.requested or plan.mode}), stopped: {plan.stop or '-'}"
          + (f", fell back: {plan.fallback}" if plan.fallback else ""))
        for i, step in enumerate(plan.steps):
            titles = ", ".join(dict.fromkeys(f.chunk.title or f.chunk.external_id for f in step.found[:3]))
            p(f"  {i}. [{step.purpose}] {step.query} -> {titles or 'nothing'}")


@app.command()
def search(
    query: str,
    collection: CollectionOpt = "default",
    top_k: Annotated[int, typer.Option(help="results to return")] = 5,
    rerank: Annotated[bool, typer.Option(help="apply the reranker when one is configured")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Retrieve without a server or a generator (same code path as /v1/search), with per-stage timings."""
    from rag.runtime import open_runtime
    from rag.threads import for_queries

    settings = for_queries(_settings(config))
    _check_collection(settings, collection)
    with open_runtime(settings, generator=False, reranker=rerank, log=console.print) as runtime:
        found = runtime.pipeline.search(collection, query, top_k, rerank=rerank)
    from api.render import print_search

    print_search(out, found, as_json=as_json)


def _check_collection(settings, name: str) -> None:  # noqa: ANN001
    """Stop early, naming the collection, when it does not exist."""
    store = _store(settings)
    try:
        store.collection(name)
    finally:
        store.close()


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
    planner: Annotated[Optional[str], typer.Option(
        help="also plan each query with these modes, comma-separated (e.g. direct,iterative), and score the "
        "evidence each plan collected and handed to the generator")] = None,
    config: ConfigOpt = None,
) -> None:
    """nDCG@10, Recall@k, full recall@k, MRR@10 and MAP for bm25, dense, hybrid and rerank stages."""
    from eval.runner import run_retrieval_eval

    settings = _settings(config)
    ks = tuple(int(x) for x in k.split(",") if x.strip())
    report = run_retrieval_eval(
        settings, dataset, ingest=_ingest_corpus, collection=collection, ks=ks, split=split, out_dir=out_dir,
        hard_negatives=export_hard_negatives, limit=limit, console=console, planners=_planners(planner),
    )
    for stage, m in report["stages"].items():
        full = "  ".join(f"full@{key.split('@')[1]} {v:.4f}" for key, v in report["full_recall"][stage].items())
        out.print(f"{stage:8s} nDCG@10 {m['ndcg@10']:.4f}  R@10 {m['recall@10']:.4f}  R@100 {m['recall@100']:.4f}  MRR@10 {m['mrr@10']:.4f}  {full}")
    for mode, m in report.get("plans", {}).items():
        out.print(
            f"plan {mode:10s} handed full recall {m['handed_full_recall']:.4f} (recall {m['handed_recall']:.4f}, "
            f"{m['handed_docs_mean']:.1f} docs)  hops {m['hops_mean']:.2f}  fallback {m['fallback_rate']:.2f}  "
            + "  ".join(f"{t} {b['handed_full_recall']:.4f}" for t, b in m["by_type"].items() if "handed_full_recall" in b)
        )
    out.print(f"report: {report['out_dir']}")


def _planners(text: str | None) -> list[str]:
    from eval.plans import parse_planners

    try:
        return parse_planners(text or "")
    except ValueError as exc:
        raise RagErrorExit(f"--planner: {exc}", 2) from None


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Option(help="BEIR-layout QA directory whose queries carry answers")],
    limit: Annotated[int, typer.Option(help="first N questions (0 = all)")] = 0,
    collection: Annotated[Optional[str], typer.Option()] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out")] = None,
    style: Annotated[str, typer.Option(help="answer style: short (extractive QA, the default here) or sentences")] = "short",
    top_k: Annotated[Optional[int], typer.Option(help="sources retrieved per question (default: retrieval.top_k)")] = None,
    planner: Annotated[Optional[str], typer.Option(
        help="planning modes to compare side by side, comma-separated (e.g. direct,iterative; default: RAG_PLANNER__MODE)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Exact match, F1 (SQuAD and HotpotQA), faithfulness, citations, abstention, hops; per planner and type."""
    from eval.runner import run_answer_eval

    overrides: dict[str, Any] = {"generator": {"answer_style": style}}
    if top_k is not None:
        overrides["retrieval"] = {"top_k": top_k}
    modes = _planners(planner)
    settings = _settings(config, **overrides)
    report = run_answer_eval(
        settings, dataset, ingest=_ingest_corpus, limit=limit, collection=collection, out_dir=out_dir, console=console,
        planners=modes,
    )
    keys = ("exact_match", "f1", "f1_short", "hotpot_f1", "handed_full_recall", "faithfulness", "citation_precision",
            "citation_recall", "abstention_rate", "hops_mean", "fallback_rate")
    for mode, m in report["planners"].items():
        p50 = m["latency_ms"]["total"]["p50"]
        out.print(f"{mode:10s} " + "  ".join(f"{k} {'—' if m[k] is None else format(m[k], '.3f')}" for k in keys)
                  + f"  total p50 {p50:.0f} ms")
        for kind, b in m["by_type"].items():
            out.print(f"  {kind:12s} " + "  ".join(
                f"{k} {'—' if b[k] is None else format(b[k], '.3f')}" for k in ("f1", "hotpot_f1", "handed_full_recall")
            ) + f"  ({b['questions']} questions)")
    out.print(f"report: {report['out_dir']}")


@eval_app.command("verifier")
def eval_verifier(
    dataset: Annotated[Path, typer.Option(help="RAGTruth- or SciFact-layout JSONL file, or the folder holding one")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output directory (default: out/eval/<dataset>-verifier)")] = None,
    limit: Annotated[int, typer.Option(help="score only the first N items (0 = all)")] = 0,
    split: Annotated[Optional[str], typer.Option(help="SciFact only: train, dev or test part of the split by claim (default: all)")] = None,
    compare: Annotated[str, typer.Option(help="scorers run beside the configured one, comma-separated (hybrid, baseline, model), or none")] = "baseline",
    config: ConfigOpt = None,
) -> None:
    """Precision, recall, F1 and AUROC of unsupported-claim detection on human labels, with latency."""
    from eval.verifier import run_verifier_eval

    settings = _settings(config)
    baselines = [] if compare.strip().lower() == "none" else [n.strip() for n in compare.split(",") if n.strip()]
    report = run_verifier_eval(
        settings, dataset, out_dir=out_dir, limit=limit, split=split, compare=baselines, console=console
    )
    for name, r in report["scorers"].items():
        if report["layout"] == "ragtruth":
            resp, sent = r["response"], r["sentence"]
            out.print(
                f"{name:10s} response P {resp['precision']:.3f} R {resp['recall']:.3f} F1 {resp['f1']:.3f} "
                f"AUROC {_or_dash(resp['auroc'])}  sentence F1 {sent['f1']:.3f} AUROC {_or_dash(sent['auroc'])}  "
                f"p50 {_or_dash(r['latency_ms']['p50'], '.0f')} ms"
            )
        else:
            sup, rest = r["supported"], r["not_supported"]
            out.print(
                f"{name:10s} supported F1 {sup['f1']:.3f}  not-supported F1 {rest['f1']:.3f}  "
                f"AUROC {_or_dash(r['auroc'])}  p50 {_or_dash(r['latency_ms']['p50'], '.0f')} ms"
            )
    out.print(f"report: {report['out_dir']}")


def _or_dash(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


@eval_app.command("bm25")
def eval_bm25(
    datasets: Annotated[Optional[list[Path]], typer.Argument(help="BEIR directories (default: the five shared sets)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="output directory")] = Path("out/eval/bm25"),
    config: ConfigOpt = None,
) -> None:
    """BM25 nDCG@10 on whole documents and on chunks, beside bm25s; no embedding needed."""
    from eval.bm25_table import DEFAULT_SHARED_DIR, SHARED_DATASETS, quiet_logs, run_bm25_table

    settings = _settings(config)
    quiet_logs()
    report = run_bm25_table(settings, datasets or [DEFAULT_SHARED_DIR / n for n in SHARED_DATASETS], out_dir)
    out.print(report["table"])
    out.print(f"report: {out_dir}")


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
    layers: Annotated[int, typer.Option(help="keep the encoder's first N transformer layers (0 = all); the cost of a rerank is linear in them")] = 0,
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
        base=base, epochs=epochs, max_pairs=max_pairs, max_length=max_length, layers=layers, batch_size=batch_size,
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


_SHARED = Path("../shared/datasets")


@app.command("train-verifier")
def train_verifier(
    scifact: Annotated[Optional[Path], typer.Option(help="SciFact claims JSONL (train/dev/test split by claim id; only train trains)")] = _SHARED / "verify/scifact_claims/train.jsonl",
    corpus: Annotated[Optional[list[Path]], typer.Option(help="corpus for synthetic pairs: a BEIR corpus.jsonl or a directory of text files (repeatable; default: data/, hotpot_shared, xquad_en, scifact)")] = None,
    name: Annotated[str, typer.Option(help="model name under <data dir>/verifiers/; 'default' is the one the service uses")] = "default",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="model directory (overrides --name)")] = None,
    max_documents: Annotated[int, typer.Option(help="documents drawn per corpus (0 = all)")] = 500,
    sentences: Annotated[int, typer.Option(help="sentences drawn per document, each giving one supported and two twisted claims")] = 1,
    epochs: Annotated[int, typer.Option(help="passes over the training pairs")] = 1,
    max_pairs: Annotated[int, typer.Option(help="cap on training pairs, drawn at random (0 = all)")] = 0,
    max_length: Annotated[int, typer.Option(help="tokens per (claim, window) pair")] = 128,
    batch_size: Annotated[int, typer.Option(help="pairs per step")] = 32,
    learning_rate: Annotated[float, typer.Option(help="peak learning rate of the encoder")] = 5e-5,
    windows: Annotated[int, typer.Option(help="windows cross-encoded per claim, over all its sources")] = 3,
    base: Annotated[str, typer.Option(help="encoder to start from (HF id or path)")] = "sentence-transformers/all-MiniLM-L6-v2",
    layers: Annotated[int, typer.Option(help="keep the encoder's first N layers (0 = all); cost is linear in them")] = 4,
    feedback: Annotated[bool, typer.Option(help="add negatives from /v1/feedback judgments of non-relevance (all collections)")] = False,
    onnx: Annotated[bool, typer.Option(help="export ONNX fp32/int8; int8 is then calibrated and served by default")] = True,
    seed: Annotated[int, typer.Option(help="seeds the pairs and training")] = 42,
    config: ConfigOpt = None,
) -> None:
    """Fine-tune the verifier's support model (claim, passage) -> probability, calibrated, with its threshold."""
    from eval.training.verifier import VerifierTrainConfig, default_output, run_train_verifier

    settings = _settings(config)
    corpora = corpus or [p for p in (Path("data"), _SHARED / "hotpot_shared", _SHARED / "xquad_en", _SHARED / "scifact") if p.exists()]
    extra = []
    if feedback:
        from eval.training.claims import feedback_pairs

        store = _store(settings)
        for info in store.collections():
            judged = store.feedback(info.id)
            extra.extend(feedback_pairs(judged, store.hydrate(info.id, {j.chunk_id for j in judged})))
        console.print(f"{len(extra)} feedback pairs")
    train = VerifierTrainConfig(
        base=base, layers=layers, epochs=epochs, max_pairs=max_pairs, max_length=max_length, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, device=settings.reranker.device,
    )
    target = out_dir or default_output(settings.data_dir, name)
    report = run_train_verifier(
        target, scifact=scifact if scifact and scifact.exists() else None, corpora=corpora, config=train,
        max_documents=max_documents, sentences_per_document=sentences, windows_per_claim=windows, extra=extra,
        onnx=onnx, progress=lambda line: console.print(line, highlight=False),
    )
    t, dev, test = report["training"], report["dev"]["at_threshold"], report.get("scifact_test", {})
    out.print(
        f"{sum(t['pairs'].values())} pairs in {t['seconds']:.0f} s ({t['pairs_per_second']:.1f} pairs/s); "
        f"dev AP {t['dev_before'].get('average_precision', 0):.3f} -> {t['dev_after'].get('average_precision', 0):.3f}"
    )
    out.print(
        f"threshold {report['threshold']:.2f}: dev macro F1 {(dev['supported_f1'] + dev['unsupported_f1']) / 2:.3f}; "
        f"SciFact test supported F1 {test.get('supported_f1', 0):.3f} (n={test.get('n', 0)})"
    )
    for backend, lat in report["latency_ms_5_claims_3_passages"].items():
        out.print(f"{backend:10s} 5 claims x 3 passages: p50 {lat.get('p50', 0):.0f} ms, p90 {lat.get('p90', 0):.0f} ms")
    out.print(f"model: {report['path']}")


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
