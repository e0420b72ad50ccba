"""``rag search`` and ``rag ask`` from the command line, in a subprocess, over a real small collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rag(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "RAG_RERANKER__MODEL": ""}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_search_prints_results_and_stage_timings_without_a_server(tmp_path: Path) -> None:
    corpus = tmp_path / "notes.jsonl"
    docs = [
        {"_id": "n1", "title": "Parking", "text": "Bicycles can be parked for free in the courtyard."},
        {"_id": "n2", "title": "Dogs", "text": "Dogs are not allowed in the office."},
    ]
    corpus.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    data = tmp_path / "data"
    ingest = _rag(data, "ingest", str(corpus), "--collection", "notes", "--create")
    assert ingest.returncode == 0, ingest.stderr
    r = _rag(data, "search", "where can I park a bicycle", "-c", "notes", "--top-k", "2", "--json")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert [x["external_id"] for x in body["results"]][0] == "n1"
    assert {"embed", "bm25", "dense", "fuse", "total"} <= set(body["timings_ms"])
    human = _rag(data, "search", "dogs in the office", "-c", "notes")
    assert human.returncode == 0 and "Dogs" in human.stdout and "bm25" in human.stdout and "ms" in human.stdout


def test_ask_on_a_missing_collection_fails_before_starting_the_generator(tmp_path: Path) -> None:
    r = _rag(tmp_path / "data", "ask", "anything?", "-c", "nosuch")
    assert r.returncode != 0
    assert "nosuch" in r.stderr and "Traceback" not in r.stderr
    assert "llama.cpp" not in r.stderr, "the collection is checked before the generator starts"
