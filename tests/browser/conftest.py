"""Real-browser fixtures: Debian's chromium driven by Playwright, against the real app served by waitress.

No browser is downloaded: Playwright launches /usr/bin/chromium. Screenshots go to
test-artifacts/browser/. The page's CSP forbids eval, so waits on page state poll with
page.evaluate (which the CSP does not govern) instead of page.wait_for_function.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
USER, PASSWORD = "dr.browser", "correct horse battery staple"
VIEWPORT = {"width": 380, "height": 900}

EMBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EHR stand-in</title></head>
<body><h1>EHR stand-in</h1>
<iframe id="copilot" title="Clinical Copilot" src="/sidebar" width="400" height="860"></iframe>
</body></html>"""


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real browser (Debian's chromium) through Playwright")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium) to run browser tests")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(embedded_engine, shipped_home, tmp_path_factory):
    """The real app on a real socket (waitress, as in production), with one clinician."""
    from waitress import create_server

    from copilot.web import create_app

    app = create_app({"COPILOT_HOME": str(tmp_path_factory.mktemp("browser-home")),
                      "KNOWLEDGE_HOME": str(shipped_home), "ENGINE": embedded_engine})
    app.add_url_rule("/test-embed", "test_embed", lambda: EMBED_PAGE)  # a same-origin EHR page with an iframe
    users = app.extensions["copilot.users"]
    users.add(USER, "clinician")
    users.set_password(USER, PASSWORD)
    wsgi = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{wsgi.effective_port}", app=app)
    wsgi.close()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium))
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context (no cookies) at the sidebar's width; fails the test on script
    errors or CSP violations."""
    context = browser.new_context(viewport=VIEWPORT)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda message: problems.append(f"console: {message.text}")
           if message.type == "error" and "Content Security Policy" in message.text else None)
    yield tab
    context.close()
    assert problems == [], problems


def wait_until(page, predicate: str, timeout: float = 30.0, what: str = "") -> None:
    """Poll a JS predicate (a function expression) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(predicate):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def sign_in(page, user: str = USER, password: str = PASSWORD) -> None:
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
