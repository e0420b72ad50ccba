"""A redacting collection over REST: created with ``redact``, fed by upload, searched; no original is kept."""

from __future__ import annotations

import json
from pathlib import Path

from rag.config import load_settings
from tests.api.test_admin_routes import make_admin_client, upload, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pii"
VALUES = json.loads((FIXTURES / "values.json").read_text())
VALID = [v for values in VALUES["valid"].values() for v in values]


def test_an_uploaded_file_is_redacted_and_not_kept(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    settings = load_settings(data_dir=tmp_path / "data", reranker={"model": ""})
    admin = make_admin_client(settings, embedder)
    bad = admin.post("/v1/admin/collections", json={"name": "private", "redact": ["email", "ssn"]})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "redact"
    assert "valid kinds: email, phone, credit_card, iban, ip" in bad.json()["error"]["message"]
    made = admin.post("/v1/admin/collections", json={"name": "private", "redact": ["email", "phone", "credit_card", "iban", "ip"]})
    assert made.status_code == 201 and made.json()["redact"] == ["email", "phone", "credit_card", "iban", "ip"]
    listed = admin.get("/v1/admin/collections").json()["collections"]
    assert [(c["name"], c["redact"]) for c in listed] == [("private", ["email", "phone", "credit_card", "iban", "ip"])]

    job = wait_for(admin, upload(admin, "private", [("contacts.md", (FIXTURES / "contacts.md").read_bytes())]).json()["id"])
    assert job["status"] == "done" and job["documents_added"] == 1, job
    assert not (settings.data_dir / "uploads" / "private" / "contacts.md").exists(), "the original upload is not kept"

    found = admin.post("/v1/search", json={"query": "London desk phone and wire transfers", "collection": "private"})
    body = found.text
    assert found.status_code == 200 and "[PHONE]" in body and "[IBAN]" in body
    doc = admin.get(f"/v1/collections/private/documents/{found.json()['results'][0]['document_id']}").text
    for value in VALID:
        assert value not in body and value not in doc
    assert "4111 1111 1111 1112" in doc, "a look-alike is kept"


def test_ask_over_rest_cannot_repeat_a_redacted_value_streamed_or_not(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from api.main import create_app
    from indexer.pipeline import Ingestor
    from rag.index.store import Store
    from rag.pipeline import RagPipeline
    from tests.rag.test_answering import PlantedGenerator

    settings = load_settings(data_dir=tmp_path / "data", reranker={"model": ""}, verifier={"abstain_unsupported": False})
    store = Store(settings.sqlalchemy_url)
    store.ensure_collection("private")
    store.update_collection_settings("private", {"redact": ["email", "phone"]})
    (tmp_path / "desk.md").write_text("# Help desk\n\nThe help desk answers mail at zelda.quux@example.com on weekdays.\n")
    Ingestor(settings, store, embedder, "private").ingest([tmp_path / "desk.md"])
    reply = "Mail the help desk at zelda.quux@example.com on weekdays [1]. Or call +44 20 7946 0958 [1]."
    app = create_app(settings, RagPipeline(settings, store, embedder, generator=PlantedGenerator(reply)), None)
    client = TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000))
    ask = {"query": "How do I mail the help desk?", "collection": "private", "top_k": 1}

    plain = client.post("/v1/ask", json=ask)
    assert plain.status_code == 200, plain.text
    assert "zelda" not in plain.text and "7946" not in plain.text and "[EMAIL]" in plain.json()["answer"]
    assert plain.json()["pipeline"]["privacy"] == {"action": "removed", "kinds": {"email": 1, "phone": 1}}
    streamed = client.post("/v1/ask", json={**ask, "stream": True})
    assert streamed.status_code == 200 and "event: token" in streamed.text
    assert "zelda" not in streamed.text and "7946" not in streamed.text and "[PHONE]" in streamed.text
    store.close()
