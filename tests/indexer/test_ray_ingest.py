"""``rag ingest --engine ray`` on a real two-node Ray cluster on this machine.

The cluster (``ray.cluster_utils.Cluster``: a head and one more node, each its own raylet and
worker processes) is started once for the module. The driver is the test process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.pipeline import Ingestor
from rag.index.store import ACTIVE, DELETED, PENDING, Store
from rag.index.writer import CollectionWriter

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

from indexer.ray_ingest import RayIngestError, RayIngestor  # noqa: E402


@pytest.fixture
def cluster(ray_cluster):  # noqa: ANN001, ANN201
    return ray_cluster


def _corpus(root: Path, n: int, sentences: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    topics = ["travel", "parking", "leave", "expenses", "security", "remote work", "training", "payroll"]
    for i in range(n):
        t = topics[i % len(topics)]
        lines = [f"Rule {j} of the {t} policy, note {i}: staff follow step {j} and ask the {t} desk." for j in range(sentences)]
        (root / f"{t.replace(' ', '-')}-{i:03d}.md").write_text(f"# {t.title()} {i}\n\n" + " ".join(lines) + "\n")
    (root / "empty.md").write_text("")
    return root


def _snapshot(store: Store, name: str) -> dict[str, list]:
    """Documents, chunks (text and offsets) and vectors of a collection, keyed by document id."""
    info = store.collection(name)
    docs = {d.external_id: d for d in store.documents(info.id)}
    out = {}
    for ext, d in sorted(docs.items()):
        chunks = [(c.ordinal, c.text, c.char_start, c.char_end) for c in store.document_chunks(d.id)]
        out[ext] = [d.sha256, chunks, store.document_vectors(d.id)]
    return out


def _consistent(settings, store: Store, name: str) -> None:  # noqa: ANN001
    """No pending rows; tantivy holds the active chunks, FAISS those and the replaced versions' tombstones."""
    info = store.collection(name)
    assert store.docs_in_state(info.id, PENDING) == []
    active = set(store.chunk_ids(info.id, (ACTIVE,)).tolist())
    deleted = set(store.chunk_ids(info.id, (DELETED,)).tolist())
    with CollectionWriter(settings, store, info, "sentence-transformers/all-MiniLM-L6-v2", 384) as writer:
        assert not writer.reconciled.changed
        assert set(writer.lexical.ids().tolist()) == active
        assert set(writer.dense.ids().tolist()) - deleted == active


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for ext in a:
        assert a[ext][0] == b[ext][0] and a[ext][1] == b[ext][1], ext
        va, vb = a[ext][2], b[ext][2]
        assert va.shape == vb.shape
        assert float(np.min(np.sum(va * vb, axis=1))) >= 0.9999, ext


@pytest.mark.parametrize("parse_in_actors", [None, False], ids=["parsed-in-actors", "parse-tasks"])
def test_ray_ingest_matches_a_local_one(cluster, make_settings, embedder, tmp_path: Path,  # noqa: ANN001
                                        parse_in_actors: bool | None) -> None:
    # unset: the CPU actors parse their own files; False: parse tasks feed them, as for GPU actors
    settings = make_settings(f"sqlite:///{tmp_path / 'rag.db'}",
                             ray={"embed_actors": 2, "files_per_batch": 4, "parse_in_actors": parse_in_actors})
    store = Store(settings.sqlalchemy_url)
    corpus = _corpus(tmp_path / "corpus", 14)
    local = Ingestor(settings, store, embedder, "local").ingest([corpus])
    report = RayIngestor(settings, store, embedder, "ray", address=cluster.address).ingest([corpus])
    assert report.documents_added == local.documents_added == 14
    assert report.chunks_added == local.chunks_added
    assert report.documents_failed == local.documents_failed == 1  # the empty file, named the same way
    assert report.failures == local.failures
    assert report.timings_s["embed"] == 0.0  # every vector came from the actors
    _same(_snapshot(store, "local"), _snapshot(store, "ray"))
    _consistent(settings, store, "ray")
    again = RayIngestor(settings, store, embedder, "ray", address=cluster.address).ingest([corpus])
    assert (again.documents_added, again.documents_updated, again.chunks_added) == (0, 0, 0)
    assert again.documents_unchanged == 14
    (corpus / "travel-000.md").write_text("# Travel 0\n\nTravel is now approved by the finance office.\n")
    changed = RayIngestor(settings, store, embedder, "ray", address=cluster.address).ingest([corpus])
    assert (changed.documents_updated, changed.documents_unchanged) == (1, 13)
    _consistent(settings, store, "ray")


def _worker_pids(marker: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(entry.name))
    return pids


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, make_settings, embedder, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(f"sqlite:///{tmp_path / 'rag.db'}", ray={"embed_actors": 1, "files_per_batch": 2})
    store = Store(settings.sqlalchemy_url)
    corpus = _corpus(tmp_path / "corpus", 40, sentences=12)
    killed: list[int] = []

    def kill_an_embedder() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            pids = _worker_pids("MapBatches(EmbedChunks)")
            if pids:
                time.sleep(2.0)  # let it take a batch
                for pid in _worker_pids("MapBatches(EmbedChunks)")[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_an_embedder, daemon=True)
    killer.start()
    try:
        first = RayIngestor(settings, store, embedder, "ray", address=cluster.address).ingest([corpus])
        outcome = f"finished: {first.documents_added} added"
    except RayIngestError as exc:
        outcome = f"failed: {exc}"
        assert "running the same ingest again finishes it" in str(exc)
    killer.join(timeout=5)
    assert killed, "no embedding actor process was found to kill"
    _consistent(settings, store, "ray")
    rerun = RayIngestor(settings, store, embedder, "ray", address=cluster.address).ingest([corpus])
    assert rerun.documents_failed == 1, outcome
    Ingestor(settings, store, embedder, "clean").ingest([corpus])
    _same(_snapshot(store, "clean"), _snapshot(store, "ray"))  # 0 lost, 0 duplicated
    _consistent(settings, store, "ray")
