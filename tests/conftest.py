"""Shared fixtures: real models, real databases (SQLite and PostgreSQL), small corpora."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag.config import Settings, load_settings
from rag.embedding import Embedder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
PG_URL = os.environ.get("RAG_TEST_POSTGRES_URL", "")

# Every test (and the rag processes tests start) shares one ONNX export of the embedder instead of
# exporting again under each temporary data dir; entries are keyed by the weights, so reuse is safe.
os.environ.setdefault("RAG_EMBEDDING__CACHE_DIR", str(Path(tempfile.gettempdir()) / "rag-tests-models"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared, or skip the test with the reason."""
    path = SHARED / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"dataset {name} not available at {path} (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real offline MiniLM embedder, loaded once."""
    return Embedder(load_settings().embedding).warm_up()


def _postgres_database() -> Iterator[str]:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("RAG_TEST_POSTGRES_URL is not set in CI: the PostgreSQL tests must run")
        pytest.skip("RAG_TEST_POSTGRES_URL not set (run through scripts/test.sh to start PostgreSQL)")
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database: SQLite in a temp dir, then a real PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rag.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def make_settings(tmp_path: Path):  # noqa: ANN201
    """Build settings under a temp data dir; keyword overrides win."""

    def build(db: str | None = None, **overrides) -> Settings:  # noqa: ANN003
        kw = {"data_dir": tmp_path / "data", "reranker": {"model": ""}}
        if db:
            kw["database_url"] = db
        kw.update(overrides)
        return load_settings(**kw)

    return build


@pytest.fixture
def rag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``rag ARGS...`` in this process, in ``tmp_path`` with its data dir there; returns (code, stdout, stderr).

    A module that wants the session's embedder in the command overrides this fixture with
    :func:`use_session_embedder`.
    """
    import cli.main

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["rag", *args])
        try:
            cli.main.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def use_session_embedder(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> None:
    """Make ``rag`` commands run in this process use the already loaded embedder, and no reranker."""
    monkeypatch.setenv("RAG_RERANKER__MODEL", "")
    monkeypatch.setattr("rag.embedding.Embedder", lambda config: embedder)


@pytest.fixture(scope="session")
def ray_cluster():  # noqa: ANN201
    """A real two-node Ray cluster on this machine (a head and one more raylet), shared by the session."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
