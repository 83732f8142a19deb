"""The sidebar in a real browser: sign in, draft from a sample with streaming and highlighted unsupported
claims, QC with evidence highlighting, edit/accept/copy, keyboard-only use, an iframe, and 380 px width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from copilot.web.sidebar import load_samples

from tests.helpers import BROWSER_ARTIFACTS as ARTIFACTS
from tests.helpers import BROWSER_PASSWORD, BROWSER_USER, no_horizontal_scroll, sign_in, wait_until

pytestmark = pytest.mark.browser

SAMPLE = "aci-d2n083-elbow"  # its record holds an aspirin allergy and ibuprofen: QC always has a finding
SECTIONS = ("chief_complaint", "hpi", "assessment_plan")
DRAFT_TIMEOUT = 60

# Records, on every change of the note card, how much section text there is and whether the draft is final.
TRACE = """() => {
  const card = document.querySelector('#note-card');
  window.__trace = [];
  const sample = () => window.__trace.push({
    t: performance.now(),
    chars: [...card.querySelectorAll('.section-text')].reduce((n, el) => n + el.textContent.length, 0),
    streaming: card.querySelectorAll('.note-section.streaming').length,
    final: document.querySelector('#metrics').classList.contains('final'),
  });
  new MutationObserver(sample).observe(card, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
DRAFT_OVER = ("() => document.querySelector('#metrics').classList.contains('final')"
              " || !document.querySelector('#error').hidden")
SELECTION = "() => { const e = document.querySelector('#note-editor'); return e.value.slice(e.selectionStart, e.selectionEnd); }"


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_sidebar(page, server) -> None:
    page.goto(server.url + "/sidebar")
    expect(page).to_have_url(re.compile(r"/login\?next=.*sidebar"))
    sign_in(page, BROWSER_USER, BROWSER_PASSWORD)
    expect(page).to_have_url(re.compile(r"/sidebar$"))
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def test_sign_in_draft_stream_highlight_qc_edit_accept_copy(page, server):
    page.goto(server.url + "/sidebar")
    expect(page).to_have_url(re.compile(r"/login\?next=.*sidebar"))
    shot(page, "01-login.png")
    sign_in(page, BROWSER_USER, BROWSER_PASSWORD)
    expect(page).to_have_url(re.compile(r"/sidebar$"))
    expect(page.locator(".who-name")).to_have_text(BROWSER_USER)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    page.select_option("#sample", SAMPLE)
    expect(page.locator("#transcript")).to_have_value(re.compile(r"^\[doctor\] "))
    expect(page.locator("#record-summary")).to_contain_text("aspirin")
    for section in SECTIONS:
        page.check(f"#section-soap-{section}")
    shot(page, "02-encounter.png")

    page.evaluate(TRACE)
    page.click("#draft-btn")
    expect(page.locator("#stop-btn")).to_be_enabled()
    wait_until(page, "() => window.__trace.some(e => e.chars > 0 && !e.final)", 60, "the first streamed text")
    shot(page, "03-streaming.png")
    wait_until(page, DRAFT_OVER, DRAFT_TIMEOUT, "the draft to finish")
    assert page.locator("#error").is_hidden(), page.locator("#error-text").text_content()

    trace = page.evaluate("() => window.__trace")
    before_done = [e for e in trace if not e["final"]]
    lengths = [e["chars"] for e in before_done]
    assert len(set(lengths)) >= 5 and lengths == sorted(lengths), "the text did not grow step by step before done"
    assert any(e["streaming"] for e in before_done), "no section was shown as streaming"
    titles = page.locator(".note-section h3").all_text_contents()
    assert titles == ["Chief complaint", "History of present illness", "Assessment and plan"]
    texts = page.locator(".note-section .section-text").all_text_contents()
    assert all(len(text.strip()) > 10 for text in texts), f"a section was left (nearly) empty: {texts}"
    assert page.locator(".note-section.pending, .note-section.streaming").count() == 0

    marks = page.locator("#note-sections mark.unsupported")
    assert marks.count() >= 1, f"no unsupported span highlighted for sample {SAMPLE} ({', '.join(SECTIONS)})"
    reason = marks.first.get_attribute("title")
    assert reason.startswith("Unsupported: ") and len(reason) > 20
    legend = page.locator("#unsupported-list li")
    assert legend.count() == marks.count()
    assert all(text.strip() for text in page.locator("#unsupported-list .claim-reason").all_text_contents())
    expect(page.locator("#unsupported-count")).to_have_text(str(marks.count()))

    assert float(page.locator("#m-tps").text_content()) > 0
    expect(page.locator("#m-ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#status")).to_contain_text("Draft ready")
    note = page.input_value("#note-editor")
    assert note.startswith("CHIEF COMPLAINT\n\n")
    marks.first.scroll_into_view_if_needed()
    shot(page, "04-drafted.png")
    assert no_horizontal_scroll(page)

    # QC on the draft (with the sample's record: the aspirin allergy meets ibuprofen)
    page.click("#qc-btn")
    expect(page.locator("#qc-summary")).to_contain_text("finding", timeout=30_000)
    findings = page.locator("#findings > li")
    assert findings.count() >= 1
    expect(page.locator('#findings li[data-rule="medication_safety.allergy"] .sev')).to_have_text("critical")
    for item in findings.all():
        expect(item.locator(".sev")).to_have_text(re.compile(r"^(critical|major|minor)$"))
        expect(item.locator(".finding-meta code")).to_have_text(re.compile(r"^[a-z_]+\.[a-z0-9_]+$"))
    page.locator("#qc-card").screenshot(path=str(ARTIFACTS / "05-qc.png"))

    # Edit the note: QC runs on the current text, and a finding's evidence is selected in the editor
    page.click("#tab-edit")
    page.fill("#note-editor", note + "\n\nIbuprofen 600 mg q.d. with food.")
    expect(page.locator("#qc-summary")).to_have_attribute("data-stale", "true")
    page.click("#tab-review")
    expect(page.locator("#edited-banner")).to_be_visible()
    page.click("#qc-btn")
    finding = page.locator('#findings li[data-rule="documentation.do_not_use"]').last
    expect(finding.locator("mark.qc-evidence")).to_have_text("q.d.")
    finding.locator("button.locate").press("Enter")
    expect(page.locator("#panel-edit")).to_be_visible()
    assert page.evaluate(SELECTION) == "q.d."
    assert page.evaluate("() => document.activeElement.id") == "note-editor"
    expect(finding).to_have_attribute("aria-current", "true")
    shot(page, "06-qc-located.png")

    page.click("#accept-btn")
    expect(page.locator("#accept-btn")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#accept-state")).to_contain_text("Accepted")
    page.click("#copy-btn")
    expect(page.locator("#status")).to_contain_text("copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == page.input_value("#note-editor")
    page.locator("#note-editor").press("Control+End")
    page.keyboard.type(" Reviewed.")
    expect(page.locator("#accept-btn")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#accept-state")).to_contain_text("Edited after acceptance")
    assert no_horizontal_scroll(page)
    shot(page, "07-final.png")
    for width in (360, 420):  # the rest of the sidebar range
        page.set_viewport_size({"width": width, "height": 900})
        assert no_horizontal_scroll(page), f"horizontal scroll at {width} px"


def test_keyboard_only(page, server):
    page.goto(server.url + "/sidebar")
    expect(page.locator("#username")).to_be_focused()  # autofocus
    page.keyboard.type(BROWSER_USER)
    page.keyboard.press("Tab")
    page.keyboard.type(BROWSER_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/sidebar$"))
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    order = []
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.id || document.activeElement.tagName")
        order.append(focused)
        if focused == "sample":
            page.keyboard.press("ArrowDown")  # the first sample
            expect(page.locator("#transcript")).to_have_value(re.compile(r"^\[doctor\] "))
        if focused == "section-soap-chief_complaint":
            page.keyboard.press("Space")
        if focused == "draft-btn":
            break
    assert order[-1] == "draft-btn", order
    for earlier, later in (("sample", "transcript"), ("transcript", "note-type"), ("note-type", "draft-btn")):
        assert order.index(earlier) < order.index(later), order
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused button shows no focus indicator"
    page.keyboard.press("Enter")
    wait_until(page, DRAFT_OVER, DRAFT_TIMEOUT, "the keyboard-started draft")
    assert page.locator("#error").is_hidden(), page.locator("#error-text").text_content()
    assert page.locator(".note-section h3").all_text_contents() == ["Chief complaint"]
    assert page.locator(".note-section .section-text").first.text_content().strip()
    shot(page, "08-keyboard.png")

    # tabs follow the ARIA pattern: arrow keys move between them
    page.focus("#tab-review")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.id") == "tab-edit"
    expect(page.locator("#panel-edit")).to_be_visible()


def test_stop_keeps_the_partial_draft(page, server):
    open_sidebar(page, server)
    page.select_option("#sample", SAMPLE)
    expect(page.locator("#transcript")).to_have_value(re.compile(r"^\[doctor\] "))
    page.check("#section-soap-hpi")
    page.evaluate(TRACE)
    page.click("#draft-btn")
    wait_until(page, "() => window.__trace.some(e => e.chars > 0)", 60, "the first streamed text")
    page.click("#stop-btn")
    expect(page.locator("#status")).to_contain_text("Stopped")
    expect(page.locator("#draft-btn")).to_be_enabled()
    expect(page.locator("#metrics")).not_to_have_class(re.compile(r"\bfinal\b"))
    assert page.input_value("#note-editor").startswith("HISTORY OF PRESENT ILLNESS")


def test_expired_session_goes_to_login(page, server):
    open_sidebar(page, server)
    page.select_option("#sample", SAMPLE)
    expect(page.locator("#transcript")).to_have_value(re.compile(r"^\[doctor\] "))
    page.context.clear_cookies()
    page.click("#draft-btn")
    expect(page).to_have_url(re.compile(r"/login\?next=.*sidebar"))


def test_works_inside_an_iframe(page, server):
    page.goto(server.url + "/test-embed")
    frame = page.frame_locator("#copilot")
    expect(frame.locator("#username")).to_be_visible()
    frame.locator("#username").fill(BROWSER_USER)
    frame.locator("#password").fill(BROWSER_PASSWORD)
    frame.locator("button[type=submit]").click()
    expect(frame.locator("body")).to_have_attribute("data-ready", "true")
    expect(frame.locator("#sample option")).to_have_count(1 + len(load_samples()))  # the placeholder and each sample
    expect(frame.locator("#draft-btn")).to_be_enabled()
    inner = page.frames[1]
    assert inner.url.endswith("/sidebar")
    assert inner.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "09-iframe.png")


def test_client_modules(page, server):
    """The SSE parser and span rendering, in the browser that runs them."""
    page.goto(server.url + "/login")
    result = page.evaluate("""async () => {
      const { FrameSplitter, readEvents } = await import('/static/sse.js');
      const { locate, renderSpans, unitOffset, element } = await import('/static/text.js');
      const splitter = new FrameSplitter();
      const frames = [];
      for (const chunk of ['event: tok', 'en\\r', '\\ndata: {"text": "a"', '}\\r\\n\\r\\n: keep-alive\\n\\n',
                           'event: done\\ndata: {"x":\\ndata: 1}\\n\\nevent: tail\\ndata: {}']) {
        frames.push(...splitter.push(chunk));
      }
      frames.push(...splitter.end());
      const bytes = new TextEncoder().encode('event: token\\ndata: {"text": "肺炎 ok"}\\n\\n');
      const stream = new ReadableStream({ start(c) { c.enqueue(bytes.slice(0, 30)); c.enqueue(bytes.slice(30)); c.close(); } });
      const events = [];
      for await (const e of readEvents(new Response(stream))) events.push(e);
      const box = element('div');
      renderSpans(box, 'a <img src=x onerror=alert(1)> b', [{ start: 2, end: 30 }], (s, t) => element('mark', { text: t }));
      const emoji = 'pain 😖 at L knee';
      return {
        frames, events,
        injected: box.querySelector('img') !== null, marked: box.querySelector('mark').textContent,
        offset: unitOffset(emoji, 8), located: locate(emoji, { start: 7, end: 9, text: 'at' }),
        moved: locate('XX ' + emoji, { start: 7, end: 9, text: 'at' }), gone: locate('no', { start: 0, end: 2, text: 'zz' }),
      };
    }""")
    assert result["frames"] == [{"event": "token", "data": '{"text": "a"}'}, {"event": "done", "data": '{"x":\n1}'},
                                {"event": "tail", "data": "{}"}]
    assert result["events"] == [{"event": "token", "data": {"text": "肺炎 ok"}}]
    assert result["injected"] is False and result["marked"] == "<img src=x onerror=alert(1)>"
    assert result["offset"] == 9 and result["located"] == [8, 10] and result["moved"] == [11, 13]
    assert result["gone"] is None


def test_busy_server_offers_a_retry(page, server):
    open_sidebar(page, server)
    page.select_option("#sample", SAMPLE)
    expect(page.locator("#transcript")).to_have_value(re.compile(r"^\[doctor\] "))
    page.check("#section-soap-chief_complaint")
    page.route("**/api/draft", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "5"}, json={"error": "the engine queue is full; try again shortly"}))
    page.click("#draft-btn")
    expect(page.locator("#error-text")).to_contain_text("busy")
    expect(page.locator("#error-text")).to_contain_text("in 5 s")
    expect(page.locator("#error-text")).to_have_attribute("role", "alert")
    page.unroute("**/api/draft")
    page.click("#retry-btn")
    wait_until(page, DRAFT_OVER, DRAFT_TIMEOUT, "the retried draft")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator(".note-section h3")).to_have_text(["Chief complaint"])


def test_stream_error_keeps_the_partial_text(page, server):
    open_sidebar(page, server)
    page.fill("#transcript", "[doctor] what brings you in?\n[patient] my <b>knee</b> hurts.")
    frames = ('event: start\ndata: {"note_type": "soap", "sections": [{"id": "hpi", "title": "HISTORY OF PRESENT ILLNESS"}]}\n\n'
              'event: section_start\ndata: {"section": "hpi", "title": "HISTORY OF PRESENT ILLNESS"}\n\n'
              'event: token\ndata: {"section": "hpi", "text": "Knee <img src=x> pain"}\n\n'
              'event: error\ndata: {"error": "the model stopped"}\n\n')
    page.route("**/api/draft", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=frames))
    page.click("#draft-btn")
    expect(page.locator("#error-text")).to_contain_text("the model stopped")
    expect(page.locator("#retry-btn")).to_be_visible()
    expect(page.locator(".note-section .section-text")).to_have_text("Knee <img src=x> pain")
    assert page.locator("#note-sections img").count() == 0
    assert page.input_value("#note-editor") == "HISTORY OF PRESENT ILLNESS\n\nKnee <img src=x> pain"
    expect(page.locator("#qc-btn")).to_be_enabled()
