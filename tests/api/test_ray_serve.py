"""``rag serve --engine ray`` answers a search as the local service does, through its shard actors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexer.pipeline import Ingestor
from rag.index.store import Store
from rag.pipeline import RagPipeline

pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_search_through_ray_serve_answers_like_the_local_server(
    ray_cluster, make_settings, embedder, tmp_path: Path  # noqa: ANN001
) -> None:
    settings = make_settings()
    store = Store(settings.sqlalchemy_url)
    store.ensure_collection("handbook")
    store.update_collection_settings("handbook", {"shards": 2})
    Ingestor(settings, store, embedder, "handbook").ingest([REPO / "data"])
    local = RagPipeline(settings, store, embedder, None, None, None)
    expected = local.search("handbook", "Who approves travel requests?", 5, rerank=False).results

    port = _free_port()
    env = {
        **os.environ, "RAG_DATA_DIR": str(settings.data_dir), "RAG_RERANKER__MODEL": "", "HF_HUB_OFFLINE": "1",
        # a generator URL nobody answers: replicas search without one and never start llama.cpp
        "RAG_GENERATOR__URL": "http://127.0.0.1:9/v1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--engine", "ray", "--address", ray_cluster.address,
         "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/search",
                               json={"query": "Who approves travel requests?", "collection": "handbook", "top_k": 5},
                               timeout=60)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        assert body is not None, f"the Ray server never answered (exit {proc.poll()})"
        got = [(h["external_id"], h["char_start"], round(h["scores"]["rrf"], 6), round(h["scores"]["bm25"] or 0, 4), round(h["scores"]["dense"] or 0, 4)) for h in body["results"]]
        want = [(c.chunk.external_id, c.chunk.char_start, round(c.score, 6), round(c.scores.bm25 or 0, 4), round(c.scores.dense or 0, 4)) for c in expected]
        assert got == want
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        assert "bm25" in metrics and "dense" in metrics
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Traceback" not in out, out[-3000:]
