"""The admin endpoints over a real store, embedder and ingestion: who may call them, collections, uploads as jobs, busy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.admin import Job
from indexer.admin import open_writer
from indexer.service import AdminOperations
from rag.config import Settings, load_settings
from rag.index.store import Store
from rag.pipeline import RagPipeline

LOCAL = ("127.0.0.1", 50000)


def make_admin_client(settings: Settings, embedder, *, client=LOCAL, backend: bool = True) -> TestClient:  # noqa: ANN001
    """A TestClient addressed to 127.0.0.1 (as the page is), with the CLI's admin operations."""
    store = Store(settings.sqlalchemy_url)
    ops = AdminOperations(settings, store, embedder) if backend else None
    app = create_app(settings, RagPipeline(settings, store, embedder, None, None, None), ops)
    return TestClient(app, base_url="http://127.0.0.1:8000", client=client, raise_server_exceptions=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", reranker={"model": ""}, ingest={"max_file_bytes": 4000})


@pytest.fixture
def admin(settings: Settings, embedder) -> TestClient:  # noqa: ANN001
    return make_admin_client(settings, embedder)


def wait_for(client: TestClient, job_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/admin/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def upload(client: TestClient, collection: str, files: list[tuple[str, bytes]]):  # noqa: ANN201
    return client.post("/v1/admin/jobs", data={"collection": collection}, files=[("files", (n, b)) for n, b in files])


def test_admin_is_refused_with_keys_configured(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    keyed = load_settings(data_dir=tmp_path / "k", reranker={"model": ""}, api_keys={"k1": ["alpha"]})
    client = make_admin_client(keyed, embedder)
    r = client.get("/v1/admin", headers={"Authorization": "Bearer k1"})
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "admin_forbidden" and "RAG_API_KEYS" in err["message"]
    assert client.post("/v1/admin/collections", json={"name": "x"}, headers={"Authorization": "Bearer k1"}).status_code == 403


@pytest.mark.parametrize(
    ("client", "headers", "said"),
    [
        (("10.1.2.3", 4000), {}, "only from this machine"),
        (LOCAL, {"Host": "rebound.example:8000"}, "addressed to 127.0.0.1"),
        (LOCAL, {"Origin": "http://evil.example"}, "another origin"),
        (LOCAL, {"Origin": "null"}, "another origin"),
    ],
)
def test_admin_is_refused_off_this_machine_or_cross_origin(settings, embedder, client, headers, said) -> None:  # noqa: ANN001
    c = make_admin_client(settings, embedder, client=client)
    r = c.post("/v1/admin/collections", json={"name": "x"}, headers=headers)
    assert r.status_code == 403 and said in r.json()["error"]["message"], r.text
    store = Store(settings.sqlalchemy_url)
    assert store.collections() == []  # nothing was created
    store.close()


def test_same_origin_page_may_administer(admin: TestClient) -> None:
    r = admin.post("/v1/admin/collections", json={"name": "ok"}, headers={"Origin": "http://127.0.0.1:8000"})
    assert r.status_code == 201, r.text


def test_admin_status_names_the_limits(admin: TestClient, settings: Settings) -> None:
    body = admin.get("/v1/admin").json()
    assert body["limits"]["max_file_bytes"] == 4000
    assert body["limits"]["max_upload_bytes"] == 4000 + settings.api.max_body_bytes
    assert ".md" in body["limits"]["formats"] and ".pdf" in body["limits"]["formats"]


def test_without_admin_operations_the_endpoints_say_503(settings: Settings, embedder) -> None:  # noqa: ANN001
    c = make_admin_client(settings, embedder, backend=False)
    r = c.get("/v1/admin/collections")
    assert r.status_code == 503 and "rag serve" in r.json()["error"]["message"]


def test_collections_are_created_listed_and_dropped(admin: TestClient) -> None:
    assert admin.post("/v1/admin/collections", json={"name": "notes"}).status_code == 201
    again = admin.post("/v1/admin/collections", json={"name": "notes"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "exists"
    bad = admin.post("/v1/admin/collections", json={"name": "../up"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "collection"
    listed = admin.get("/v1/admin/collections").json()["collections"]
    assert [(c["name"], c["documents"], c["chunks"], c["busy"]) for c in listed] == [("notes", 0, 0, False)]
    assert admin.get("/v1/collections").json()["collections"][0]["name"] == "notes"
    assert admin.delete("/v1/admin/collections/notes").json() == {"dropped": "notes"}
    assert admin.get("/v1/admin/collections").json()["collections"] == []
    assert admin.delete("/v1/admin/collections/notes").status_code == 404


def test_upload_runs_an_ingestion_job_with_per_file_failures(admin: TestClient) -> None:
    admin.post("/v1/admin/collections", json={"name": "notes"})
    good = b"# Harbour\n\nThe Quillon harbour crane lifts forty tonnes and was painted green in 2019.\n"
    r = upload(admin, "notes", [
        ("crane.md", good),
        ("tool.exe", b"MZ\x90\x00"),
        ("huge.txt", b"word " * 1000),  # 5,000 bytes: over the 4,000-byte file limit
        ("../..", b"x"),
    ])
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["files"] == ["crane.md", "tool.exe", "huge.txt", "../.."]
    job = wait_for(admin, job["id"])
    assert job["status"] == "done", job
    assert job["documents_added"] == 1 and job["chunks_added"] >= 1
    reasons = {f["file"]: f["reason"] for f in job["failures"]}
    assert set(reasons) == {"tool.exe", "huge.txt", "../.."}, reasons
    assert "unsupported file type .exe" in reasons["tool.exe"]
    assert "RAG_INGEST__MAX_FILE_BYTES" in reasons["huge.txt"], reasons["huge.txt"]
    assert reasons["../.."] == "unusable file name"
    assert job["documents_failed"] == 3 and job["progress"]["files_done"] >= 1
    assert admin.get("/v1/admin/jobs").json()["jobs"][0]["id"] == job["id"]

    found = admin.post("/v1/search", json={"query": "Quillon harbour crane tonnes", "collection": "notes", "top_k": 3}).json()
    assert found["results"] and "forty tonnes" in found["results"][0]["text"]
    docs = admin.get("/v1/admin/collections/notes/documents").json()["documents"]
    assert [(d["title"], d["state"]) for d in docs] == [("Harbour", "active")] and docs[0]["chunks"] >= 1
    assert docs[0]["source"].endswith("/uploads/notes/crane.md")
    stats = admin.get("/v1/admin/collections/notes").json()
    assert stats["documents"] == 1 and stats["vectors"] == stats["chunks"] >= 1

    # the source view's text: the document put back together from its chunks
    text = admin.get(f"/v1/collections/notes/documents/{found['results'][0]['document_id']}").json()
    hit = found["results"][0]
    assert text["text"][hit["char_start"] : hit["char_end"]] == hit["text"]
    assert "forty tonnes" in text["text"] and text["title"] == "Harbour"

    gone = admin.delete(f"/v1/admin/collections/notes/documents/{docs[0]['id']}")
    assert gone.json() == {"deleted": 1}
    assert admin.delete(f"/v1/admin/collections/notes/documents/{docs[0]['id']}").status_code == 404
    after = admin.post("/v1/search", json={"query": "Quillon harbour crane", "collection": "notes"}).json()
    assert after["results"] == []
    assert admin.get(f"/v1/collections/notes/documents/{docs[0]['id']}").status_code == 404


def test_reuploading_a_file_updates_its_document(admin: TestClient) -> None:
    admin.post("/v1/admin/collections", json={"name": "notes"})
    wait_for(admin, upload(admin, "notes", [("a.txt", b"The first version mentions aubergines.")]).json()["id"])
    job = wait_for(admin, upload(admin, "notes", [("a.txt", b"The second version mentions artichokes.")]).json()["id"])
    assert (job["documents_added"], job["documents_updated"]) == (0, 1)
    docs = admin.get("/v1/admin/collections/notes/documents").json()["documents"]
    assert len(docs) == 1


def test_a_second_writer_is_refused_as_busy(admin: TestClient, settings: Settings) -> None:
    admin.post("/v1/admin/collections", json={"name": "notes"})
    service = admin.app.state.admin_service
    # A job of this server holds the collection: a second upload, a delete and a drop are 409 busy at once.
    holder = Job("running1", "notes", ["x.txt"], service.upload_dir("notes"))
    service.jobs.claim(holder)
    try:
        for r in (
            upload(admin, "notes", [("b.txt", b"text")]),
            admin.delete("/v1/admin/collections/notes"),
            admin.delete("/v1/admin/collections/notes/documents/1"),
        ):
            assert r.status_code == 409 and r.json()["error"]["code"] == "busy", r.text
            assert "running1" in r.json()["error"]["message"]
        assert admin.get("/v1/admin/collections/notes").json()["busy"] is True
    finally:
        service.jobs.release(holder)
    # Another process's writer (here: a writer held open) makes the job fail as busy, naming why.
    store = Store(settings.sqlalchemy_url)
    with open_writer(settings, store, "notes"):
        job = wait_for(admin, upload(admin, "notes", [("c.txt", b"The harbour has a crane.")]).json()["id"])
    store.close()
    assert job["status"] == "failed" and job["error"]["code"] == "busy", job
    assert "another process" in job["error"]["message"]
    # and the collection is free again afterwards
    job = wait_for(admin, upload(admin, "notes", [("c.txt", b"The harbour has a crane.")]).json()["id"])
    assert job["status"] == "done" and job["documents_added"] == 1


def test_upload_limits(admin: TestClient, settings: Settings) -> None:
    admin.post("/v1/admin/collections", json={"name": "notes"})
    too_big = upload(admin, "notes", [("big.txt", b"x" * (4000 + settings.api.max_body_bytes + 10))])
    assert too_big.status_code == 413
    assert upload(admin, "nowhere", [("a.txt", b"text")]).status_code == 404
    none = admin.post("/v1/admin/jobs", data={"collection": "notes"})
    assert none.status_code == 422
    assert admin.get("/v1/admin/jobs/nope").status_code == 404


def test_document_text_respects_key_scopes(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    open_settings = load_settings(data_dir=tmp_path / "d", reranker={"model": ""})
    c = make_admin_client(open_settings, embedder)
    for name in ("alpha", "beta"):
        c.post("/v1/admin/collections", json={"name": name})
        wait_for(c, upload(c, name, [(f"{name}.txt", f"The {name} notes mention a lighthouse.".encode())]).json()["id"])
    beta_doc = c.get("/v1/admin/collections/beta/documents").json()["documents"][0]["id"]
    # the id of beta's document is not in alpha
    assert c.get(f"/v1/collections/alpha/documents/{beta_doc}").status_code == 404
    keyed = make_admin_client(load_settings(**{**open_settings.model_dump(), "api_keys": {"k": ["alpha"]}}), embedder)
    r = keyed.get(f"/v1/collections/beta/documents/{beta_doc}", headers={"Authorization": "Bearer k"})
    assert r.status_code == 403
    assert keyed.get(f"/v1/collections/beta/documents/{beta_doc}").status_code == 401
