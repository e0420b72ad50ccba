"""Managed API keys over HTTP: scopes per route, collections, revocation seen by a running server, expiry,
rate limits (429 + Retry-After), the bootstrap keys, and the audit log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from indexer.service import AdminOperations
from rag.config import Settings, load_settings
from rag.index.store import Store, utcnow
from rag.pipeline import RagPipeline
from rag.security.keys import KeyRing
from tests.api.conftest import build_corpus

REPO = Path(__file__).resolve().parents[2]
LOCAL = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # noqa: ANN001
    """Settings of a data dir with collections alpha and beta, and a bootstrap key for alpha."""
    root = tmp_path_factory.mktemp("keys")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""}, api_keys={"boot-alpha": ["alpha"]})
    store = Store(settings.sqlalchemy_url)
    build_corpus(settings, store, embedder, root)
    store.close()
    return settings


def client_for(settings: Settings, embedder, **overrides) -> TestClient:  # noqa: ANN001, ANN003
    """A TestClient with the admin operations; ``overrides`` replace settings fields."""
    if overrides:
        settings = load_settings(**{**settings.model_dump(), **overrides})
    store = Store(settings.sqlalchemy_url)
    app = create_app(settings, RagPipeline(settings, store, embedder, None, None, None), AdminOperations(settings, store, embedder))
    return TestClient(app, base_url="http://127.0.0.1:8000", client=LOCAL, raise_server_exceptions=False)


def make_key(settings: Settings, **kw) -> tuple[str, int]:  # noqa: ANN003
    store = Store(settings.sqlalchemy_url)
    made = KeyRing(store).create(**kw)
    store.close()
    return made.key, made.info.id


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _search(c: TestClient, key: str | None, collection: str) -> httpx.Response:
    return c.post("/v1/search", json={"query": "lighthouse", "collection": collection}, headers=bearer(key) if key else {})


def test_scopes_and_collections_per_route(keyed: Settings, embedder) -> None:  # noqa: ANN001
    read, _ = make_key(keyed, collections=["alpha"], scope="read")
    write, _ = make_key(keyed, collections=["alpha"], scope="write")
    admin, _ = make_key(keyed, collections=["alpha", "gamma"], scope="admin")
    c = client_for(keyed, embedder)
    beta_doc = c.get("/v1/admin/collections/beta/documents", headers=bearer(make_key(keyed, collections=["beta"], scope="write")[0]))
    beta_doc_id = beta_doc.json()["documents"][0]["id"]

    # read: search, ask-side routes on its collections only; no admin route at all
    assert _search(c, read, "alpha").status_code == 200
    r = _search(c, read, "beta")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert [x["name"] for x in c.get("/v1/collections", headers=bearer(read)).json()["collections"]] == ["alpha"]
    for method, path in [("GET", "/v1/admin"), ("GET", "/v1/admin/collections"), ("POST", "/v1/admin/collections"),
                         ("DELETE", "/v1/admin/collections/alpha"), ("GET", "/v1/admin/jobs")]:
        r = c.request(method, path, headers=bearer(read), json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "admin_forbidden" and "needs scope" in r.json()["error"]["message"]

    # write: upload, list and delete documents of its collection; not beta's, and no collection create/drop
    h = bearer(write)
    assert c.get("/v1/admin", headers=h).status_code == 200
    assert [x["name"] for x in c.get("/v1/admin/collections", headers=h).json()["collections"]] == ["alpha"]
    assert c.get("/v1/admin/collections/alpha", headers=h).status_code == 200
    assert c.get("/v1/admin/collections/beta", headers=h).status_code == 403
    assert c.get("/v1/admin/collections/beta/documents", headers=h).status_code == 403
    assert c.delete(f"/v1/admin/collections/beta/documents/{beta_doc_id}", headers=h).status_code == 403
    up = c.post("/v1/admin/jobs", data={"collection": "beta"}, files=[("files", ("x.txt", b"beta upload"))], headers=h)
    assert up.status_code == 403
    up = c.post("/v1/admin/jobs", data={"collection": "alpha"}, files=[("files", ("x.txt", b"The lamp was cleaned."))], headers=h)
    assert up.status_code == 202, up.text
    assert [j["collection"] for j in c.get("/v1/admin/jobs", headers=h).json()["jobs"]] == ["alpha"]
    assert c.post("/v1/admin/collections", json={"name": "alpha2"}, headers=h).status_code == 403
    assert c.delete("/v1/admin/collections/alpha", headers=h).status_code == 403

    # admin: create and drop collections named in its key, not others
    h = bearer(admin)
    assert c.post("/v1/admin/collections", json={"name": "gamma"}, headers=h).status_code == 201
    assert c.post("/v1/admin/collections", json={"name": "delta"}, headers=h).status_code == 403
    assert c.delete("/v1/admin/collections/gamma", headers=h).status_code == 200
    assert c.delete("/v1/admin/collections/beta", headers=h).status_code == 403
    assert c.get("/v1/collections/beta/documents/1", headers=h).status_code == 403

    # the bootstrap key of RAG_API_KEYS still reads, and is read-only
    assert _search(c, "boot-alpha", "alpha").status_code == 200
    assert _search(c, "boot-alpha", "beta").status_code == 403
    r = c.get("/v1/admin", headers=bearer("boot-alpha"))
    assert r.status_code == 403 and "RAG_API_KEYS" in r.json()["error"]["message"]
    # no key, or a wrong one
    assert _search(c, None, "alpha").status_code == 401
    assert _search(c, "rag_" + "x" * 43, "alpha").json()["error"]["code"] == "invalid_api_key"


def test_managed_keys_alone_make_the_server_require_keys(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    settings = load_settings(data_dir=tmp_path / "data", reranker={"model": ""})
    c = client_for(settings, embedder)
    assert c.get("/v1/collections").status_code == 200  # no keys at all: open, as before
    key, key_id = make_key(settings, collections=["*"], scope="admin")
    time.sleep(0.6)  # the server's cache of "are there keys?"
    assert c.get("/v1/collections").status_code == 401
    assert c.get("/v1/collections", headers=bearer(key)).status_code == 200
    assert c.post("/v1/admin/collections", json={"name": "fresh"}, headers=bearer(key)).status_code == 201
    store = Store(settings.sqlalchemy_url)
    KeyRing(store).revoke(key_id)
    store.close()
    time.sleep(0.6)
    # revoking the last key does not open the server again
    assert c.get("/v1/collections").status_code == 401
    assert c.get("/v1/collections", headers=bearer(key)).json()["error"]["code"] == "revoked_api_key"


def test_an_expired_key_is_refused(keyed: Settings, embedder) -> None:  # noqa: ANN001
    key, _ = make_key(keyed, collections=["alpha"], expires_in=timedelta(seconds=1))
    c = client_for(keyed, embedder)
    assert _search(c, key, "alpha").status_code == 200
    time.sleep(1.1)
    r = _search(c, key, "alpha")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "expired_api_key" and "expired at" in r.json()["error"]["message"]


def test_a_key_over_its_rate_gets_429_with_retry_after(keyed: Settings, embedder) -> None:  # noqa: ANN001
    key, _ = make_key(keyed, collections=["alpha"], rate="3/m")
    other, _ = make_key(keyed, collections=["alpha"], rate="3/m")
    c = client_for(keyed, embedder)
    assert [c.get("/v1/collections", headers=bearer(key)).status_code for _ in range(3)] == [200, 200, 200]
    r = c.get("/v1/collections", headers=bearer(key))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited" and "3/m" in r.json()["error"]["message"]
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 20  # one token of 3 per minute comes back within 20 s
    assert c.get("/v1/collections", headers=bearer(other)).status_code == 200  # buckets are per key


def test_every_v1_call_is_audited_without_query_text(keyed: Settings, embedder) -> None:  # noqa: ANN001
    key, key_id = make_key(keyed, collections=["alpha"])
    c = client_for(keyed, embedder)
    started = utcnow()  # the module's earlier apps share this database and flush their own rows on their own time
    _search(c, key, "alpha")
    _search(c, key, "beta")
    c.get("/v1/collections/alpha/documents/1", headers=bearer(key))
    c.get("/health")
    c.get("/v1/collections", headers=bearer("wrong"))
    audit = c.app.state.audit
    audit.flush()
    rows = [r for r in audit.rows(50) if r.created_at >= started and (r.key_id == key_id or (r.key_id is None and r.status == 401))]
    assert [(r.method, r.route, r.collection, r.status) for r in reversed(rows)] == [
        ("POST", "/v1/search", "alpha", 200),
        ("POST", "/v1/search", "beta", 403),
        ("GET", "/v1/collections/{name}/documents/{document_id}", "alpha", 200),
        ("GET", "/v1/collections", None, 401),
    ]
    assert all(r.query is None for r in audit.rows(1000))
    assert not [r for r in audit.rows(1000) if r.route == "/health"]
    # with RAG_API__AUDIT_QUERIES on, the text is kept
    c2 = client_for(keyed, embedder, api={"audit_queries": True})
    _search(c2, key, "alpha")
    c2.app.state.audit.flush()
    mine = [r for r in c2.app.state.audit.rows(50) if r.key_id == key_id]
    assert (mine[0].route, mine[0].status, mine[0].query) == ("/v1/search", 200, "lighthouse")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running(keyed: Settings, embedder) -> Iterator[str]:  # noqa: ANN001
    """A real uvicorn server over the keyed data dir, in a thread."""
    import uvicorn

    store = Store(keyed.sqlalchemy_url)
    app = create_app(keyed, RagPipeline(keyed, store, embedder, None, None, None))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def _rag(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_a_key_made_by_rag_keys_create_is_refused_within_1s_of_rag_keys_revoke(keyed: Settings, running: str) -> None:
    made = _rag(keyed, "keys", "create", "--collections", "alpha", "--name", "live")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("rag_") and "shown only once" in made.stderr
    key_id = next(int(line.split()[1]) for line in made.stderr.splitlines() if line.startswith("key "))
    with httpx.Client(base_url=running, timeout=10) as http:
        def status(collection: str) -> int:
            return http.post("/v1/search", json={"query": "lamp", "collection": collection}, headers=bearer(key)).status_code

        assert status("alpha") == 200 and status("beta") == 403
        assert http.get("/v1/admin", headers=bearer(key)).status_code == 403  # read scope
        assert _rag(keyed, "keys", "revoke", str(key_id)).returncode == 0
        revoked = time.monotonic()
        while status("alpha") != 401:
            time.sleep(0.02)
        took = time.monotonic() - revoked
        print(f"SECURITY revoke_to_401_ms={took * 1000:.0f}")
        assert took < 1.0


def test_keys_over_rest_need_admin_and_never_mint_a_stronger_key(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    settings = load_settings(data_dir=tmp_path / "data", reranker={"model": ""})
    c = client_for(settings, embedder)
    # the local user of a server without keys makes the first one
    r = c.post("/v1/admin/keys", json={"collections": ["blue", "red"], "scope": "admin", "name": "ops"})
    assert r.status_code == 201, r.text
    root = r.json()
    assert root["key"].startswith("rag_") and root["prefix"] == root["key"][:12] and root["state"] == "active"
    time.sleep(0.6)
    assert c.get("/v1/admin/keys").status_code == 401  # now keys are required
    h = bearer(root["key"])
    listed = c.get("/v1/admin/keys", headers=h)
    assert listed.status_code == 200 and root["key"] not in listed.text and "hash" not in listed.text
    assert [k["name"] for k in listed.json()["keys"]] == ["ops"]

    r = c.post("/v1/admin/keys", json={"collections": ["blue"], "scope": "write", "rate": "5/s", "expires": "1h"}, headers=h)
    assert r.status_code == 201 and r.json()["rate"] == "5/s" and r.json()["expires_at"]
    writer = r.json()
    for body, param in [({"collections": ["green"]}, "collections"), ({"collections": ["*"]}, "collections")]:
        r = c.post("/v1/admin/keys", json=body, headers=h)
        assert (r.status_code, r.json()["error"]["param"]) == (403, param), r.text
    r = c.post("/v1/admin/keys", json={"collections": ["blue"], "expires": "3x"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["param"] == "expires"
    r = c.post("/v1/admin/keys", json={"collections": ["blue"], "scope": "write"}, headers=bearer(writer["key"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_forbidden"

    # a narrower admin sees and revokes only keys within its reach
    narrow = c.post("/v1/admin/keys", json={"collections": ["blue"], "scope": "admin"}, headers=h).json()
    assert [k["id"] for k in c.get("/v1/admin/keys", headers=bearer(narrow["key"])).json()["keys"]] == [writer["id"], narrow["id"]]
    assert c.delete(f"/v1/admin/keys/{root['id']}", headers=bearer(narrow["key"])).status_code == 404
    r = c.delete(f"/v1/admin/keys/{writer['id']}", headers=bearer(narrow["key"]))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    revoked = time.monotonic()
    while c.get("/v1/admin", headers=bearer(writer["key"])).status_code != 401:
        time.sleep(0.02)
    assert time.monotonic() - revoked < 1.0


def test_a_job_of_another_collection_is_not_found(keyed: Settings, embedder) -> None:  # noqa: ANN001
    alpha, _ = make_key(keyed, collections=["alpha"], scope="write")
    beta, _ = make_key(keyed, collections=["beta"], scope="write")
    c = client_for(keyed, embedder)
    job = c.post("/v1/admin/jobs", data={"collection": "alpha"}, files=[("files", ("j.txt", b"A keeper's log."))], headers=bearer(alpha))
    assert job.status_code == 202
    assert c.get(f"/v1/admin/jobs/{job.json()['id']}", headers=bearer(alpha)).status_code == 200
    r = c.get(f"/v1/admin/jobs/{job.json()['id']}", headers=bearer(beta))
    assert r.status_code == 404 and r.json()["error"]["param"] == "job_id"
    assert c.get("/v1/admin/jobs", headers=bearer(beta)).json()["jobs"] == []
