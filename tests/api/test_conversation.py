"""Conversations over the API with the real local generator: a follow-up only the first question makes answerable.

"What is the vacation policy?" then "And for part-time staff?": on its own the follow-up matches
three part-time documents (vacation, parking, training) of the planning fixture corpus; only its
rewrite into "... vacation ... part-time staff ..." singles out ``vacation-part-time``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI

from api.schemas import ChatCompletionRequest
from api.serving.chat import conversation_of
from indexer.pipeline import Ingestor
from rag.config import Settings, load_settings
from rag.index.store import Store
from tests.api.conftest import make_client

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "planning"
FIRST = "What is the vacation policy?"
FOLLOW_UP = "And for part-time staff?"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def conversation_settings(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # noqa: ANN001
    root = tmp_path_factory.mktemp("conversation")
    # a loaded CPU may take minutes per call; the budgets here are not what is tested
    settings = load_settings(
        data_dir=root / "data", reranker={"model": ""}, planner={"max_wall_s": 900}, generator={"timeout_s": 900}
    )
    store = Store(settings.sqlalchemy_url)
    Ingestor(settings, store, embedder, "handbook").ingest([FIXTURES / "corpus.jsonl"])
    store.close()
    return settings


@pytest.fixture(scope="module")
def client(conversation_settings, embedder, local_generator):  # noqa: ANN001, ANN201
    return make_client(conversation_settings, embedder, local_generator)


def test_the_conversation_is_the_whole_message_list() -> None:
    body = ChatCompletionRequest(model="handbook", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": "Full-time staff get 25 days [1]."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks."}]},
        {"role": "user", "content": FOLLOW_UP},
    ])
    question, history = conversation_of(body)
    assert question == FOLLOW_UP
    assert [(t.question, t.answer) for t in history] == [(FIRST, "Full-time staff get 25 days [1]."), ("Thanks.", "")]
    first, none = conversation_of(ChatCompletionRequest(model="handbook", messages=[{"role": "user", "content": FIRST}]))
    assert first == FIRST and none == ()


def _check_follow_up(plan: dict, citations: list[dict], claims: list[dict], abstained: bool) -> None:
    rewrite = plan["rewrite"]
    assert rewrite is not None and rewrite["original"] == FOLLOW_UP
    # The model's own rewrite, or, when its reply copied a question, the follow-up spliced into the earlier one.
    fallback = rewrite["fallback"]
    assert fallback == "" or (fallback.startswith("rewrite: the reply") and fallback.endswith("the earlier question")), rewrite
    standalone = rewrite["question"].lower()
    assert "vacation" in standalone and "part-time" in standalone.replace("part time", "part-time"), rewrite
    assert plan["question"] == rewrite["question"] and plan["steps"][0]["query"] == rewrite["question"]
    assert not abstained
    cited = {c["source"] for c in citations}
    assert any(s.endswith("vacation-part-time") for s in cited) or "vacation-part-time" in {
        f["external_id"] for f in plan["steps"][0]["found"] if f["n"] in {c["n"] for c in citations}
    }, citations
    assert any(c["verdict"] == "supported" for c in claims), claims


@pytest.mark.generator
def test_a_two_turn_conversation_through_the_openai_client(client) -> None:  # noqa: ANN001
    oa = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    messages = [{"role": "user", "content": FIRST}]
    first = oa.chat.completions.create(model="handbook", messages=messages, extra_body={"planner": "direct"})
    assert first.model_extra["rag"]["plan"]["rewrite"] is None, "the first question is not rewritten"
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": FOLLOW_UP},
    ]
    second = oa.chat.completions.create(model="handbook", messages=messages, extra_body={"planner": "direct"})
    rag = second.model_extra["rag"]
    _check_follow_up(rag["plan"], rag["citations"], rag["claims"], rag["abstained"])
    assert rag["plan"]["usage"]["prompt_tokens"] > 0 and rag["timings_ms"]["plan"] > 0
    assert second.usage.prompt_tokens >= rag["plan"]["usage"]["prompt_tokens"], "usage counts the rewrite too"


@pytest.mark.generator
def test_a_follow_up_through_server_sent_events(client) -> None:  # noqa: ANN001
    body = {
        "query": FOLLOW_UP, "collection": "handbook", "stream": True, "planner": "direct",
        "history": [{"question": FIRST, "answer": "Full-time staff get 25 days of paid vacation per year [1]."}],
    }
    events: list[tuple[str, dict]] = []
    with client.stream("POST", "/v1/ask", json=body) as r:
        assert r.status_code == 200
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    names = [n for n, _ in events]
    assert names[0] == "citations" and names[-2:] == ["verification", "done"], names
    sources, verification, done = events[0][1]["sources"], events[-2][1], events[-1][1]
    assert all(s["step"] == 0 and s["query"] == done["plan"]["rewrite"]["question"] for s in sources)
    _check_follow_up(done["plan"], verification["citations"], verification["claims"], verification["abstained"])


def test_history_is_checked_like_a_question(conversation_settings, embedder) -> None:  # noqa: ANN001
    client = make_client(conversation_settings, embedder, None)
    r = client.post("/v1/ask", json={"query": FOLLOW_UP, "collection": "handbook", "history": [{"question": "   "}]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "history[0].question"
    r = client.post("/v1/ask", json={"query": FOLLOW_UP, "collection": "handbook", "planner": "sideways"})
    assert r.status_code == 422 and "planner" in (r.json()["error"]["param"] or "") + r.json()["error"]["message"]
