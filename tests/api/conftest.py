"""API fixtures: a real pipeline over a small corpus, a real llama.cpp generator."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from indexer.pipeline import Ingestor
from rag.config import Settings, load_settings
from rag.generation.client import Generator
from rag.runtime.llama_server import LocalLlamaServer
from rag.index.store import Store
from rag.pipeline import RagPipeline

GUIDE = {
    "alpha": [
        {"_id": "a1", "title": "Lighthouse keeping", "text": "The Tarbet lighthouse was built in 1887. Its lamp is visible for 22 nautical miles."},
        {"_id": "a2", "title": "Fog signals", "text": "A fog horn at Tarbet sounds twice every 60 seconds when visibility is poor."},
        {"_id": "a3", "title": "Keepers", "text": "The last keeper of Tarbet lighthouse, Morag Innes, retired in 1998 when the light was automated."},
    ],
    "beta": [
        {"_id": "b1", "title": "Secret recipe", "text": "The beta collection recipe uses saffron, cardamom and rose water in equal parts."},
        {"_id": "b2", "title": "Storage", "text": "Keep saffron in an airtight jar away from light for up to two years."},
    ],
}


@pytest.fixture(scope="session")
def local_generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp OpenAI-compatible server with the packaged Qwen2.5 0.5B GGUF."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (extra 'local')")
    data = tmp_path_factory.mktemp("gen")
    settings = load_settings(data_dir=Path("/tmp/rag-test-models"))
    server = LocalLlamaServer(settings.generator, settings.data_dir, log_path=data / "llama.log")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def build_corpus(settings: Settings, store: Store, embedder, root: Path) -> None:  # noqa: ANN001
    """Ingest the two test collections."""
    for name, docs in GUIDE.items():
        path = root / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        Ingestor(settings, store, embedder, name).ingest([path])


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # noqa: ANN001
    """Settings of a data dir holding collections alpha and beta."""
    root = tmp_path_factory.mktemp("api")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""})
    store = Store(settings.sqlalchemy_url)
    build_corpus(settings, store, embedder, root)
    store.close()
    return settings


def make_client(settings: Settings, embedder, generator_url: str | None, **overrides) -> TestClient:  # noqa: ANN001, ANN003
    """A TestClient over a real pipeline; ``overrides`` replace settings fields."""
    if overrides:
        settings = load_settings(**{**settings.model_dump(), **overrides})
    store = Store(settings.sqlalchemy_url)
    gen = Generator(settings.generator, base_url=generator_url) if generator_url else None
    pipeline = RagPipeline(settings, store, embedder, None, None, gen)
    return TestClient(create_app(settings, pipeline), raise_server_exceptions=False)


def _sent_strings(value: object) -> list[str]:
    """The texts of a JSON request body that a user wrote: strings with a space in them."""
    if isinstance(value, str):
        return [value] if " " in value.strip() and len(value) >= 8 else []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _sent_strings(v)]
    if isinstance(value, list):
        return [t for v in value for t in _sent_strings(v)]
    return []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_content_in_logs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Records]:
    """Fail a test whose log lines, at the service's default INFO level, hold a query or a document's text.

    Every JSON body sent through a ``TestClient`` is read for the texts a user wrote (questions,
    messages, history); the documents are the test collections' texts. Tests that turn
    ``RAG_LOG_QUERIES`` on say so with the ``logs_queries`` marker.
    """
    sent: list[str] = []
    send = TestClient.send

    def recording(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN202 - httpx passes request by name
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                sent.extend(_sent_strings(json.loads(request.read() or b"null")))
            except ValueError:
                pass
        return send(self, request, **kwargs)

    monkeypatch.setattr(TestClient, "send", recording)
    records = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.INFO)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    if request.node.get_closest_marker("logs_queries"):
        return
    texts = set(sent) | {d["text"] for docs in GUIDE.values() for d in docs}
    logged = "\n".join(records.lines)
    leaked = sorted(t for t in texts if t in logged)
    assert not leaked, f"the log holds request or document text: {[t[:60] for t in leaked]}"
