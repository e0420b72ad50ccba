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
        if kind == "search":
            r = client.post("/v1/search", json={"query": query, "collection": col, "top_k": rng.choice([1, 5, 20, 100]),
                                                "filters": _filters(rng, sources)}, headers=headers)
        elif kind == "feedback":
            victim = rng.choice(list(MARKERS))
            r = client.post("/v1/feedback", json={"query": query, "collection": col, "chunk_id": rng.choice(chunk_ids[victim]),
                                                  "relevant": True}, headers=headers)
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
