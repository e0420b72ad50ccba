"""Scale-out, measured side by side in one run: Ray ingestion against a local ingest, and a sharded collection's search.

Ingestion. The same corpus (the first documents of the dataset, one file each, so that Ray can
split it into batches) is ingested into a fresh data dir per run through ``rag ingest --json``
(``eval`` may not import ``indexer``): locally, then with ``--engine ray`` and a pool of 1 actor
holding every core (the same cores as the local ingest, whose embedder uses them all), then with
one actor per core of 1 CPU each. One Ray cluster with ``cores`` CPUs is started once, in a
child process, before the timed runs (the local ingests run beside it idle, as the Ray ones do),
and an untimed Ray ingest of a few files warms it. Each ingest is a new Ray job, so its actors
start inside the timed ingest: the reported ``chunks_per_s`` includes actor start-up.
``warm_chunks_per_s`` is the marginal rate between a small ingest and the full one in the same
configuration, ``(chunks - small_chunks) / (seconds - small_seconds)``, which removes what every
ingest pays once (actor start and model load for Ray, model load for local).
``overhead = 1 - warm ray(1 actor) / warm local``. The configurations run in ``rounds``
interleaved rounds (local, Ray 1 actor, Ray N actors, then again): each run's figures are those of
its median round, and each ratio is the median of the rounds' own ratios (Ray against the local
ingest of the same round), since on a shared 2-core machine one ingest's rate moves by 10 % from
run to run and the load drifts over minutes.

Search. One level of ``chunks`` chunks (cached vectors, no embedding) is bulk-loaded by
:class:`~rag.index.writer.CollectionWriter` into a collection of 1 shard and one of ``shards``
shards. The same queries go through BM25, dense (precomputed query vectors) and the hybrid,
alternating which collection goes first per query so noise hits both alike. Both collections use
HNSW (``auto`` would make a 25k-chunk shard flat and the 100k index HNSW), which is approximate,
so the top-10 overlap of dense can be below 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eval.bench.build import level_versions
from eval.bench.common import (
    CANDIDATES,
    REPO,
    TOP_K,
    WARM_UP,
    JsonDict,
    LatencyStats,
    cli_env,
    cycle,
    failure,
    stats_json,
)
from eval.bench.corpus import BaseCorpus, QuerySet, make_level, read_records, synthetic_docs
from eval.bench.targets import Ratio
from rag.config import Settings
from rag.embedding import Embedder
from rag.index.reader import CollectionReader
from rag.index.shards import SHARDS_SETTING
from rag.index.store import Store
from rag.index.writer import CollectionWriter
from rag.retrieval.hybrid import HybridRetriever
from rag.threads import query_threads
from rag.types import Query

Say = Callable[[str], None]
RUN_TIMEOUT_S = 300
"""Seconds one ingest may take before it is reported as an error."""
HEAD_TIMEOUT_S = 180
SMALL_DOCS = 5
STAGES = ("bm25", "dense", "hybrid")
OVERHEAD_DEFINITION = ("1 - warm chunks/s of Ray with 1 actor holding every core / warm chunks/s of the local ingest; "
                       "warm = (chunks - small_chunks) / (seconds - small_seconds); with interleaved rounds, the "
                       "median over rounds of Ray's rate / the same round's local rate")
ROUNDS = 3
"""Interleaved rounds of every ingest configuration (the figures are their medians)."""

# The cluster's head: a child process, so the bench process itself never joins Ray.
_HEAD = """
import logging, sys, ray
# One logical CPU more than the cores: the parse tasks must find room beside an actor holding every core.
ray.init(address="local", num_cpus=int(sys.argv[1]) + 1, include_dashboard=False, log_to_driver=False,
         logging_level=logging.WARNING, namespace="rag")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _rate(chunks: float, seconds: float) -> float | None:
    return round(chunks / seconds, 2) if seconds > 0 and chunks > 0 else None


@dataclass(frozen=True)
class IngestRun:
    """One ingest configuration: the full corpus and a small one, each in a fresh data dir.

    Attributes:
        name: ``local``, ``ray 1x2cpu`` ...
        engine: ``local`` or ``ray``.
        embed_actors: actors in the pool (None: local).
        actor_cpus: CPUs (and embedding threads) per actor (None: local).
        documents / chunks / seconds: the full ingest, as ``rag ingest --json`` reported it.
        chunks_per_s: ``chunks / seconds``, actor start-up included for Ray (with rounds: the median over them).
        small_chunks / small_seconds: the small ingest.
        warm_chunks_per_s: the marginal rate (see the module).
        wall_s_with_startup: wall time of the full ingest's subprocess.
        stages_s: seconds per stage of the full ingest.
        error: why this configuration has no figures.
        rounds_warm / rounds_with_start: ``warm_chunks_per_s`` / ``chunks_per_s`` of each round; the
            fields above are of the round whose warm rate is the median (the lower middle of an even count).
    """

    name: str
    engine: str
    embed_actors: int | None = None
    actor_cpus: float | None = None
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    chunks_per_s: float | None = None
    small_chunks: int = 0
    small_seconds: float = 0.0
    warm_chunks_per_s: float | None = None
    wall_s_with_startup: float = 0.0
    stages_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    rounds_warm: tuple[float | None, ...] = ()
    rounds_with_start: tuple[float | None, ...] = ()

    def to_json(self) -> JsonDict:
        """One entry of ``scale.ingest.runs``."""
        return dict(self.__dict__, stages_s=dict(self.stages_s), rounds_warm=list(self.rounds_warm),
                    rounds_with_start=list(self.rounds_with_start))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IngestRun:
        """The inverse of :meth:`to_json`."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for k in ("rounds_warm", "rounds_with_start"):
            fields[k] = tuple(fields.get(k, ()))
        return cls(**fields)


@dataclass(frozen=True)
class ScaleIngest:
    """The ingest runs, the cluster's start time and the ratios between them."""

    runs: tuple[IngestRun, ...] = ()
    cores: int = 0
    ray_start_s: float | None = None
    warmup_s: float | None = None
    skipped: str | None = None

    def run(self, name: str) -> IngestRun | None:
        """The run called ``name``, or None."""
        return next((r for r in self.runs if r.name == name), None)

    def ratios(self) -> dict[str, float | None]:
        """Ray / local chunks/s per Ray run (warm and with actor start), and the overhead.

        With several rounds, each ratio is the median over the rounds of that round's Ray rate over the same
        round's local rate (the two ran minutes apart, not a whole round apart), so it need not equal the
        ratio of the runs' median rates; an even count takes the lower middle.
        """
        local = self.run("local")
        out: dict[str, float | None] = {}
        for r in self.runs:
            if r.engine != "ray":
                continue
            out[f"{r.name} / local (warm)"] = _paired(r, local, warm=True)
            out[f"{r.name} / local (with actor start)"] = _paired(r, local, warm=False)
        same = next((r for r in self.runs if r.engine == "ray" and r.embed_actors == 1), None)
        warm = _paired(same, local, warm=True)
        out["overhead (1 actor, same cores, warm)"] = round(1 - warm, 4) if warm is not None else None
        cold = _paired(same, local, warm=False)
        out["overhead (1 actor, same cores, with actor start)"] = round(1 - cold, 4) if cold is not None else None
        return out

    def to_json(self) -> JsonDict:
        """The ``scale.ingest`` object."""
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {"cores": self.cores, "ray_start_s": self.ray_start_s, "warmup_s": self.warmup_s,
                "overhead_definition": OVERHEAD_DEFINITION, "runs": [r.to_json() for r in self.runs],
                "ratios": self.ratios()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleIngest:
        """The inverse of :meth:`to_json`."""
        if "skipped" in data:
            return cls(skipped=data["skipped"])
        return cls(tuple(IngestRun.from_json(r) for r in data.get("runs", ())), data.get("cores", 0),
                   data.get("ray_start_s"), data.get("warmup_s"))


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _paired(ray: IngestRun | None, local: IngestRun | None, *, warm: bool) -> float | None:
    """The median over rounds of ``ray``'s rate / ``local``'s in the same round (one round: the plain ratio)."""
    if ray is None or local is None:
        return None
    a = ray.rounds_warm if warm else ray.rounds_with_start
    b = local.rounds_warm if warm else local.rounds_with_start
    if len(a) > 1 and len(a) == len(b):
        return _median([_div(x, y) for x, y in zip(a, b)])
    return _div(ray.warm_chunks_per_s if warm else ray.chunks_per_s, local.warm_chunks_per_s if warm else local.chunks_per_s)


@dataclass(frozen=True)
class ShardedSearch:
    """The same queries against 1 shard and ``shards`` shards of one level.

    Attributes:
        chunks: chunks in each collection.
        shards: shards of the sharded collection.
        queries: timed queries (after ``WARM_UP``).
        build_s: ``"1"`` / ``"N"`` -> seconds of ``CollectionWriter.load``.
        dense_kind: ``"1"`` / ``"N"`` -> the FAISS index kind of (the first) shard.
        latency: ``"1"`` / ``"N"`` -> stage -> latency.
        overlap_at_10: stage -> mean top-10 overlap between the two collections (by document and ordinal).
    """

    chunks: int
    shards: int
    queries: int
    build_s: dict[str, float]
    dense_kind: dict[str, str]
    latency: dict[str, dict[str, LatencyStats | None]]
    overlap_at_10: dict[str, float]

    def ratios(self) -> dict[str, float | None]:
        """Stage -> p50 with ``shards`` shards / p50 with 1."""
        one, many = self.latency.get("1", {}), self.latency.get(str(self.shards), {})
        return {s: _div(many[s].p50 if many.get(s) else None, one[s].p50 if one.get(s) else None) for s in STAGES}

    def to_json(self) -> JsonDict:
        """The ``scale.search`` object."""
        return {"chunks": self.chunks, "shards": self.shards, "queries": self.queries, "build_s": dict(self.build_s),
                "dense_kind": dict(self.dense_kind),
                "latency_ms": {k: {s: stats_json(v) for s, v in lat.items()} for k, lat in self.latency.items()},
                "p50_ratio": self.ratios(), "overlap_at_10": dict(self.overlap_at_10)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardedSearch:
        """The inverse of :meth:`to_json`."""
        lat = {k: {s: LatencyStats.from_json(v) for s, v in d.items()} for k, d in data["latency_ms"].items()}
        return cls(data["chunks"], data["shards"], data["queries"], dict(data["build_s"]), dict(data["dense_kind"]),
                   lat, dict(data["overlap_at_10"]))


@dataclass(frozen=True)
class ScaleResult:
    """The ``scale`` stage: ingestion with Ray against local, and 1 shard against ``shards``."""

    ingest: ScaleIngest | None = None
    search: ShardedSearch | None = None
    search_error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> JsonDict:
        """The ``scale`` object of ``bench.json``."""
        out: JsonDict = {"seconds": self.seconds}
        if self.ingest is not None:
            out["ingest"] = self.ingest.to_json()
        if self.search is not None:
            out["search"] = self.search.to_json()
        if self.search_error is not None:
            out["search_error"] = self.search_error
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleResult:
        """The inverse of :meth:`to_json`."""
        return cls(ScaleIngest.from_json(data["ingest"]) if "ingest" in data else None,
                   ShardedSearch.from_json(data["search"]) if "search" in data else None,
                   data.get("search_error"), data.get("seconds", 0.0))


# ------------------------------------------------------------------------------ ingestion


def ray_missing() -> str | None:
    """Why Ray cannot be used here (``import ray`` fails), or None."""
    try:
        import ray  # noqa: F401, PLC0415 - optional extra
    except ImportError as exc:
        return f"import ray failed ({exc}); install the extra: pip install 'rag-service[ray]'"
    return None


def write_corpus(dataset: Path | None, n_docs: int, directory: Path) -> Path:
    """The first ``n_docs`` documents of ``dataset`` (synthetic when None), one BEIR ``.jsonl`` file each."""
    records = read_records(dataset / "corpus.jsonl")[:n_docs] if dataset is not None else synthetic_docs(n_docs)[0]
    directory.mkdir(parents=True, exist_ok=True)
    for i, rec in enumerate(records):
        (directory / f"doc-{i:05d}.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    return directory


class RayHead:
    """A local Ray cluster of ``cpus`` CPUs in a child process, with its own auth token; a context manager."""

    def __init__(self, cpus: int) -> None:
        self.cpus = cpus
        self.token = secrets.token_hex(32)
        self.address = ""
        self.start_s = 0.0
        self._proc: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        """What a process joining this cluster needs."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def __enter__(self) -> RayHead:
        t = time.perf_counter()
        env = {**os.environ, **self.env()}
        self._proc = subprocess.Popen([sys.executable, "-c", _HEAD, str(self.cpus)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
        line = self._proc.stdout.readline().strip() if self._proc.stdout else ""
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError("the Ray head did not start")
        self.address, self.start_s = line, round(time.perf_counter() - t, 2)
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)


def _ingest(corpus: Path, data_dir: Path, models: Path | None, extra_env: Mapping[str, str],
            ray_address: str | None) -> tuple[dict[str, Any], float]:
    """``rag ingest --json`` of ``corpus`` into a fresh ``data_dir``: its report and the wall time."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "cli.main", "ingest", str(corpus), "--json", "-c", "bench-scale", "--create"]
    if ray_address is not None:
        cmd += ["--engine", "ray", "--address", ray_address]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**cli_env(data_dir, models), **extra_env}, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - t
    shutil.rmtree(data_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["rag ingest failed"])[-1][:300])
    return json.loads(proc.stdout), wall


def _measure_run(name: str, corpus: Path, small: Path, work: Path, models: Path | None, env: Mapping[str, str],
                 address: str | None, actors: int | None, cpus: float | None) -> IngestRun:
    try:
        small_rep, _ = _ingest(small, work / "data-small", models, env, address)
        rep, wall = _ingest(corpus, work / "data", models, env, address)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        return IngestRun(name, "ray" if address else "local", actors, cpus, error=failure(exc))
    chunks, seconds = int(rep["chunks_added"]), float(rep["seconds"])
    s_chunks, s_seconds = int(small_rep["chunks_added"]), float(small_rep["seconds"])
    docs = int(rep.get("documents_added", 0) or 0)
    return IngestRun(name, "ray" if address else "local", actors, cpus, docs, chunks, round(seconds, 3),
                     _rate(chunks, seconds), s_chunks, round(s_seconds, 3),
                     _rate(chunks - s_chunks, seconds - s_seconds), round(wall, 2),
                     {k: round(float(v), 3) for k, v in rep.get("timings_s", {}).items()})


def _median_run(rounds: list[IngestRun]) -> IngestRun:
    """The round whose warm rate is the median, with every round's rates; an error when any round failed."""
    failed = next((r for r in rounds if r.error is not None), None)
    if failed is not None:
        return failed
    measured = [r for r in rounds if r.warm_chunks_per_s is not None] or rounds
    ordered = sorted(measured, key=lambda r: r.warm_chunks_per_s or 0.0)
    middle = ordered[(len(ordered) - 1) // 2]
    return replace(middle, chunks_per_s=_median([r.chunks_per_s for r in rounds]),
                   rounds_warm=tuple(r.warm_chunks_per_s for r in rounds),
                   rounds_with_start=tuple(r.chunks_per_s for r in rounds))


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return known[(len(known) - 1) // 2] if known else None


def measure_scale_ingest(dataset: Path | None, n_docs: int, work: Path, cores: int, models: Path | None = None,
                         say: Say = lambda m: None, rounds: int = ROUNDS) -> ScaleIngest:
    """Local, Ray 1 actor x ``cores`` CPUs and Ray ``cores`` actors x 1 CPU on the same corpus (see the module)."""
    missing = ray_missing()
    if missing is not None:
        return ScaleIngest(skipped=missing)
    corpus = write_corpus(dataset, n_docs, work / "corpus")
    small = write_corpus(dataset, min(SMALL_DOCS, n_docs), work / "corpus-small")
    configs: list[tuple[str, int | None, float | None]] = [("local", None, None), (f"ray 1x{cores}cpu", 1, float(cores))]
    if cores > 1:
        configs.append((f"ray {cores}x1cpu", cores, 1.0))
    say(f"scale: starting a {cores}-CPU Ray cluster")
    try:
        head = RayHead(cores).__enter__()
    except (RuntimeError, OSError) as exc:
        local = _measure_run("local", corpus, small, work / "local", models, {}, None, None, None)
        failed = [IngestRun(name, "ray", actors, cpus, error=f"the Ray cluster did not start: {failure(exc)}")
                  for name, actors, cpus in configs[1:]]
        return ScaleIngest((local, *failed), cores)
    measured: dict[str, list[IngestRun]] = {name: [] for name, _a, _c in configs}
    try:
        t = time.perf_counter()
        warm_env = {**head.env(), "RAG_RAY__EMBED_ACTORS": "1", "RAG_RAY__ACTOR_CPUS": str(float(cores))}
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, ValueError):
            _ingest(small, work / "warm", models, warm_env, head.address)  # untimed warm-up
        warmup = round(time.perf_counter() - t, 2)
        for round_no in range(1, max(1, rounds) + 1):
            for name, actors, cpus in configs:
                say(f"scale: {name} ingest of {n_docs} documents, round {round_no} of {rounds}")
                env: dict[str, str] = {}
                address = None
                if actors is not None:
                    env = {**head.env(), "RAG_RAY__EMBED_ACTORS": str(actors), "RAG_RAY__ACTOR_CPUS": str(cpus)}
                    address = head.address
                measured[name].append(_measure_run(name, corpus, small, work / name.replace(" ", "-"), models, env,
                                                   address, actors, cpus))
    finally:
        head.__exit__(None, None, None)
    return ScaleIngest(tuple(_median_run(measured[name]) for name, _a, _c in configs), cores, head.start_s, warmup)


# ------------------------------------------------------------------------------ search


def _load(settings: Settings, store: Store, name: str, versions: list, model_id: str, dim: int, shards: int) -> float:
    store.ensure_collection(name)
    store.update_collection_settings(name, {"embedding_model": model_id, "dim": dim, SHARDS_SETTING: shards})
    t = time.perf_counter()
    with CollectionWriter(settings, store, store.collection(name), model_id, dim) as writer:
        writer.load(versions)
    return round(time.perf_counter() - t, 2)


def _keys(reader: CollectionReader, ids: list[int]) -> list[tuple[str, int]]:
    rows = reader.store.hydrate(reader.info.id, ids)
    return [(rows[i].external_id, rows[i].ordinal) for i in ids if i in rows]


def _overlap(a: list[tuple[str, int]], b: list[tuple[str, int]]) -> float:
    return len(set(a) & set(b)) / max(len(a), 1)


def measure_sharded_search(settings: Settings, base: BaseCorpus, queries: QuerySet, n_chunks: int, shards: int,
                           n_queries: int, work: Path, embedder: Embedder, say: Say = lambda m: None) -> ShardedSearch:
    """Build ``n_chunks`` chunks in 1 and ``shards`` shards and time BM25, dense and hybrid on both, interleaved."""
    level = make_level(base, n_chunks)
    # One index kind for both: under "auto" a 25k-chunk shard would be flat (exact) and the 100k one HNSW.
    dense = settings.dense.model_copy(update={"index": "hnsw"})
    s = settings.model_copy(update={"data_dir": work / "data-shards", "database_url": "", "dense": dense})
    store = Store(s.sqlalchemy_url)
    labels = ("1", str(shards))
    try:
        versions = level_versions(level)
        build, readers = {}, {}
        for label in labels:
            say(f"scale: {level.n} chunks in {label} shard(s) — building")
            build[label] = _load(s, store, f"scale-{label}", versions, embedder.model_id, embedder.dim, int(label))
            readers[label] = CollectionReader(s, store, store.collection(f"scale-{label}"), embedder)
        del versions
        hybrid = {k: HybridRetriever(r, s.retrieval) for k, r in readers.items()}
        texts, vectors = cycle(queries.texts, n_queries), cycle(list(queries.vectors), n_queries)
        lat: dict[str, dict[str, list[float]]] = {k: {st: [] for st in STAGES} for k in labels}
        top: dict[str, dict[str, list[list[int]]]] = {k: {st: [] for st in STAGES} for k in labels}
        say(f"scale: {len(texts)} queries, 1 shard and {shards} shards alternating")
        with query_threads():
            for i, (text, vec) in enumerate(zip(texts, vectors, strict=True)):
                q = Query(text, vec)
                for label in labels if i % 2 == 0 else labels[::-1]:
                    r = readers[label]
                    restriction = r.restriction(None)
                    calls = {"bm25": lambda r=r: r.bm25_retriever.hits(q, restriction, CANDIDATES),
                             "dense": lambda r=r: r.dense_retriever.hits(q, restriction, CANDIDATES),
                             "hybrid": lambda label=label: hybrid[label].run(q, candidates=CANDIDATES, hydrate=TOP_K)}
                    for stage, call in calls.items():
                        t = time.perf_counter()
                        out = call()
                        ms = (time.perf_counter() - t) * 1000.0
                        if i >= WARM_UP:
                            lat[label][stage].append(ms)
                            hits = out.fused if stage == "hybrid" else out
                            ids = [getattr(h, "chunk", h).chunk_id for h in hits]
                            top[label][stage].append(ids[:TOP_K])
        overlap = {}
        for stage in STAGES:
            a, b = top[labels[0]][stage], top[labels[1]][stage]
            r0, r1 = readers[labels[0]], readers[labels[1]]
            vals = [_overlap(_keys(r0, x), _keys(r1, y)) for x, y in zip(a, b, strict=True)]
            overlap[stage] = round(sum(vals) / len(vals), 4) if vals else 0.0
        kinds = {k: _dense_kind(r) for k, r in readers.items()}
        return ShardedSearch(level.n, shards, len(texts) - min(WARM_UP, len(texts)), build, kinds,
                             {k: {st: LatencyStats.of(v) for st, v in d.items()} for k, d in lat.items()}, overlap)
    finally:
        store.close()


def _dense_kind(reader: CollectionReader) -> str:
    """The FAISS index kind, or each shard's kinds joined by ``/``."""
    if reader.fanout is None:
        return reader.dense.kind
    kinds = sorted({getattr(getattr(x, "dense", None), "kind", "?") for x in getattr(reader.fanout, "shards", [])})
    return "/".join(kinds) or "?"


# ------------------------------------------------------------------------------ the stage


def measure_scale(settings: Settings, base: BaseCorpus, queries: QuerySet, embedder: Embedder, work: Path, *,
                  dataset: Path | None, ingest_docs: int, chunks: int, shards: int, n_queries: int, cores: int,
                  ingest_rounds: int = ROUNDS, say: Say = lambda m: None) -> ScaleResult:
    """The ``scale`` stage: :func:`measure_scale_ingest` (when ``ingest_docs``) and :func:`measure_sharded_search`."""
    t = time.perf_counter()
    ingest = None
    if ingest_docs:
        ingest = measure_scale_ingest(dataset, ingest_docs, work / "scale-ingest", cores,
                                      settings.embedding.cache_dir, say, ingest_rounds)
    search, error = None, None
    if chunks:
        try:
            search = measure_sharded_search(settings, base, queries, chunks, shards, n_queries, work / "scale-search",
                                            embedder, say)
        except Exception as exc:  # noqa: BLE001 - the report says what failed; the other stages stand
            error = failure(exc)
    return ScaleResult(ingest, search, error, round(time.perf_counter() - t, 1))


def scale_ratios(scale: ScaleResult | None) -> tuple[Ratio, ...]:
    """The stage's ratios for ``bench.json``'s ``ratios``: Ray / local chunks/s and sharded / 1-shard p50."""
    if scale is None:
        return ()
    out: list[Ratio] = []
    if scale.ingest is not None and scale.ingest.skipped is None:
        out += [Ratio("ingest", name, v) for name, v in scale.ingest.ratios().items()]
    if scale.search is not None:
        where = f"{scale.search.chunks} chunks, {scale.search.shards} vs 1 shard"
        out += [Ratio(where, f"{stage} p50 {scale.search.shards} shards / 1 shard", v)
                for stage, v in scale.search.ratios().items()]
    return tuple(out)
