"""The page in headless Chromium: asking with streamed, checked citations; the conversation across a reload;
feedback; the admin view's upload job; hostile documents that stay inert; the phone width."""

from __future__ import annotations

import html.parser
import re
import time

import httpx
import pytest

from tests.web.conftest import REPO, LiveServer, console_problems, load, screenshot, wait

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STATIC = REPO / "api" / "web" / "static"


def by_css(driver, selector: str):  # noqa: ANN001, ANN201
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def one(driver, selector: str):  # noqa: ANN001, ANN201
    found = by_css(driver, selector)
    assert found, f"nothing matches {selector!r}"
    return found[0]


def click(driver, element) -> None:  # noqa: ANN001
    """Scroll an element to the middle of the window (clear of the sticky question form) and click it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def choose_collection(driver, name: str) -> None:  # noqa: ANN001
    from selenium.webdriver.support.ui import Select

    wait(driver, lambda d: name in [o.get_attribute("value") for o in by_css(d, "#collection option")], 30, f"no {name} option")
    Select(one(driver, "#collection")).select_by_value(name)


def hostile_untouched(driver) -> None:  # noqa: ANN001
    """No script of a hostile document ran: the title, an injected global and the dialogs are as they were."""
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.title == "rag-service"
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    live_nodes = driver.execute_script(
        "return document.querySelectorAll('#main script, #main iframe, #main style, #main [onerror], #main [onclick],"
        " #main [onmouseover], #main a[href^=\"javascript\"], #main img:not(.thumb img), .passage .cite, .results mark,"
        " .doc .cite').length"
    )
    assert live_nodes == 0
    fake = driver.execute_script("return [...document.querySelectorAll('mark')].filter((m) => m.textContent.trim() === 'a fake highlight').length")
    assert fake == 0
    assert one(driver, "body").is_displayed()


# The page as served ----------------------------------------------------------------------------------


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self.inline: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.inline += [f"{tag} {k}" for k in a if k.startswith("on") or k == "style"]
        if tag == "script":
            self._in_script = a
            self.scripts.append((a, ""))
        if tag == "style":
            self.inline.append("style element")

    def handle_data(self, data: str) -> None:
        if self._in_script is not None and data.strip():
            self.scripts[-1] = (self._in_script, data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def test_page_is_served_with_a_same_origin_csp_and_no_inline_code(live: LiveServer) -> None:
    r = httpx.get(live.base + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for rule in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                 "require-trusted-types-for 'script'"):
        assert rule in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and "set-cookie" not in r.headers
    tags = _Tags()
    tags.feed(r.text)
    assert tags.scripts and all(a.get("src", "").startswith("/static/") and not body for a, body in tags.scripts)
    assert tags.inline == []
    assert not re.search(r"(src|href)=\"(https?:)?//", r.text), "the page must load nothing from another origin"
    js = r.text.split('src="', 2)[1].split('"')[0]
    asset = httpx.get(live.base + js)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert asset.headers["content-security-policy"] == csp
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        # no string ever reaches an HTML sink, and nothing is evaluated
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{path.name} uses {sink}"
        assert "http://" not in source and "https://" not in source and "document.cookie" not in source


# Asking ----------------------------------------------------------------------------------------------

QUESTION = "Which command ingests a directory of files?"
ANSWERED: dict[str, dict] = {}
"""The real answer, once the tests that ask have run (the phone test shows it when it is there)."""


@pytest.fixture(scope="module")
def asked(driver, live: LiveServer):  # noqa: ANN001, ANN201
    """One question asked over data/ through the page; what the page showed while it streamed."""
    if not live.generator:
        pytest.skip("no local generator (extra 'local')")
    from selenium.webdriver.common.keys import Keys

    driver.set_window_size(1200, 900)
    driver.get(live.base + "/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    load(driver, live.base + "/")
    driver.get_log("browser")
    choose_collection(driver, "guide")
    # Record every length the streamed draft takes, to see the answer arrive in pieces.
    driver.execute_script("""
        window.__drafts = [];
        new MutationObserver(() => {
          const d = document.querySelector('.turn.streaming .draft');
          if (d && d.textContent) window.__drafts.push(d.textContent.length);
        }).observe(document.getElementById('thread'), {subtree: true, childList: true, characterData: true});
    """)
    box = one(driver, "#question")
    box.send_keys(QUESTION)
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: by_css(d, ".turn.done .reply .summary, .turn.error"), 600, "no checked answer")
    assert not by_css(driver, ".turn.error"), one(driver, ".turn.error").text
    turn = driver.execute_script("return JSON.parse(localStorage.getItem('rag.thread.v1')).turns[0]")
    ANSWERED["turn"] = turn
    return {"drafts": driver.execute_script("return window.__drafts"), "turn": turn}


@pytest.mark.generator
def test_answer_streams_in_with_shaded_sentences_and_cited_spans(driver, live: LiveServer, asked) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    drafts = asked["drafts"]
    assert len(set(drafts)) >= 2 and drafts == sorted(drafts), f"the answer did not stream in: {drafts}"
    result = asked["turn"]["result"]
    assert not result["abstained"], result
    claims = by_css(driver, ".turn.done .answer .claim")
    assert len(claims) == len(result["claims"]) >= 1
    for node, claim in zip(claims, result["claims"]):
        assert f"v-{claim['verdict']}" in node.get_attribute("class")
        assert f"support score {claim['score']:.2f}" in node.get_attribute("title")
    assert re.search(r"Faithfulness \d+%", one(driver, ".turn.done .summary").text)
    one(driver, ".turn.done details.timings summary").click()
    assert "generate" in one(driver, ".turn.done details.timings table").text

    # Hover the first marker: the card shows the cited passage with the claim's evidence highlighted.
    marker = one(driver, ".turn.done .answer .cite")
    n, k = int(marker.get_attribute("data-n")), int(marker.get_attribute("data-claim"))
    citation = next(c for c in result["citations"] if c["n"] == n)
    ActionChains(driver).move_to_element(marker).perform()
    wait(driver, lambda d: one(d, "#card").is_displayed(), 5, "no card on hover")
    card = one(driver, "#card")
    assert citation["title"] in card.text and citation["source"] in card.text
    evidence = [e for e in result["claims"][k]["evidence"] if e["n"] == n]
    spans = evidence or citation["spans"]
    assert spans, "the verifier gave no span for this citation"
    marks = [m.text for m in by_css(driver, "#card mark.cited")]
    wanted = citation["text"][spans[0]["start"] : spans[0]["end"]]
    assert marks and " ".join(marks[0].split()) == " ".join(wanted.split()), (marks, wanted)
    assert one(driver, "#card mark.cited").is_displayed()  # scrolled into the card's view
    screenshot(driver, "ask")

    # By keyboard: focus shows the same card, Escape hides it.
    ActionChains(driver).move_to_element(one(driver, ".brand")).perform()
    wait(driver, lambda d: not one(d, "#card").is_displayed(), 5)
    driver.execute_script("arguments[0].focus()", marker)
    wait(driver, lambda d: one(d, "#card").is_displayed(), 5, "no card on focus")
    assert driver.switch_to.active_element == marker and marker.get_attribute("aria-expanded") == "true"
    marker.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not one(d, "#card").is_displayed(), 5)

    # Enter on the marker opens the document with the cited span highlighted and scrolled into view.
    marker.send_keys(Keys.ENTER)
    wait(driver, lambda d: by_css(d, "#source-text mark.cited"), 15, "no highlighted span in the source view")
    assert one(driver, "#view-source").is_displayed() and not one(driver, "#view-ask").is_displayed()
    assert citation["title"] in one(driver, "#source-title").text
    first_span = citation["spans"][0] if citation["spans"] else None
    doc_mark = one(driver, "#source-text mark.cited")
    if first_span:
        assert " ".join(doc_mark.text.split()) == " ".join(first_span["text"].split())
    visible = driver.execute_script("""
        const m = arguments[0].getBoundingClientRect(), p = document.getElementById('source-text').getBoundingClientRect();
        return m.top >= p.top - 1 && m.top < p.bottom && m.top >= 0 && m.top < window.innerHeight;
    """, doc_mark)
    assert visible, "the cited span is not scrolled into view"
    one(driver, "#source-back").click()
    wait(driver, lambda d: one(d, "#view-ask").is_displayed(), 5)
    assert driver.switch_to.active_element == one(driver, ".turn.done .answer .cite")


@pytest.mark.generator
def test_reload_keeps_each_answer_with_its_own_citations(driver, live: LiveServer, asked) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains

    before = [m.get_attribute("aria-label") for m in by_css(driver, ".turn .answer .cite")]
    sources_before = one(driver, ".turn .sources").text
    load(driver, live.base + "/")
    wait(driver, lambda d: by_css(d, ".turn.done .answer .cite"), 10, "the answer's citations are gone after a reload")
    assert [m.get_attribute("aria-label") for m in by_css(driver, ".turn .answer .cite")] == before
    assert one(driver, ".turn .sources").text == sources_before
    assert QUESTION in one(driver, ".turn .question").text
    ActionChains(driver).move_to_element(one(driver, ".turn .answer .cite")).perform()
    wait(driver, lambda d: by_css(d, "#card mark.cited") and one(d, "#card").is_displayed(), 5, "no highlighted card after reload")


@pytest.mark.generator
def test_thumbs_store_feedback_rows(driver, live: LiveServer, asked) -> None:  # noqa: ANN001
    result = asked["turn"]["result"]
    info = live.store.collection("guide")
    before = len(live.store.feedback(info.id))
    click(driver, one(driver, ".turn .sources .source .thumb.up"))
    wait(driver, lambda d: "saved" in one(d, ".turn .sources .feedback-status").text, 10, "no confirmation")
    rows = live.store.feedback(info.id)[before:]
    first = result["citations"][0]
    assert [(r.query, r.chunk_id, r.relevant) for r in rows] == [(QUESTION, first["chunk_id"], True)]
    click(driver, one(driver, ".turn .feedback .thumb.down"))
    wait(driver, lambda d: "saved" in one(d, ".turn .feedback .feedback-status").text, 10)
    rows = live.store.feedback(info.id)[before + 1 :]
    assert sorted((r.chunk_id, r.relevant) for r in rows) == sorted((c["chunk_id"], False) for c in result["citations"])
    assert one(driver, ".turn .feedback .thumb.down").get_attribute("aria-pressed") == "true"


@pytest.mark.generator
def test_hostile_document_asked_about_runs_no_script(driver, live: LiveServer, asked) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    choose_collection(driver, "hostile")
    box = one(driver, "#question")
    box.send_keys("What does the Vellmar pier crane lift?")
    box.send_keys(Keys.ENTER)
    wait(driver, lambda d: len(by_css(d, ".turn.done, .turn.error")) >= 2, 600, "no second answer")
    hostile_untouched(driver)
    latest = by_css(driver, ".turn")[-1]
    assert "error" not in latest.get_attribute("class"), latest.text
    assert "Vellmar" in latest.text or "pier" in latest.text.lower(), latest.text
    for marker in by_css(driver, ".turn:last-child .answer .cite"):
        ActionChains(driver).move_to_element(marker).perform()
        wait(driver, lambda d: one(d, "#card").is_displayed(), 5)
        card = one(driver, "#card").get_attribute("textContent")
        if "pier.txt" in card:  # the one-chunk hostile file: its markup shows as characters
            assert "<script>" in card and "onerror" in card, card
        hostile_untouched(driver)
    # the first answer kept its own citations under the second
    assert by_css(driver, ".turn:first-child .answer .cite")
    time.sleep(0.5)
    hostile_untouched(driver)
    assert not console_problems(driver)


def test_follow_up_sends_history_and_shows_plan_steps_and_abstention(page, live: LiveServer) -> None:  # noqa: ANN001
    """The page's side of conversations, plans and abstentions, with /v1/ask's reply given in the browser.

    The small local model rarely plans several steps or abstains on cue, so this one reply is canned
    (in the shape of the server's events); everything else is the real page and server.
    """
    driver = page
    found = httpx.post(live.base + "/v1/search", json={"query": "ingest a directory", "collection": "guide", "top_k": 2}).json()["results"]
    sources = [{k: r[k] for k in ("chunk_id", "document_id", "source", "title", "char_start", "char_end", "text")} | {"n": i + 1}
               for i, r in enumerate(found)]
    earlier = {
        "id": "tseed", "mode": "ask", "question": "How do I ingest files?", "collection": "guide", "status": "done",
        "draft": "", "sources": [], "feedback": {"answer": None, "chunks": {}},
        "result": {"answer": "Run rag ingest.", "citations": [], "faithfulness": 0, "abstained": False, "invalid_citations": [],
                   "claims": [{"text": "Run rag ingest.", "citations": [], "verdict": "uncited", "score": 0, "evidence": []}]},
    }
    driver.execute_script("localStorage.setItem('rag.thread.v1', JSON.stringify({turns: [arguments[0]]}))", earlier)
    load(driver, live.base + "/")
    assert "Run rag ingest." in one(driver, ".turn .answer").text
    step = {"found": [], "timings_ms": {"plan": 0, "embed": 1, "bm25": 1, "dense": 1, "fuse": 1, "rerank": 0},
            "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
    plan = {
        "mode": "iterative", "requested": "auto", "question": "How do I ingest a directory with rag ingest?", "stop": "enough",
        "fallback": "", "usage": {"prompt_tokens": 9, "completion_tokens": 9},
        "rewrite": {"original": "and a whole directory?", "question": "How do I ingest a directory with rag ingest?",
                    "fallback": "", "usage": {"prompt_tokens": 5, "completion_tokens": 5}, "ms": 10},
        "steps": [step | {"query": "ingest a directory", "purpose": "question", "decision": "next: include globs"},
                  step | {"query": "include globs", "purpose": "hop", "decision": "enough"}],
    }
    timings = dict.fromkeys(("plan", "embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total"), 1.0)
    events = [
        ("citations", {"sources": sources}),
        ("token", {"text": "I cannot "}),
        ("token", {"text": "tell."}),
        ("verification", {"answer": "", "citations": [], "claims": [], "faithfulness": 0, "abstained": True, "invalid_citations": []}),
        ("done", {"timings_ms": timings, "usage": {"prompt_tokens": 1, "completion_tokens": 2}, "pipeline": {}, "plan": plan}),
    ]
    driver.execute_script("""
        const stream = arguments[0].map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`);
        const real = window.fetch;
        window.__asked = null;
        window.fetch = (url, init) => {
          if (url !== '/v1/ask') return real(url, init);
          window.__asked = JSON.parse(init.body);
          const body = new ReadableStream({start(c) { for (const s of stream) c.enqueue(new TextEncoder().encode(s)); c.close(); }});
          return Promise.resolve(new Response(body, {status: 200, headers: {'Content-Type': 'text/event-stream'}}));
        };
    """, [list(e) for e in events])
    choose_collection(driver, "guide")
    one(driver, "#question").send_keys("and a whole directory?")
    click(driver, one(driver, "#ask-button"))
    wait(driver, lambda d: by_css(d, ".turn.done .abstain"), 10, "no abstention shown")
    sent = driver.execute_script("return window.__asked")
    assert sent["history"] == [{"question": "How do I ingest files?", "answer": "Run rag ingest."}]
    assert sent["query"] == "and a whole directory?" and sent["stream"] is True
    turn = by_css(driver, ".turn")[-1]
    assert "asked with the 1 earlier turn" in turn.text
    abstain = one(driver, ".turn:last-child .abstain")
    assert "No answer" in abstain.text and "closest passages" in abstain.text
    assert len(by_css(driver, ".turn:last-child .abstain .result")) == len(sources)
    assert sources[0]["title"] in abstain.text
    plan_box = one(driver, ".turn:last-child details.plan")
    assert plan_box.get_attribute("open") is not None
    assert "iterative, 2 steps" in plan_box.text and "How do I ingest a directory with rag ingest?" in plan_box.text
    steps = [li.text for li in by_css(driver, ".turn:last-child details.plan .steps li")]
    assert steps == ["ingest a directory question · 0 found · next: include globs", "include globs hop · 0 found · enough"]
    assert not by_css(driver, ".turn:last-child .answer .cite") and not by_css(driver, ".turn:last-child .feedback")
    # and the abstention's closest sources open like any other
    click(driver, one(driver, ".turn:last-child .abstain .result button"))
    wait(driver, lambda d: by_css(d, "#source-text mark.cited"), 10)
    assert sources[0]["text"][:40].split()[0] in one(driver, "#source-text mark.cited").text


# The admin view --------------------------------------------------------------------------------------


def test_admin_upload_runs_a_job_and_the_text_is_found(page, live: LiveServer, tmp_path) -> None:  # noqa: ANN001
    driver = page
    good = tmp_path / "lanterns.md"
    good.write_text("# Lanterns\n\nThe Oskary lantern festival floats nine hundred paper boats every August.\n")
    bad = tmp_path / "setup.exe"
    bad.write_bytes(b"MZ\x90\x00")
    one(driver, "#tab-admin").click()
    wait(driver, lambda d: one(d, "#admin-body").is_displayed(), 10, "the admin view is refused")
    name = one(driver, "#new-collection")
    name.send_keys("festivals")
    one(driver, "#create-form button[type=submit]").click()
    wait(driver, lambda d: one(d, "#collection-panel").is_displayed() and one(d, "#panel-heading").text == "festivals", 10)
    one(driver, "#upload-files").send_keys(f"{good}\n{bad}")
    one(driver, "#upload-button").click()
    wait(driver, lambda d: by_css(d, ".job[data-status=done], .job[data-status=failed]"), 120, "the job did not finish")
    job = one(driver, ".job")
    assert job.get_attribute("data-status") == "done", job.text
    assert "1 added" in job.text
    failures = one(driver, ".job .failures").text
    assert "setup.exe" in failures and "unsupported file type .exe" in failures
    assert one(driver, ".job progress").get_attribute("value") == one(driver, ".job progress").get_attribute("max")
    wait(driver, lambda d: "Lanterns" in one(d, "#documents-table").text, 10, "the document is not listed")
    assert "active" in one(driver, "#documents-table tbody").text
    assert "festivals" in one(driver, "#collections-table").text
    driver.set_window_size(1200, 1400)
    driver.execute_script("window.scrollTo(0, 0)")
    screenshot(driver, "admin")
    driver.set_window_size(1200, 900)

    one(driver, "#tab-ask").click()
    choose_collection(driver, "festivals")
    one(driver, "#question").send_keys("paper boats festival")
    one(driver, "#search-button").click()
    wait(driver, lambda d: by_css(d, ".turn.done .results .result"), 30, "no search results")
    assert "nine hundred paper boats" in one(driver, ".turn.done .results .result .passage").text


def test_admin_view_explains_why_it_is_refused(page, live: LiveServer) -> None:  # noqa: ANN001
    from api.deps import get_settings
    from rag.config import load_settings

    driver = page
    # The same server with a key configured: the real admin rule refuses every admin call with 403.
    keyed = load_settings(**{**live.settings.model_dump(), "api_keys": {"k": ["guide"]}})
    live.app.dependency_overrides[get_settings] = lambda: keyed
    driver.execute_script("sessionStorage.setItem('rag.apiKey', 'k')")
    try:
        one(driver, "#tab-admin").click()
        wait(driver, lambda d: one(d, "#admin-refused").is_displayed(), 10)
        assert "RAG_API_KEYS" in one(driver, "#admin-refused").text
        assert not one(driver, "#admin-body").is_displayed()
    finally:
        live.app.dependency_overrides.clear()
        driver.execute_script("sessionStorage.clear()")


def test_admin_view_with_a_managed_write_key_shows_its_collections_and_refuses_creating_one(page, live: LiveServer, tmp_path) -> None:  # noqa: ANN001
    import json

    from rag.index.store import Store
    from rag.security.keys import KeyRing

    driver = page
    # A keyring of its own, so the shared server goes back to having no keys once the test ends.
    keys = Store(f"sqlite:///{tmp_path / 'keys.db'}")
    ring = KeyRing(keys, cache_s=0.0)
    writer = ring.create(collections=["guide"], scope="write", name="web").key
    saved = live.app.state.keyring
    live.app.state.keyring = ring
    driver.execute_script(f"sessionStorage.setItem('rag.apiKey', {json.dumps(writer)})")
    try:
        load(driver, live.base + "/")
        one(driver, "#tab-admin").click()
        wait(driver, lambda d: one(d, "#admin-body").is_displayed(), 10, "a write key was refused the admin view")
        wait(driver, lambda d: "guide" in one(d, "#collections-table").text, 10, "the key's collection is not listed")
        assert "hostile" not in one(driver, "#collections-table").text
        one(driver, "#new-collection").send_keys("keyed-new")
        one(driver, "#create-form button[type=submit]").click()
        wait(driver, lambda d: "scope 'admin'" in one(d, "#notice").text, 10, "creating a collection was not refused")
        assert "keyed-new" not in one(driver, "#collections-table").text
        assert not [c for c in live.store.collections() if c.name == "keyed-new"]
    finally:
        live.app.state.keyring = saved
        driver.execute_script("sessionStorage.clear()")
        keys.close()


def test_key_is_asked_for_once_kept_in_the_tab_and_sent_as_a_bearer_header(page, live: LiveServer) -> None:  # noqa: ANN001
    from api.deps import get_settings
    from rag.config import load_settings

    driver = page
    keyed = load_settings(**{**live.settings.model_dump(), "api_keys": {"k-secret": ["guide"]}})
    live.app.dependency_overrides[get_settings] = lambda: keyed
    try:
        driver.get(live.base + "/")
        wait(driver, lambda d: one(d, "#key-dialog").get_attribute("open") is not None, 10, "the page did not ask for a key")
        assert "needs an API key" in one(driver, "#key-why").text
        one(driver, "#key-input").send_keys("k-secret")
        one(driver, "#key-save").click()
        wait(driver, lambda d: [o.get_attribute("value") for o in by_css(d, "#collection option")] == ["guide"], 10,
             "the key did not open the key's collections")
        assert driver.execute_script("return sessionStorage.getItem('rag.apiKey')") == "k-secret"
        assert driver.execute_script("return document.cookie") == ""
        assert "k-secret" not in driver.execute_script("return JSON.stringify(localStorage)")
        load(driver, live.base + "/")  # a reload keeps it in the tab: no second question
        assert one(driver, "#key-dialog").get_attribute("open") is None
        assert [o.get_attribute("value") for o in by_css(driver, "#collection option")] == ["guide"]
    finally:
        live.app.dependency_overrides.clear()
        driver.execute_script("sessionStorage.clear()")


# Hostile documents -----------------------------------------------------------------------------------


def test_hostile_document_renders_as_text_in_results_and_the_source_view(page, live: LiveServer) -> None:  # noqa: ANN001
    driver = page
    choose_collection(driver, "hostile")
    one(driver, "#question").send_keys("Vellmar pier crane tonnes")
    one(driver, "#search-button").click()
    wait(driver, lambda d: by_css(d, ".turn.done .results .result"), 30, "no search results")
    text = one(driver, ".turn.done .results").text
    assert "<script>" in text and "onerror" in text and "javascript:" in text, "the markup must show as text"
    hostile_untouched(driver)
    for k in range(len(by_css(driver, ".turn.done .results .result button"))):
        click(driver, by_css(driver, ".turn.done .results .result button")[k])
        wait(driver, lambda d: "pier" in one(d, "#source-text").text.lower(), 10)
        assert "<script>" in one(driver, "#source-text").text or "javascript:" in one(driver, "#source-text").text
        hostile_untouched(driver)
        one(driver, "#source-back").click()
        wait(driver, lambda d: one(d, "#view-ask").is_displayed(), 5)
    time.sleep(0.5)  # an onerror or a timer would have fired by now
    hostile_untouched(driver)


# People ----------------------------------------------------------------------------------------------


def _seed_turn(live: LiveServer) -> dict:
    """A finished answer built from a real search result, with one sentence of each verdict."""
    hit = httpx.post(live.base + "/v1/search", json={"query": "ingest a directory", "collection": "guide", "top_k": 1}).json()["results"][0]
    text = hit["text"]
    start = text.find("\n\n") + 2 if "\n\n" in text[:200] else 0  # past a heading
    end = text.find(".", start) + 1 or len(text)
    span = {"start": start, "end": end, "char_start": hit["char_start"] + start, "char_end": hit["char_start"] + end,
            "text": text[start:end], "section": hit["section"], "page": None}
    citation = {k: hit[k] for k in ("chunk_id", "document_id", "source", "title", "section", "char_start", "char_end", "text")}
    citation |= {"n": 1, "page": None, "kind": "generated", "spans": [span]}
    claims = [
        {"text": text[start:end].strip(), "citations": [1], "verdict": "supported", "score": 0.93,
         "evidence": [{"n": 1, "start": start, "end": end}]},
        {"text": "It also translates every file into French.", "citations": [1], "verdict": "unsupported", "score": 0.21, "evidence": []},
        {"text": "Ask the administrator first.", "citations": [], "verdict": "uncited", "score": 0.0, "evidence": []},
    ]
    result = {"answer": " ".join(c["text"] for c in claims), "citations": [citation], "claims": claims, "faithfulness": 0.33,
              "abstained": False, "invalid_citations": [],
              "timings_ms": dict.fromkeys(("embed", "bm25", "dense", "fuse", "rerank", "generate", "verify", "total"), 5.0)}
    return {"id": "tphone", "mode": "ask", "question": "How do I ingest a directory?", "collection": "guide", "status": "done",
            "draft": "", "sources": [], "result": result, "feedback": {"answer": None, "chunks": {}}}


def test_phone_width_keyboard_and_labelled_controls(page, live: LiveServer) -> None:  # noqa: ANN001
    from selenium.webdriver.common.keys import Keys

    driver = page
    # the real answer when the tests that ask have run, else one built from a real search result
    turn = ANSWERED.get("turn") or _seed_turn(live)
    driver.execute_script("localStorage.setItem('rag.thread.v1', JSON.stringify({turns: [arguments[0]]}))", turn)
    driver.set_window_size(375, 800)
    load(driver, live.base + "/")
    width = driver.execute_script("return document.documentElement.clientWidth")
    overflow = driver.execute_script("return document.documentElement.scrollWidth")
    assert overflow <= width, f"the page is {overflow}px wide on a {width}px screen"
    for selector in ("#collection", "#question", "#ask-button", "#search-button", ".turn .answer", ".turn .sources"):
        box = one(driver, selector).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box)
    unlabelled = driver.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, button')].filter((e) => {
          if (e.type === 'hidden') return false;
          const label = e.labels && e.labels.length ? e.labels[0].textContent : '';
          return !(label.trim() || e.getAttribute('aria-label') || e.textContent.trim());
        }).map((e) => e.id || e.className);
    """)
    assert unlabelled == []
    # Keyboard alone: Tab from the top reaches the first citation marker, which opens its card on focus.
    one(driver, "body").send_keys(Keys.TAB)
    for _ in range(40):
        active = driver.switch_to.active_element
        if "cite" in (active.get_attribute("class") or ""):
            break
        active.send_keys(Keys.TAB)
    else:
        pytest.fail("Tab never reached a citation marker")
    wait(driver, lambda d: one(d, "#card").is_displayed(), 5, "no card on keyboard focus")
    card = one(driver, "#card").rect
    assert card["x"] >= 0 and card["x"] + card["width"] <= width + 1 and card["y"] + card["height"] <= 800, card
    assert by_css(driver, "#card mark.cited")
    screenshot(driver, "ask-phone")
    driver.set_window_size(1200, 900)
