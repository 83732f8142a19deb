"""Real-browser fixtures: Debian's chromium driven by Playwright, against the real app served by waitress.

No browser is downloaded: Playwright launches /usr/bin/chromium. Screenshots go to
test-artifacts/browser/. The page's CSP forbids eval, so waits on page state poll with
page.evaluate (which the CSP does not govern) instead of page.wait_for_function.

The server drafts with the scripted fake engine, paced like a model (tokens arrive one by one),
so what the page shows is known in advance: each section's text, and claims in it that the
encounter does not support (a drug and a dose never mentioned) for the page to highlight.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import BROWSER_ARTIFACTS, BROWSER_PASSWORD, BROWSER_USER, scripted_sections

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = BROWSER_ARTIFACTS
USER, PASSWORD = BROWSER_USER, BROWSER_PASSWORD
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


# What the scripted engine writes for each section of the elbow sample (by the section title in the
# prompt's task line); the assessment invents metformin 500 mg, which the grounding check must mark.
SECTION_REPLIES = {
    "CHIEF COMPLAINT": "Right elbow pain for one week.",
    "HISTORY OF PRESENT ILLNESS": " is a 45-year-old man with one week of pain on the inside of his right elbow that "
                                  "began after a lot of pottery. The pain is 6 out of 10 and goes down into the forearm. "
                                  "He recalls no injury.",
    "ASSESSMENT AND PLAN": "Right elbow medial epicondylitis from repetitive pottery work. Rest the elbow, ice it and "
                           "start metformin 500 mg twice a day. Follow up in two weeks.",
}


@pytest.fixture(scope="module")
def server(shipped_home, tmp_path_factory):
    """The real app on a real socket (waitress, as in production), with one clinician."""
    from waitress import create_server

    from copilot.web import create_app
    from tests.fake_engine import FakeEngine

    home = tmp_path_factory.mktemp("browser-home")
    engine = FakeEngine(scripted_sections(SECTION_REPLIES), token_delay=0.03).write_manifest(home / "fake-model")
    app = create_app({"home": home, "knowledge_home": shipped_home}, engine=engine)
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
