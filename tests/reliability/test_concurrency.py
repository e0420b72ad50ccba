"""Item 2: concurrent ingest/delete and queries.

One subprocess re-ingests and deletes documents through the real CLI in a loop
(:mod:`tests.reliability.churn`) while this process searches continuously through
:meth:`RagPipeline.search`, which refreshes the indexes on every call. Every
returned chunk must belong to a document that was not already deleted when the
query began and is not pending after it, and its version marker must match the
text stored for that document. Queries must never error.

Figure: ``RELIABILITY concurrency queries=N errors=E violations=V writer_steps=S``.
Scale with ``RAG_RELIABILITY_CHURN_S`` (default 20 seconds).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from indexer.pipeline import Ingestor
from rag.config import load_settings
from rag.index.store import Store
from rag.pipeline import RagPipeline
from tests.reliability.churn import write_docs

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "churn"
QUERIES = ("kzmarker lighthouses", "fog churn document", "kzmarker version", "document3 lighthouses fog")
_VERSION = re.compile(r"kzmarker (document\d+) (version\d+)")


def _states(store: Store, collection_id: int) -> dict[int, str]:
    with store.session() as s:
        rows = s.execute(text("SELECT id, state FROM documents WHERE collection_id = :c"), {"c": collection_id})
        return {int(i): st for i, st in rows}


def _marker_of_doc(store: Store, doc_id: int) -> str:
    with store.session() as s:
        first = s.execute(text("SELECT text FROM chunks WHERE document_id = :d ORDER BY ordinal LIMIT 1"), {"d": doc_id}).scalar()
    m = _VERSION.search(first or "")
    return m.group(0) if m else ""


def test_queries_never_see_pending_or_deleted_documents(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    seconds = float(os.environ.get("RAG_RELIABILITY_CHURN_S", "20"))
    data, src, log = tmp_path / "data", tmp_path / "src", tmp_path / "churn.log"
    settings = load_settings(data_dir=data, reranker={"model": ""})
    store = Store(settings.sqlalchemy_url)
    write_docs(src, 0)
    Ingestor(settings, store, embedder, COLLECTION).ingest([src])
    cid = store.collection(COLLECTION).id
    pipeline = RagPipeline(settings, store, embedder)

    env = {**os.environ, "RAG_DATA_DIR": str(data), "RAG_RERANKER__MODEL": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.churn", str(src), COLLECTION, str(seconds), str(log)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    queries = errors = violations = returned = 0
    problems: list[str] = []
    try:
        deadline = time.monotonic() + seconds + 120  # the writer's own clock stops it; this bounds a hang
        while writer.poll() is None and time.monotonic() < deadline:
            before = _states(store, cid)
            q = QUERIES[queries % len(QUERIES)]
            queries += 1
            try:
                found = pipeline.search(COLLECTION, q, top_k=10)
            except Exception as exc:  # counted, then reported by the assertion
                errors += 1
                problems.append(f"query {q!r} raised {exc!r}")
                continue
            after = _states(store, cid)
            for r in found.results:
                returned += 1
                doc = r.chunk.document_id
                bad = ""
                if before.get(doc) == "deleted":
                    bad = "deleted before the query began"
                elif after.get(doc) in (None, "pending"):
                    bad = f"in state {after.get(doc)!r} after the query"
                else:
                    m = _VERSION.search(r.chunk.text)
                    if m and m.group(0) != _marker_of_doc(store, doc):
                        bad = f"marker {m.group(0)!r} does not match the stored document"
                if bad:
                    violations += 1
                    problems.append(f"doc {doc}: {bad}")
    finally:
        if writer.poll() is None:
            writer.kill()
        _, stderr = writer.communicate(timeout=60)
    steps = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    print(
        f"RELIABILITY concurrency queries={queries} errors={errors} violations={violations} "
        f"chunks_checked={returned} writer_steps={len(steps)} writer_rounds={max((s['version'] for s in steps), default=0)}"
    )
    assert writer.returncode == 0, stderr[-3000:]
    assert len(steps) >= 2, f"the writer did not finish a round: {stderr[-3000:]}"
    assert all(s["rc"] == 0 for s in steps), steps
    assert queries >= 10
    assert errors == 0 and violations == 0, problems[:20]
