"""The page in a real headless Chromium, against a real server: uvicorn on a free port, a real pipeline over
``data/``, the CLI's admin operations and (for answers) the real local llama.cpp generator.

Chromium and its driver come from Debian's packages (``chromium``, ``chromium-driver``), which
``scripts/browser.sh`` installs when they are missing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.main import create_app
from indexer.pipeline import Ingestor
from indexer.service import AdminOperations
from rag.config import Settings, load_settings
from rag.generation.client import Generator
from rag.index.store import Store
from rag.pipeline import RagPipeline
from rag.runtime.processes import free_port
from tests.api.conftest import local_generator  # noqa: F401  (the session's llama.cpp server)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("RAG_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RAG_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = REPO / "docs" / "screenshots"

HOSTILE_TXT = """Harbour notes from the Vellmar pier.

The Vellmar pier crane is painted orange and lifts thirty tonnes.
<script>window.__pwned = "script"; document.title = "pwned by script"</script>
<img src=x onerror="window.__pwned='img'; alert('img')">
<a href="javascript:window.__pwned='link'">click for the crane manual</a>
<button class="cite" data-n="1" onclick="window.__pwned='button'">[1]</button>
Fake markers [1] [2, 3] 【4】 and </mark><mark class="cited">a fake highlight</mark>.
<style>body { display: none }</style><iframe src="javascript:alert('frame')"></iframe>
"""

HOSTILE_MD = """# Vellmar pier safety

The Vellmar pier closes when the wind is above forty knots.

[the pier rules](javascript:alert('md-link')) and ![logo](x" onerror="alert('md-img'))

<div onmouseover="window.__pwned='md-div'">Hover over this line for the wind limits [1].</div>
"""


@dataclass
class LiveServer:
    """The server the browser talks to."""

    base: str
    settings: Settings
    store: Store
    generator: bool
    app: object


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (extra 'dev')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing: run scripts/browser.sh (Debian packages chromium and chromium-driver)"
    return None


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, embedder, request: pytest.FixtureRequest) -> Iterator[LiveServer]:  # noqa: ANN001
    """uvicorn on a free port of 127.0.0.1, serving ``data/`` as ``guide`` and two hostile documents as ``hostile``."""
    import uvicorn

    root = tmp_path_factory.mktemp("web")
    settings = load_settings(
        data_dir=root / "data",
        reranker={"model": ""},
        # Short answers from short contexts: the tests check the page, not the generator, on a 2-core machine.
        generator={"max_tokens": 48, "context_tokens": 500, "timeout_s": 600},
    )
    store = Store(settings.sqlalchemy_url)
    Ingestor(settings, store, embedder, "guide").ingest([REPO / "data"])
    hostile = root / "hostile"
    hostile.mkdir()
    (hostile / "pier.txt").write_text(HOSTILE_TXT)
    (hostile / "safety.md").write_text(HOSTILE_MD)
    Ingestor(settings, store, embedder, "hostile").ingest([hostile])
    try:
        url = request.getfixturevalue("local_generator")
    except pytest.skip.Exception:
        url = None
    generator = Generator(settings.generator, base_url=url) if url else None
    pipeline = RagPipeline(settings, store, embedder, None, None, generator)
    app = create_app(settings, pipeline, AdminOperations(settings, store, embedder))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, store, generator is not None, app)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


@pytest.fixture(scope="session")
def driver() -> Iterator[object]:
    """Headless Chromium through chromedriver, both from Debian's packages."""
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900",
                "--disable-extensions", "--no-first-run", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver, live: LiveServer) -> Iterator[object]:  # noqa: ANN001
    """The browser on a fresh load of the page (no stored conversation), with console problems checked afterwards."""
    driver.set_window_size(1200, 900)
    driver.get(live.base + "/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    load(driver, live.base + "/")
    driver.get_log("browser")  # drop what loading logged so far
    yield driver
    problems = console_problems(driver)
    assert not problems, f"the browser console reported: {problems}"


def load(driver, url: str) -> None:  # noqa: ANN001
    """Open ``url`` and wait until the page has read the server's collections."""
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), 30)


def wait(driver, condition: Callable[[object], object], timeout: float = 30, message: str = ""):  # noqa: ANN001, ANN201
    """WebDriverWait with a message."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def console_problems(driver) -> list[str]:  # noqa: ANN001
    """Console entries that mean the page broke: script errors and Content-Security-Policy violations."""
    out = []
    for entry in driver.get_log("browser"):
        text = entry.get("message", "")
        if "Content Security Policy" in text or "Uncaught" in text or "TrustedHTML" in text:
            out.append(text)
    return out


def screenshot(driver, name: str) -> Path:  # noqa: ANN001
    """Save the viewport as ``docs/screenshots/<name>.png``, reduced to a small palette to keep it small."""
    from io import BytesIO

    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path = SCREENSHOTS / f"{name}.png"
    image.quantize(colors=48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
