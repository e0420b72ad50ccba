"""Item 6: tenant isolation under random keys, collections and filters.

Four collections share one vocabulary (every document is about lighthouses), but each
document carries its collection's marker word. ``RAG_API_KEYS`` scopes keys to subsets
of them. 1,000+ random requests (search, feedback, chat, collections listing) with
random keys, including missing and unknown ones, random collections, including other
tenants' and missing ones, and random filters, including source prefixes of another
collection's file. Any chunk of another collection in a 200 is a leak; so is a 200
for a collection outside the key's scope. Figure: ``RELIABILITY isolation ...``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from indexer.pipeline import Ingestor
from rag.config import load_settings
from rag.index.store import Store
from tests.api.conftest import make_client

MARKERS = {"red": "zqruby", "green": "zqjade", "blue": "zqcobalt", "gold": "zqamber"}
KEYS = {
    "key-red": ["red"],
    "key-green": ["green"],
    "key-red-blue": ["red", "blue"],
    "key-all": ["red", "green", "blue", "gold"],
    "key-ghost": ["nosuch"],
}
TOPICS = ("lighthouse lamp", "fog horn", "keeper retired", "storm damage", "harbour pilot", "tide tables")


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("tenants")
    settings = load_settings(data_dir=root / "data", reranker={"model": ""}, api_keys=KEYS)
    store = Store(settings.sqlalchemy_url)
    sources = {}
    for name, marker in MARKERS.items():
        path = root / f"{name}.jsonl"
        docs = [
            {
                "_id": f"{name}-{i}",
                "title": f"{topic} {marker}",
                "text": f"{marker} note {i}: the {topic} of the {name} harbour lighthouse. {marker} confidential.",
                "metadata": {"tier": i % 2, "year": 2000 + i, "owner": name},
            }
            for i, topic in enumerate(TOPICS)
        ]
        path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        Ingestor(settings, store, embedder, name).ingest([path])
        sources[name] = str(path)
    chunk_ids = {}
    for name in MARKERS:
        info = store.collection(name)
        chunk_ids[name] = [int(c) for c in store.chunk_ids(info.id, ("active",))]
    store.close()
    return settings, sources, chunk_ids


def _filters(rng: random.Random, sources: dict[str, str]) -> dict | None:
    pick = rng.randrange(6)
    if pick == 0:
        return None
    if pick == 1:
        return {"source_prefix": rng.choice(list(sources.values()))}  # maybe another tenant's file
    if pick == 2:
        return {"source_prefix": str(Path(next(iter(sources.values()))).parent)}  # the folder holding every tenant
    if pick == 3:
        return {"metadata": {"owner": rng.choice([*MARKERS, "nobody"])}}
    if pick == 4:
        return {"metadata": {"tier": rng.choice([0, 1]), "year": {"gte": 2000 + rng.randrange(6)}}}
    return {"metadata": {"owner": {"in": rng.sample(list(MARKERS), 2)}}, "source_prefix": "/"}


def _query_request(client, kind: str, rng: random.Random, query: str, col: str, top_ks: list[int],  # noqa: ANN001, ANN202
                   sources: dict[str, str], chunk_ids: dict[str, list[int]], headers: dict[str, str]):
    """A search (random filters) or a feedback on a random tenant's chunk, as a random caller sends it."""
    if kind == "search":
        return client.post("/v1/search", json={"query": query, "collection": col, "top_k": rng.choice(top_ks),
                                               "filters": _filters(rng, sources)}, headers=headers)
    victim = rng.choice(list(MARKERS))
    return client.post("/v1/feedback", json={"query": query, "collection": col, "chunk_id": rng.choice(chunk_ids[victim]),
                                             "relevant": True}, headers=headers)


def test_random_keys_collections_and_filters_never_leak(tenants, embedder) -> None:  # noqa: ANN001
    settings, sources, chunk_ids = tenants
    client = make_client(settings, embedder, None)
    rng = random.Random(42)
    owner_of_chunk = {cid: name for name, ids in chunk_ids.items() for cid in ids}
    keys = [*KEYS, "wrong-key", None]
    collections = [*MARKERS, "nosuch", "default"]
    counts: Counter[str] = Counter()
    leaks: list[str] = []
    n = 1000
    for i in range(n):
        key = rng.choices(keys, weights=[20, 20, 20, 20, 5, 5, 5])[0]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        scope = set(KEYS.get(key, [])) if key else set()
        # Mostly a collection the key may read (so results flow), often one it may not.
        col = rng.choice(sorted(scope & set(MARKERS))) if scope & set(MARKERS) and rng.random() < 0.6 else rng.choice(collections)
        # Queries name another tenant's marker word on purpose: the words exist, just elsewhere.
        other = rng.choice(list(MARKERS.values()))
        query = f"{rng.choice(TOPICS)} {other} confidential"
        kind = rng.choices(["search", "feedback", "chat", "list"], weights=[70, 15, 10, 5])[0]
        if kind in ("search", "feedback"):
            r = _query_request(client, kind, rng, query, col, [1, 5, 20, 100], sources, chunk_ids, headers)
        elif kind == "chat":
            r = client.post("/v1/chat/completions", json={"model": col, "messages": [{"role": "user", "content": query}]}, headers=headers)
        else:
            r = client.get("/v1/collections", headers=headers)
        counts[f"{kind} {r.status_code}"] += 1
        if key not in KEYS:
            if r.status_code != 401:
                leaks.append(f"#{i} {kind} with key {key!r} answered {r.status_code}")
            continue
        if kind == "list":
            names = {c["name"] for c in r.json()["collections"]}
            if not names <= scope:
                leaks.append(f"#{i} key {key} lists {names - scope}")
            continue
        if col not in scope:
            if r.status_code != 403:
                leaks.append(f"#{i} {kind} on {col} outside {key}'s scope answered {r.status_code}")
            continue
        if kind == "search" and r.status_code == 200:
            for res in r.json()["results"]:
                counts["chunks checked"] += 1
                wrong = [c for c, m in MARKERS.items() if m in res["text"] and c != col]
                if wrong or owner_of_chunk.get(res["chunk_id"]) != col:
                    leaks.append(f"#{i} search on {col} returned chunk {res['chunk_id']} of {wrong or owner_of_chunk.get(res['chunk_id'])}")
        elif kind == "feedback" and r.status_code == 200:
            counts["feedback accepted"] += 1
        elif r.status_code >= 500 and not (kind == "chat" and r.status_code == 503):
            leaks.append(f"#{i} {kind} on {col} answered {r.status_code}: {r.text[:200]}")
    print(f"RELIABILITY isolation requests={n} cross_collection_leaks={len(leaks)} statuses={dict(sorted(counts.items()))}")
    assert counts["chunks checked"] > 1000
    assert not leaks, leaks[:20]


# The same tenants with managed keys (``rag keys create``): scopes read, write and admin, a key for every
# collection, a revoked and an expired key. Besides queries, callers try the admin routes: listing,
# reading and deleting other tenants' documents, creating and dropping collections outside their key.
MANAGED = [
    ("m-red-read", ["red"], "read"),
    ("m-green-write", ["green"], "write"),
    ("m-red-blue-write", ["red", "blue"], "write"),
    ("m-blue-admin", ["blue"], "admin"),
    ("m-all-read", ["*"], "read"),
    ("m-gold-admin", ["gold", "nosuch"], "admin"),
]


def test_random_requests_with_managed_keys_and_scopes_never_leak(tenants, embedder) -> None:  # noqa: ANN001
    from datetime import timedelta

    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from api.main import create_app
    from indexer.service import AdminOperations
    from rag.pipeline import RagPipeline
    from rag.security.keys import SCOPES, ApiKeyRow, KeyRing

    settings, sources, chunk_ids = tenants
    store = Store(settings.sqlalchemy_url)
    ring = KeyRing(store)
    tokens: dict[str, tuple[set[str] | None, str]] = {}
    for label, cols, level in MANAGED:
        made = ring.create(collections=cols, scope=level, name=label)
        tokens[made.key] = (None if cols == ["*"] else set(cols), level)
    revoked = ring.create(collections=["red"], scope="admin", name="revoked")
    ring.revoke(revoked.info.id)
    expired = ring.create(collections=["green"], scope="write", name="expired", expires_in=timedelta(days=1))
    with store.session() as s:
        s.execute(update(ApiKeyRow).where(ApiKeyRow.id == expired.info.id).values(expires_at=expired.info.created_at - timedelta(days=2)))
        s.commit()
    doc_ids = {name: [d.id for d in store.documents(store.collection(name).id)] for name in MARKERS}
    owner_of_doc = {d: name for name, ids in doc_ids.items() for d in ids}
    app = create_app(settings, RagPipeline(settings, store, embedder, None, None, None), AdminOperations(settings, store, embedder))
    client = TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000), raise_server_exceptions=False)

    rng = random.Random(7)
    owner_of_chunk = {cid: name for name, ids in chunk_ids.items() for cid in ids}
    keys = [*tokens, revoked.key, expired.key, "key-red", "rag_" + "Z" * 43, None]
    collections = [*MARKERS, "nosuch", "default"]
    counts: Counter[str] = Counter()
    leaks: list[str] = []
    n = 1000
    for i in range(n):
        key = rng.choices(keys, weights=[15] * len(tokens) + [4, 4, 6, 3, 3])[0]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if key in tokens:
            scope, level = tokens[key]
        elif key == "key-red":  # bootstrap keys keep working: read on their collections
            scope, level = set(KEYS[key]), "read"
        else:
            scope, level = set(), ""
        allowed = (lambda c: True) if scope is None else (lambda c, s=scope: c in s)
        mine = sorted(set(MARKERS) if scope is None else scope & set(MARKERS))
        col = rng.choice(mine) if mine and rng.random() < 0.5 else rng.choice(collections)
        query = f"{rng.choice(TOPICS)} {rng.choice(list(MARKERS.values()))} confidential"
        kind = rng.choices(
            ["search", "feedback", "list", "admin-list", "admin-docs", "admin-delete", "admin-create", "admin-drop", "admin-stats"],
            weights=[45, 10, 5, 8, 10, 8, 5, 5, 4],
        )[0]
        if kind in ("search", "feedback"):
            r = _query_request(client, kind, rng, query, col, [1, 5, 20], sources, chunk_ids, headers)
        elif kind == "list":
            r = client.get("/v1/collections", headers=headers)
        elif kind == "admin-list":
            r = client.get("/v1/admin/collections", headers=headers)
        elif kind == "admin-docs":
            r = client.get(f"/v1/admin/collections/{col}/documents", headers=headers)
        elif kind == "admin-stats":
            r = client.get(f"/v1/admin/collections/{col}", headers=headers)
        elif kind == "admin-delete":
            # always another tenant's document: never deletable through `col`
            victim = rng.choice([c for c in MARKERS if c != col])
            r = client.delete(f"/v1/admin/collections/{col}/documents/{rng.choice(doc_ids[victim])}", headers=headers)
        else:  # create or drop a collection outside the key's scope
            outside = [c for c in [*MARKERS, "intruder"] if not allowed(c)]
            if not outside:
                continue
            target = rng.choice(outside)
            r = (client.post("/v1/admin/collections", json={"name": target}, headers=headers) if kind == "admin-create"
                 else client.delete(f"/v1/admin/collections/{target}", headers=headers))
        counts[f"{kind} {r.status_code}"] += 1
        if not level:
            if r.status_code != 401:
                leaks.append(f"#{i} {kind} with a missing, unknown, revoked or expired key answered {r.status_code}")
            continue
        admin_kind = kind.startswith("admin-")
        needs = "admin" if kind in ("admin-create", "admin-drop") else "write" if admin_kind else "read"
        if SCOPES.index(level) < SCOPES.index(needs):
            if r.status_code != 403:
                leaks.append(f"#{i} {kind} with a {level} key answered {r.status_code}")
            continue
        if kind in ("list", "admin-list"):
            names = {c["name"] for c in r.json()["collections"]}
            if scope is not None and not names <= scope:
                leaks.append(f"#{i} {level} key lists {names - scope}")
            continue
        if kind in ("admin-create", "admin-drop"):
            if r.status_code != 403:
                leaks.append(f"#{i} {kind} outside the key answered {r.status_code}")
            continue
        if not allowed(col):
            if r.status_code != 403:
                leaks.append(f"#{i} {kind} on {col} outside the key answered {r.status_code}")
            continue
        if kind == "search" and r.status_code == 200:
            for res in r.json()["results"]:
                counts["chunks checked"] += 1
                if owner_of_chunk.get(res["chunk_id"]) != col or any(m in res["text"] for c, m in MARKERS.items() if c != col):
                    leaks.append(f"#{i} search on {col} returned chunk {res['chunk_id']} of {owner_of_chunk.get(res['chunk_id'])}")
        elif kind == "admin-docs" and r.status_code == 200:
            for d in r.json()["documents"]:
                counts["documents checked"] += 1
                if owner_of_doc.get(d["id"]) != col:
                    leaks.append(f"#{i} documents of {col} listed {d['id']} of {owner_of_doc.get(d['id'])}")
        elif kind == "admin-delete" and r.status_code != 404:
            leaks.append(f"#{i} deleting another tenant's document through {col} answered {r.status_code}")
        elif r.status_code >= 500:
            leaks.append(f"#{i} {kind} on {col} answered {r.status_code}: {r.text[:200]}")
    app.state.audit.flush()
    audited = len(app.state.audit.rows(5000))
    store.close()
    print(f"RELIABILITY isolation-managed requests={n} leaks={len(leaks)} audited={audited} statuses={dict(sorted(counts.items()))}")
    assert counts["chunks checked"] > 500 and counts["documents checked"] > 50
    assert audited >= sum(v for k, v in counts.items() if not k.endswith("checked"))
    assert not leaks, leaks[:20]
    # every collection still holds all its documents: nothing was deleted or dropped
    check = Store(settings.sqlalchemy_url)
    assert {name: len(check.documents(check.collection(name).id)) for name in MARKERS} == {name: len(TOPICS) for name in MARKERS}
    check.close()
