"""``kill -9`` a real ``rag ingest`` and ``rag compact`` at random points: nothing is lost or duplicated.

Each round starts the CLI in a subprocess, waits until it is writing (its ingestion job row is
``running``, or it holds the collection's writer lock), sleeps a random while and sends SIGKILL.
The test then reconciles the way the service does at start-up (``writing()`` + ``reconcile()``),
reopens the indexes from disk and checks that the database, FAISS and tantivy agree:

* no pending documents are left;
* every chunk of an active document is in FAISS and in tantivy, and neither holds an id outside
  the active and deleted documents' chunks;
* ids are unique in each index, each external id has at most one active version, and each active
  document's chunk ordinals are 0..n-1 once each;
* every document seen active before (all documents of every completed run among them) is still
  active, with its text from the version seen before or from the version being ingested.

The corpus changes between rounds, so kills also land in re-ingests that replace documents.
The figures go to ``crash-<db>.json`` in ``$RAG_TEST_REPORT_DIR`` (default: the test's tmp dir) and
a summary line to stdout (run with ``-s``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from indexer.admin import collection_stats, delete_documents, open_writer
from rag.config import Settings
from rag.index.collection import collection_dir
from rag.index.store import ACTIVE, DELETED, PENDING, ChunkRow, DocumentRow, IngestionJobRow, Store
from rag.index.reader import CollectionReader
from rag.retrieval.hybrid import HybridRetriever
from tests.conftest import REPO

COLLECTION = "crash"
JSONL_FILES = ("alpha", "beta", "gamma")
DOCS_PER_FILE = 60
GUIDES = 3
NEW_DOCS_IN_VERSION_2 = 5
CHANGED_SHARE = 0.25
TOPICS = (
    "how tide pools refill twice a day",
    "why sourdough needs a warm kitchen",
    "the gear ratios of old bicycles",
    "winter routes of migrating cranes",
    "how copper roofs turn green",
    "the night shift at a lighthouse",
    "rules of a village chess club",
)
# Every version of every document carries one word found nowhere else: w<key>r<version>.
MARKER = re.compile(r"\bw([a-z]+\d+)r(\d+)\b")

# Kills per corpus version during ingest, then compaction rounds. Each run pays the CLI's start-up
# (torch and sentence-transformers, 5-15 s), so compaction kills, which load no model, are cheaper.
PLANS = {
    "sqlite": {"ingest": (5, 5, 4), "compact": 6},
    "postgres": {"ingest": (2, 2), "compact": 2},
}
FIRST_VERSION_MAX_DELAY_S = 2.5
CHANGED_VERSION_MAX_DELAY_S = 1.0
COMPACT_MAX_DELAY_S = 0.3
START_TIMEOUT_S = 180.0
MAX_EXTRA_VERSIONS = 4


@dataclass
class Corpus:
    """A versioned corpus on disk: three BEIR JSONL files and a few Markdown guides.

    Each version after the first rewrites a quarter of the documents; version 2 also adds some.
    """

    root: Path
    rng: random.Random
    version: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    """Document key -> the version its current text comes from."""
    external_ids: dict[str, str] = field(default_factory=dict)
    """Document key -> external id (the BEIR ``_id``, or a guide's resolved path)."""

    def bump(self) -> set[str]:
        """Write the next version; returns the keys whose text changed or that are new."""
        self.version += 1
        v = self.version
        changed: set[str]
        if v == 1:
            changed = set(self._initial_keys())
        else:
            keys = sorted(self.marks)
            changed = set(self.rng.sample(keys, round(len(keys) * CHANGED_SHARE)))
            if v == 2:
                start = DOCS_PER_FILE
                changed |= {f"{JSONL_FILES[-1][0]}{i:03d}" for i in range(start, start + NEW_DOCS_IN_VERSION_2)}
        for key in changed:
            self.marks[key] = v
        self.root.mkdir(parents=True, exist_ok=True)
        for name in JSONL_FILES:
            keys = sorted(k for k in self.marks if k[0] == name[0] and not k.startswith("guide"))
            lines = [json.dumps({"_id": k, "title": f"Note {k}", "text": self.text(k)}) for k in keys]
            (self.root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        for j in range(GUIDES):
            key = f"guide{j}"
            path = self.root / f"{key}.md"
            # A guide's metadata holds its mtime: rewrite only the ones that changed.
            if key in changed:
                path.write_text(f"# Guide {j}\n\n{self.text(key)}\n")
            self.external_ids[key] = str(path.resolve())
        for key in self.marks:
            self.external_ids.setdefault(key, key)
        return changed

    def _initial_keys(self) -> list[str]:
        keys = [f"{name[0]}{i:03d}" for name in JSONL_FILES for i in range(DOCS_PER_FILE)]
        return keys + [f"guide{j}" for j in range(GUIDES)]

    def text(self, key: str) -> str:
        """The current text of a document."""
        v = self.marks[key]
        topic = TOPICS[sum(map(ord, key)) % len(TOPICS)]
        revised = f" Revised in edition {v}." if v > 1 else ""
        return f"This short note, {key}, is about {topic}.{revised} Its marker is {marker(key, v)}."

    def key_of(self, external_id: str) -> str | None:
        """The key of an external id, None for an id the corpus never had."""
        by_external = {e: k for k, e in self.external_ids.items()}
        return by_external.get(external_id)


def marker(key: str, version: int) -> str:
    """The unique word of one version of one document."""
    return f"w{key}r{version}"


@dataclass
class Tally:
    """What the kills did and what the checks found (the figures the test reports)."""

    kills: int = 0
    ingest_kills: int = 0
    compact_kills: int = 0
    mid_write: int = 0
    """Kills that landed before the run finished its job (ingest) or its purge (compact)."""
    pending_at_kill: int = 0
    """Kills that left staged documents not yet activated."""
    completed_runs: int = 0
    versions: int = 0
    reconciles_that_repaired: int = 0
    checks: int = 0
    lost: int = 0
    duplicated: int = 0
    disagreements: int = 0
    orphan_temp_files: int = 0
    """Temporary files that killed atomic writes left in the collection directory (harmless, never read)."""
    delays_s: list[float] = field(default_factory=list)
    start_up_s: list[float] = field(default_factory=list)
    """Seconds from spawning each killed run to its first write (mostly loading torch and the model)."""
    problems: list[str] = field(default_factory=list)

    def problem(self, kind: str, what: str) -> None:
        """Count one violation of ``kind`` (lost | duplicated | disagreements) and say what it was."""
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 50:
            self.problems.append(f"{kind}: {what}")


@dataclass
class Harness:
    """Runs the CLI against one database and checks the collection after every run."""

    settings: Settings
    store: Store
    corpus: Corpus
    env: dict[str, str]
    logs: Path
    rng: random.Random
    tally: Tally = field(default_factory=Tally)
    seen: dict[str, int] = field(default_factory=dict)
    """Key -> version of every document seen active so far (deleted ones leave)."""
    last_job: int = 0

    # running --------------------------------------------------------------------------------

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``rag <args>`` in a subprocess, output to the log file."""
        with open(self.logs, "ab") as log:
            log.write(f"\n$ rag {' '.join(args)}\n".encode())
            return subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )

    def finish(self, proc: subprocess.Popen[bytes], ok_codes: tuple[int, ...] = (0,)) -> None:
        """Wait for a run that is not killed and require its exit code."""
        rc = proc.wait(timeout=START_TIMEOUT_S)
        assert rc in ok_codes, f"rag exited {rc}; log:\n{self.logs.read_text()[-3000:]}"

    def kill(self, proc: subprocess.Popen[bytes]) -> bool:
        """SIGKILL the run; returns whether it was still alive."""
        alive = proc.poll() is None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return alive

    def wait_until(self, proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> bool:
        """Poll until ``ready()``; False when the process exits first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        proc.kill()
        pytest.fail(f"rag did not start writing within {START_TIMEOUT_S} s; log:\n{self.logs.read_text()[-3000:]}")

    def job_status(self, job_id: int) -> str | None:
        with self.store.session() as s:
            return s.scalar(select(IngestionJobRow.status).where(IngestionJobRow.id == job_id))

    def new_running_job(self) -> int | None:
        with self.store.session() as s:
            return s.scalar(
                select(IngestionJobRow.id)
                .where(IngestionJobRow.id > self.last_job, IngestionJobRow.status == "running")
                .order_by(IngestionJobRow.id.desc())
            )

    def count_state(self, state: str) -> int:
        with self.store.session() as s:
            return len(s.scalars(select(DocumentRow.id).where(DocumentRow.state == state)).all())

    def ingest(self, max_delay_s: float | None) -> bool:
        """One ``rag ingest`` of the corpus, killed after a random delay unless ``max_delay_s`` is None.

        Returns:
            Whether the run completed its job (possibly just before the kill).
        """
        spawned = time.monotonic()
        proc = self.start("ingest", str(self.corpus.root), "-c", COLLECTION, "--create", "--json")
        if max_delay_s is None:
            self.finish(proc)
            job = self.new_job_since()
        else:
            job = 0

            def running() -> bool:
                nonlocal job
                job = self.new_running_job() or 0
                return bool(job)

            started = self.wait_until(proc, running)
            job = job if started else self.new_job_since()
            self.tally.start_up_s.append(round(time.monotonic() - spawned, 2))
            if started:
                delay = self.rng.uniform(0.0, max_delay_s)
                self.tally.delays_s.append(round(delay, 3))
                time.sleep(delay)
            alive = self.kill(proc)
            self.tally.kills += 1
            self.tally.ingest_kills += 1
            if alive and self.job_status(job) == "running":
                self.tally.mid_write += 1
            if alive and self.count_state(PENDING):
                self.tally.pending_at_kill += 1
            if not alive:
                self.finish(proc)
        self.last_job = max(self.last_job, job)
        completed = self.job_status(job) == "done"
        self.check(completed_version=completed)
        self.tally.completed_runs += completed
        return completed

    def new_job_since(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(IngestionJobRow.id).order_by(IngestionJobRow.id.desc())) or 0)

    def delete(self, key: str) -> None:
        """Delete one document in-process, with the function behind ``rag delete --id``."""
        external_id = self.corpus.external_ids[key]
        n = delete_documents(self.settings, self.store, COLLECTION, external_id=external_id)
        assert n == 1
        self.seen.pop(key, None)

    def compact(self, max_delay_s: float | None) -> None:
        """One ``rag compact``, killed a random while after it takes the writer lock."""
        proc = self.start("compact", "-c", COLLECTION)
        if max_delay_s is None:
            self.finish(proc)
        else:
            lock = collection_dir(self.settings, COLLECTION) / "write.lock"
            if self.wait_until(proc, lambda: holds_flock(proc.pid, lock)):
                delay = self.rng.uniform(0.0, max_delay_s)
                self.tally.delays_s.append(round(delay, 3))
                time.sleep(delay)
            alive = self.kill(proc)
            self.tally.kills += 1
            self.tally.compact_kills += 1
            if alive and self.count_state(DELETED):
                self.tally.mid_write += 1
        self.check()

    # checking -------------------------------------------------------------------------------

    def check(self, *, completed_version: bool = False) -> None:
        """Reconcile as the service does, then check the invariants on what is on disk."""
        t = self.tally
        t.checks += 1
        with open_writer(self.settings, self.store, COLLECTION) as writer:
            if writer.reconciled.changed:
                t.reconciles_that_repaired += 1
        fresh = open_writer(self.settings, self.store, COLLECTION)  # not entered: its indexes as on disk
        cid = fresh.info.id
        where = f"after check {t.checks}"

        if pending := self.store.docs_in_state(cid, PENDING):
            t.problem("disagreements", f"{where}: {len(pending)} pending documents left")
        active = self.store.chunk_ids(cid, (ACTIVE,))
        allowed = self.store.chunk_ids(cid, (ACTIVE, DELETED))
        for name, ids in (("faiss", fresh.dense.ids()), ("tantivy", fresh.lexical.ids())):
            if n := len(np.setdiff1d(active, ids)):
                t.problem("disagreements", f"{where}: {n} active chunks missing from {name}")
            if n := len(np.setdiff1d(ids, allowed)):
                t.problem("disagreements", f"{where}: {name} holds {n} ids of no active or deleted chunk")
            if n := len(ids) - len(np.unique(ids)):
                t.problem("duplicated", f"{where}: {n} repeated ids in {name}")

        versions = self._active_versions(cid, where)
        for key, version in self.seen.items():
            if key not in versions:
                t.problem("lost", f"{where}: {key} (version {version}) is no longer active")
        for key, version in versions.items():
            before = self.seen.get(key)
            if version not in (before, self.corpus.marks[key]):
                t.problem("disagreements", f"{where}: {key} has version {version}, seen {before}, "
                          f"ingesting {self.corpus.marks[key]}")
        self.seen.update(versions)
        if completed_version:
            for key, version in self.corpus.marks.items():
                if versions.get(key) != version:
                    t.problem("lost", f"{where}: a completed run left {key} at {versions.get(key)}, not {version}")

    def _active_versions(self, cid: int, where: str) -> dict[str, int]:
        """Key -> version of each active document, checking keys, ordinals and markers."""
        t = self.tally
        with self.store.session() as s:
            rows = s.execute(
                select(DocumentRow.id, DocumentRow.external_id, ChunkRow.ordinal, ChunkRow.text)
                .join(ChunkRow, ChunkRow.document_id == DocumentRow.id)
                .where(DocumentRow.collection_id == cid, DocumentRow.state == ACTIVE)
                .order_by(DocumentRow.id, ChunkRow.ordinal)
            ).all()
        docs: dict[int, tuple[str, list[int], list[str]]] = {}
        for doc_id, external_id, ordinal, text in rows:
            docs.setdefault(doc_id, (external_id, [], []))
            docs[doc_id][1].append(ordinal)
            docs[doc_id][2].append(text)
        per_key: dict[str, list[int]] = defaultdict(list)
        versions: dict[str, int] = {}
        for doc_id, (external_id, ordinals, texts) in docs.items():
            key = self.corpus.key_of(external_id)
            if key is None:
                t.problem("disagreements", f"{where}: active document {external_id!r} is in no corpus version")
                continue
            per_key[key].append(doc_id)
            if sorted(ordinals) != list(range(len(ordinals))):
                t.problem("duplicated", f"{where}: {key} has chunk ordinals {sorted(ordinals)}")
            found = {(k, int(v)) for k, v in MARKER.findall(" ".join(texts))}
            if len(found) != 1 or next(iter(found))[0] != key:
                t.problem("disagreements", f"{where}: {key}'s chunks carry markers {sorted(found)}")
                continue
            versions[key] = next(iter(found))[1]
        for key, ids in per_key.items():
            if len(ids) > 1:
                t.problem("duplicated", f"{where}: {key} has {len(ids)} active versions")
        return versions


def holds_flock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a flock on ``path`` (read from /proc/locks, so we never contend)."""
    try:
        inode = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146401 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[4] == str(pid) and parts[5].endswith(f":{inode}"):
            return True
    return False


def cli_env(settings: Settings, db_url: str) -> dict[str, str]:
    """The environment of every CLI run: small batches and frequent commits, so kills land between them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(settings.data_dir),
        RAG_DATABASE_URL=db_url,
        RAG_INGEST__BATCH_DOCUMENTS="2",
        RAG_INGEST__COMMIT_INTERVAL_S="0.3",
        RAG_RERANKER__MODEL="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # One thread per run: many small batches are faster so, and start-up is steadier.
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
    )
    return env


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks to see the writer lock")
def test_kill_9_during_ingest_and_compact_loses_nothing(db_url, make_settings, embedder, tmp_path) -> None:
    db = "sqlite" if db_url.startswith("sqlite") else "postgres"
    plan = PLANS[db]
    rng = random.Random(42)
    settings = make_settings(db_url)
    store = Store(settings.sqlalchemy_url)
    corpus = Corpus(tmp_path / "corpus", rng)
    h = Harness(settings, store, corpus, cli_env(settings, db_url), tmp_path / "rag.log", rng)
    t0 = time.monotonic()
    try:
        # Ingest kills: the first version from scratch, then completed once, so that every later
        # kill puts a completed run's documents at stake; later versions replace a quarter of it.
        # A run can finish before its kill on a fast machine: the kill it owed moves on to the
        # next version (extra versions past the plan if need be), and later delays shrink.
        owed, schedule, scale = 0, list(plan["ingest"]), 1.0
        while schedule or (owed and h.tally.versions < len(plan["ingest"]) + MAX_EXTRA_VERSIONS):
            owed += schedule.pop(0) if schedule else 0
            corpus.bump()
            h.tally.versions += 1
            max_delay = FIRST_VERSION_MAX_DELAY_S if corpus.version == 1 else CHANGED_VERSION_MAX_DELAY_S
            completed = False
            while owed and not completed:
                before = h.tally.ingest_kills
                completed = h.ingest(max_delay * scale)
                owed -= h.tally.ingest_kills - before
                if completed:
                    scale /= 2
            if not completed and corpus.version == 1:
                assert h.ingest(None)

        # Compaction kills, each after deleting two documents (kills stop mid-ingest before them).
        jsonl_keys = sorted(k for k in corpus.marks if not k.startswith("guide"))
        for _ in range(plan["compact"]):
            for key in rng.sample([k for k in jsonl_keys if k in h.seen], 2):
                h.delete(key)
            h.compact(COMPACT_MAX_DELAY_S)
        h.compact(None)
        stats = collection_stats(settings, store, COLLECTION)
        assert stats["tombstones"] == 0 and stats["vectors"] == stats["chunks"] == stats["lexical_docs"]

        # The last run re-adds the deleted documents; the collection is the latest corpus, exactly.
        assert h.ingest(None)
        idx = CollectionReader(settings, store, store.collection(COLLECTION), embedder)
        active = {corpus.key_of(e) for e in store_active_external_ids(store, idx.info.id)}
        assert active == set(corpus.marks)
        assert h.seen == corpus.marks
        h.tally.orphan_temp_files = len(list(idx.directory.rglob("*.tmp")))
        retriever = HybridRetriever(idx, settings.retrieval)
        latest = [k for k, v in corpus.marks.items() if v == corpus.version]
        for key in sorted(rng.sample(latest, 3)) + ["guide0"]:
            hits = retriever.run(marker(key, corpus.marks[key]), candidates=5).fused
            assert corpus.external_ids[key] in [s.chunk.external_id for s in hits], key
    finally:
        store.close()

    t = h.tally
    figures = {"db": db, "seconds": round(time.monotonic() - t0, 1), **asdict(t)}
    # pytest prunes old tmp dirs; RAG_TEST_REPORT_DIR keeps the figures somewhere stable.
    report = Path(os.environ.get("RAG_TEST_REPORT_DIR") or tmp_path) / f"crash-{db}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(figures, indent=2))
    print(
        f"\ncrash test [{db}]: {t.kills} kills ({t.mid_write} mid-write, {t.pending_at_kill} with pending documents; "
        f"{t.ingest_kills} ingest, {t.compact_kills} compact), {t.completed_runs} completed runs over {t.versions} "
        f"corpus versions, {t.reconciles_that_repaired} repairs; lost {t.lost}, duplicated {t.duplicated}, "
        f"disagreements {t.disagreements}; {figures['seconds']} s; figures in {report}"
    )
    assert (t.lost, t.duplicated, t.disagreements) == (0, 0, 0), "\n".join(t.problems)
    assert t.kills >= sum(plan["ingest"]) + plan["compact"]
    assert t.mid_write >= t.kills // 2, "most kills should land while the run is writing"


def store_active_external_ids(store: Store, collection_id: int) -> list[str]:
    """External ids of the collection's active documents."""
    with store.session() as s:
        return list(
            s.scalars(
                select(DocumentRow.external_id).where(
                    DocumentRow.collection_id == collection_id, DocumentRow.state == ACTIVE
                )
            )
        )
