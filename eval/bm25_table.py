"""BM25 on whole documents and on chunks, beside bm25s, over BEIR collections.

For each collection this measures nDCG@10 (and the other :func:`~eval.metrics.evaluate_run`
metrics) of four systems on the same queries:

``ours_docs``
    :class:`~rag.index.lexical.LexicalIndex` with the given :class:`~rag.config.LexicalConfig`,
    one entry per document whose body is ``embedding_text(title, text)``.
``ours_chunks``
    The same index over the chunks ingestion makes (:class:`~rag.chunking.Chunker` with the
    settings' chunking and the embedding model's tokenizer), each chunk indexed with the body
    ingestion gives it; the top ``max(100, retrieval.candidates)`` chunks are max-pooled into
    documents (:func:`~eval.metrics.max_pool`). This is the service's BM25 stage, as
    ``rag eval retrieval`` scores it. Documents without text are skipped, as ingestion skips them.
``bm25s``
    bm25s (Lucene BM25, k1 = 0.9, b = 0.4) on whole documents, with the stopwords our analyser
    drops and the Snowball stemmer it uses (PyStemmer), bm25s' own tokenizer otherwise.
``bm25s_tantivy_params``
    The same with tantivy's fixed k1 = 1.2, b = 0.75, so that parameters and implementation can
    be told apart in the gap between ``ours_docs`` and ``bm25s``.

Document and query lengths are counted in terms of our analyser (after stopwords and stemming),
the lengths BM25 sees. No embedding is computed: only the embedding model's tokenizer is used.

Run ``python -m eval.bm25_table --out DIR [DATASET_DIR ...]`` (default: the five shared sets).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.datasets import BeirDataset, load_beir
from eval.metrics import evaluate_run, max_pool, ndcg_per_query
from eval.runner import DOC_DEPTH
from rag.chunking import Chunker, embedding_text
from rag.config import LexicalConfig, Settings
from rag.embedding import Embedder
from rag.errors import FileError, InputError
from rag.index.lexical import LexicalIndex
from rag.types import Document

log = logging.getLogger(__name__)

RunDict = dict[str, dict[str, float]]
"""Query id -> doc id -> score."""

SYSTEMS: dict[str, str] = {
    "ours_docs": "ours, whole docs",
    "ours_chunks": "ours, chunks",
    "bm25s": "bm25s (k1 0.9, b 0.4)",
    "bm25s_tantivy_params": "bm25s (k1 1.2, b 0.75)",
}
"""System key -> column label, in table order."""

BM25S_PARAMS: dict[str, tuple[float, float]] = {"bm25s": (0.9, 0.4), "bm25s_tantivy_params": (1.2, 0.75)}
"""bm25s system -> (k1, b). tantivy's are fixed at k1 = 1.2, b = 0.75."""

SHARED_DATASETS: tuple[str, ...] = ("scifact", "cranfield", "adi", "hotpot_shared", "xquad_en")
DEFAULT_SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DEFAULT_OUT = Path("out/eval/bm25")


@dataclass(frozen=True)
class CorpusDoc:
    """One corpus line: id, title and text."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class DatasetResult:
    """The four systems on one collection.

    Attributes:
        dataset: directory name.
        documents: corpus documents (all lines, empty ones included).
        queries: queries with a relevant document.
        chunks: chunks ingestion makes of the corpus.
        docs_without_text: documents ingestion skips (no text; only ``ours_chunks`` lacks them).
        avg_doc_terms: mean analysed terms of ``title + "\\n" + text`` per document.
        avg_query_terms: mean analysed terms per query.
        metrics: system key -> metric name -> value (see :func:`~eval.metrics.evaluate_run`).
        by_length: ``one_chunk`` (every relevant document fits one chunk) and ``several_chunks``
            (some relevant document is split) -> ``queries`` and mean nDCG@10 of ``ours_docs``
            and ``ours_chunks`` over those queries.
        seconds: stage -> wall seconds (``chunk``, ``ours_docs``, ``ours_chunks``, ``bm25s`` ...).
    """

    dataset: str
    documents: int
    queries: int
    chunks: int
    docs_without_text: int
    avg_doc_terms: float
    avg_query_terms: float
    metrics: dict[str, dict[str, float]]
    by_length: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def ndcg(self, system: str) -> float:
        """nDCG@10 of one system."""
        return self.metrics[system]["ndcg@10"]


def read_corpus(path: Path) -> list[CorpusDoc]:
    """Read a BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text`` per line).

    Args:
        path: the file.

    Returns:
        The documents in file order; a missing title or text is "".

    Raises:
        FileError: a line is not a JSON object with an ``_id``.
    """
    docs = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                docs.append(CorpusDoc(str(record["_id"]), record.get("title") or "", record.get("text") or ""))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise FileError(str(path), f"line {number}: bad corpus record ({exc})") from exc
    return docs


def analyser_stopwords(index: LexicalIndex) -> list[str]:
    """The English stopwords an index's analyser drops, found by analysing candidate words.

    tantivy does not expose its stopword list, so each word of bm25s' two English lists (the
    33-word Lucene list and the 179-word NLTK one) is analysed alone: a word that leaves no
    term is a stopword. On the five shared collections no other word of their vocabulary was
    dropped (see docs/decisions.md).

    Args:
        index: an open index (its analyser is used, nothing is written).

    Returns:
        The dropped candidates, sorted; empty when stopwords are off.
    """
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_EN_PLUS

    return sorted(w for w in {*STOPWORDS_EN, *STOPWORDS_EN_PLUS} if not index.analyze(w))


@contextmanager
def _scratch_index(entries: Sequence[tuple[str, str]], config: LexicalConfig) -> Iterator[LexicalIndex]:
    """A committed scratch index of ``(owner doc id, body)`` entries, entry i under id i; removed on exit."""
    with tempfile.TemporaryDirectory(prefix="bm25-table-") as scratch:
        index = LexicalIndex.open(Path(scratch), config)
        try:
            index.add((i, body) for i, (_, body) in enumerate(entries))
            index.commit()
            yield index
        finally:
            index.close()


def _search_run(
    index: LexicalIndex, queries: Mapping[str, str], k: int, entries: Sequence[tuple[str, str]]
) -> RunDict:
    """Query id -> doc id -> score: the top ``k`` entries, max-pooled into their documents."""
    return {
        qid: max_pool((entries[h.chunk_id][0], h.score) for h in index.search(text, k=k))
        for qid, text in queries.items()
    }


def _bm25s_runs(
    docs: Sequence[CorpusDoc], queries: Mapping[str, str], stopwords: list[str], stemmer_name: str, k: int
) -> dict[str, RunDict]:
    """bm25s system -> run, on whole documents."""
    import bm25s

    stemmer = None
    if stemmer_name:
        import Stemmer

        stemmer = Stemmer.Stemmer(stemmer_name)
    texts = [embedding_text(d.title, d.text) for d in docs]
    corpus_tokens = bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer, show_progress=False)
    query_ids = list(queries)
    query_tokens = bm25s.tokenize(
        [queries[q] for q in query_ids], stopwords=stopwords, stemmer=stemmer, return_ids=False, show_progress=False
    )
    runs = {}
    for system, (k1, b) in BM25S_PARAMS.items():
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(corpus_tokens, show_progress=False)
        run: RunDict = {}
        for qid, tokens in zip(query_ids, query_tokens, strict=True):
            # A repeated query term counts once per occurrence here too (bm25s sums over the ids).
            ids = retriever.get_tokens_ids(tokens)
            if not ids:
                run[qid] = {}
                continue
            scores = retriever.get_scores_from_ids(ids)
            top = np.argsort(-scores, kind="stable")[:k]
            run[qid] = {docs[i].doc_id: float(scores[i]) for i in top if scores[i] > 0}
        runs[system] = run
    return runs


def evaluate_dataset(
    dataset: BeirDataset, settings: Settings, chunker: Chunker, *, docs: Sequence[CorpusDoc] | None = None
) -> tuple[DatasetResult, list[str]]:
    """Score the four systems on one collection.

    Args:
        dataset: the loaded collection (queries and qrels).
        settings: lexical, chunking and retrieval settings (``retrieval.candidates`` sets the chunk depth).
        chunker: the ingestion chunker.
        docs: the corpus, when already read (default: read ``dataset.corpus_path``).

    Returns:
        The result and the stopword list given to bm25s.

    Raises:
        InputError: the collection has no query with a relevant document.
    """
    if not dataset.queries:
        raise InputError("dataset", f"{dataset.name} has no query with a relevant document")
    docs = list(docs) if docs is not None else read_corpus(dataset.corpus_path)
    seconds: dict[str, float] = {}
    depth = max(DOC_DEPTH, settings.retrieval.candidates)

    started = time.perf_counter()
    chunk_entries: list[tuple[str, str]] = []
    chunks_of: dict[str, int] = {}
    for d in docs:
        drafts = chunker.chunk(Document(d.doc_id, d.doc_id, d.title, d.text))
        chunks_of[d.doc_id] = len(drafts)
        chunk_entries += [(d.doc_id, embedding_text(d.title, c.text)) for c in drafts]
    seconds["chunk"] = time.perf_counter() - started

    runs: dict[str, RunDict] = {}
    started = time.perf_counter()
    whole = [(d.doc_id, embedding_text(d.title, d.text)) for d in docs]
    with _scratch_index(whole, settings.lexical) as index:
        runs["ours_docs"] = _search_run(index, dataset.queries, DOC_DEPTH, whole)
        seconds["ours_docs"] = time.perf_counter() - started
        doc_terms = [len(index.analyze(body)) for _, body in whole]
        query_terms = [len(index.analyze(q)) for q in dataset.queries.values()]
        stopwords = analyser_stopwords(index) if settings.lexical.stopwords else []

    started = time.perf_counter()
    with _scratch_index(chunk_entries, settings.lexical) as index:
        pooled = _search_run(index, dataset.queries, depth, chunk_entries)
    runs["ours_chunks"] = {qid: dict(list(run.items())[:DOC_DEPTH]) for qid, run in pooled.items()}
    seconds["ours_chunks"] = time.perf_counter() - started

    started = time.perf_counter()
    runs.update(_bm25s_runs(docs, dataset.queries, stopwords, settings.lexical.stemmer, DOC_DEPTH))
    seconds["bm25s"] = time.perf_counter() - started

    result = DatasetResult(
        dataset=dataset.name,
        documents=len(docs),
        queries=len(dataset.queries),
        chunks=len(chunk_entries),
        docs_without_text=sum(1 for n in chunks_of.values() if n == 0),
        avg_doc_terms=float(np.mean(doc_terms)) if doc_terms else 0.0,
        avg_query_terms=float(np.mean(query_terms)),
        metrics={system: evaluate_run(dataset.qrels, runs[system]) for system in SYSTEMS},
        by_length=_by_length(dataset.qrels, runs, chunks_of),
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
    return result, stopwords


def _by_length(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, RunDict], chunks_of: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """nDCG@10 of our two systems on queries whose relevant documents fit one chunk, and on the others."""
    per_query = {s: ndcg_per_query(qrels, runs[s]) for s in ("ours_docs", "ours_chunks")}
    groups: dict[str, list[str]] = {"one_chunk": [], "several_chunks": []}
    for qid, rels in qrels.items():
        relevant = [doc for doc, grade in rels.items() if grade > 0]
        if relevant:
            split = any(chunks_of.get(doc, 0) > 1 for doc in relevant)
            groups["several_chunks" if split else "one_chunk"].append(qid)
    return {
        name: {"queries": len(qids), **{s: float(np.mean([per_query[s][q] for q in qids])) if qids else 0.0
                                         for s in per_query}}
        for name, qids in groups.items()
    }


def markdown_table(results: Sequence[DatasetResult]) -> str:
    """The nDCG@10 table: one row per collection, lengths first, then the four systems.

    ``chunks − docs`` is ``ours_chunks − ours_docs``: what chunking costs (negative) or gains.
    """
    header = [
        "dataset", "docs", "queries", "terms/doc", "terms/query", "chunks/doc",
        *SYSTEMS.values(), "chunks − docs",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [
            r.dataset, f"{r.documents:,}", f"{r.queries:,}", f"{r.avg_doc_terms:.0f}", f"{r.avg_query_terms:.1f}",
            f"{r.chunks / max(r.documents - r.docs_without_text, 1):.2f}",
            *(f"{r.ndcg(s):.3f}" for s in SYSTEMS),
            f"{round(r.ndcg('ours_chunks') - r.ndcg('ours_docs'), 3) + 0.0:+.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _iter_results(
    directories: Sequence[Path], settings: Settings, chunker: Chunker
) -> Iterator[tuple[DatasetResult, list[str]]]:
    for directory in directories:
        started = time.perf_counter()
        result, stopwords = evaluate_dataset(load_beir(directory), settings, chunker)
        log.info("%s: nDCG@10 %s in %.1f s", result.dataset,
                 {s: round(result.ndcg(s), 3) for s in SYSTEMS}, time.perf_counter() - started)
        yield result, stopwords


def run_bm25_table(
    settings: Settings,
    directories: Sequence[Path],
    out_dir: Path = DEFAULT_OUT,
    *,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Score the four systems on each collection and write ``report.json`` and ``report.md``.

    Args:
        settings: lexical, chunking, retrieval and embedding settings.
        directories: BEIR-layout collection directories.
        out_dir: output directory, created if needed.
        embedder: the embedder whose tokenizer chunks (default: one from ``settings.embedding``;
            only its tokenizer is loaded and used).

    Returns:
        The report written to ``report.json``: ``datasets`` (one :class:`DatasetResult` each, as
        a dict), ``table`` (the Markdown table), ``config`` and ``seconds`` (the whole run).

    Raises:
        InputError: no directory was given, or a collection has no query with a relevant document.
        FileError: a collection's files are missing or malformed.
    """
    if not directories:
        raise InputError("directories", "give at least one BEIR directory")
    started = time.perf_counter()
    embedder = (embedder or Embedder(settings.embedding)).warm_up()
    chunker = Chunker(settings.chunking, embedder.tokenizer, embedder.max_seq_length)
    pairs = list(_iter_results([Path(d) for d in directories], settings, chunker))
    results = [r for r, _ in pairs]
    table = markdown_table(results)
    report = {
        "datasets": [asdict(r) for r in results],
        "table": table,
        "systems": SYSTEMS,
        "config": {
            "lexical": settings.lexical.model_dump(),
            "chunking": settings.chunking.model_dump(),
            "embedding_model": settings.embedding.model,
            "chunk_depth": max(DOC_DEPTH, settings.retrieval.candidates),
            "doc_depth": DOC_DEPTH,
            "bm25s": {
                "params": {s: {"k1": k1, "b": b} for s, (k1, b) in BM25S_PARAMS.items()},
                "method": "lucene",
                "token_pattern": "bm25s default (?u)\\b\\w\\w+\\b",
                "stemmer": f"PyStemmer {settings.lexical.stemmer!r}" if settings.lexical.stemmer else None,
                "stopwords": pairs[0][1] if pairs else [],
            },
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(_markdown_report(report), encoding="utf-8")
    return report


def _markdown_report(report: Mapping[str, Any]) -> str:
    bm25s_config = report["config"]["bm25s"]
    lines = [
        "# BM25: whole documents, chunks, and bm25s",
        "",
        "nDCG@10. Terms are our analyser's (stopwords and stemming applied). `ours, chunks` is the service's "
        f"BM25 stage: top {report['config']['chunk_depth']} chunks, a document scores as its best chunk.",
        "",
        report["table"],
        "",
        f"bm25s: {bm25s_config['method']} BM25, {bm25s_config['token_pattern']}, stemmer {bm25s_config['stemmer']}, "
        f"{len(bm25s_config['stopwords'])} stopwords: {', '.join(bm25s_config['stopwords'])}.",
        "",
        "| dataset | chunk s | ours docs s | ours chunks s | bm25s s |",
        "|---|---|---|---|---|",
    ]
    for d in report["datasets"]:
        s = d["seconds"]
        lines.append(f"| {d['dataset']} | {s['chunk']:.1f} | {s['ours_docs']:.1f} | {s['ours_chunks']:.1f} | {s['bm25s']:.1f} |")
    lines += [
        "",
        "## Chunking by document length",
        "",
        "Queries whose relevant documents all fit one chunk, and queries with a relevant document split into "
        "several chunks: nDCG@10 of ours on whole documents and on chunks.",
        "",
        "| dataset | queries, one chunk | whole | chunks | queries, several chunks | whole | chunks |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in report["datasets"]:
        cells = [d["dataset"]]
        for group in ("one_chunk", "several_chunks"):
            g = d["by_length"][group]
            scores = [f"{g[s]:.3f}" if g["queries"] else "—" for s in ("ours_docs", "ours_chunks")]
            cells += [str(g["queries"]), *scores]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Whole run: {report['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def quiet_logs() -> None:
    """Keep the libraries' INFO and DEBUG lines out of an entry point's log."""
    import bm25s  # noqa: F401 - bm25s sets its logger to DEBUG when imported

    for noisy in ("sentence_transformers", "httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m eval.bm25_table --out DIR [DATASET_DIR ...]``; prints the table."""
    from rag.config import load_settings

    parser = argparse.ArgumentParser(prog="python -m eval.bm25_table", description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", type=Path,
                        help=f"BEIR directories (default: {', '.join(SHARED_DATASETS)} in {DEFAULT_SHARED_DIR})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_logs()
    directories = args.datasets or [DEFAULT_SHARED_DIR / name for name in SHARED_DATASETS]
    report = run_bm25_table(load_settings(), directories, args.out)
    print(report["table"])
    print(f"report: {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
