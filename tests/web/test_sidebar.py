"""The sidebar page and its samples, server side: login required, CSP-compatible markup, samples API."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from copilot.records.loaders import record_from_json
from copilot.web import sidebar
from tests.helpers import csrf_from

STATIC = Path(sidebar.__file__).with_name("static")


class Markup(HTMLParser):
    """Collects what a `default-src 'self'` CSP would block or what must be present."""

    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.script_bodies: list[str] = []
        self.inline_handlers: list[tuple[str, str]] = []
        self.style_attrs: list[str] = []
        self.style_elements = 0
        self.urls: list[str] = []
        self.ids: list[str] = []
        self.labels_for: set[str] = set()
        self.controls: list[tuple[str, dict]] = []
        self.buttons: list[dict] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, value in attrs.items():
            if name.startswith("on"):
                self.inline_handlers.append((tag, name))
            if name == "style":
                self.style_attrs.append(tag)
            if name in ("src", "href", "action") and value:
                self.urls.append(value)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self.scripts.append(attrs)
            self._in_script = True
        elif tag == "style":
            self.style_elements += 1
        elif tag == "label" and attrs.get("for"):
            self.labels_for.add(attrs["for"])
        elif tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
            self.controls.append((tag, attrs))
        elif tag == "button":
            self.buttons.append(attrs)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_bodies.append(data)


def parse(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    return markup


def assert_csp_compatible(markup: Markup) -> None:
    assert markup.script_bodies == [], "inline script"
    assert markup.inline_handlers == [], f"inline event handlers: {markup.inline_handlers}"
    assert markup.style_attrs == [], f"style= attributes on {markup.style_attrs}"
    assert markup.style_elements == 0, "inline <style>"
    for url in markup.urls:
        assert not re.match(r"^(https?:)?//", url), f"external resource {url}"
    assert len(markup.ids) == len(set(markup.ids)), "duplicate ids"


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends


def test_root_and_sidebar_redirect_to_login_when_signed_out(client):
    assert client.get("/").headers["Location"].endswith("/sidebar")
    response = client.get("/sidebar", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=") and "sidebar" in response.headers["Location"]


def test_login_page_is_csp_compatible_and_complete(client):
    response = client.get("/login?next=/sidebar")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    markup = parse(html)
    assert_csp_compatible(markup)
    for field in ('name="username"', 'name="password"', 'name="next" value="/sidebar"', 'name="csrf_token"'):
        assert field in html
    assert {"username", "password"} <= markup.labels_for
    assert response.headers.get("X-Frame-Options", "").upper() != "DENY"


def test_failed_login_shows_the_error(client, tokens):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "clin", "password": "nope-nope-nope", "csrf_token": csrf_from(page)})
    assert response.status_code == 401
    assert 'role="alert"' in response.get_data(as_text=True)


def test_login_lands_on_the_sidebar(client, tokens):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "clin", "password": tokens["clinician"], "next": "",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/sidebar")


def test_sidebar_page_markup(client, login):
    login(client, "clinician")
    response = client.get("/sidebar")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    markup = parse(html)
    assert_csp_compatible(markup)
    assert re.search(r'<meta name="csrf-token" content="[^"]+">', html)
    assert [s.get("src") for s in markup.scripts] == ["/static/sidebar.js"]
    assert markup.scripts[0].get("type") == "module"
    assert 'data-role="clinician"' in html
    # every visible form control has a label; every button is a real <button type=...>
    for tag, attrs in markup.controls:
        assert attrs.get("id") in markup.labels_for, f"unlabelled {tag} {attrs}"
    assert all(b.get("type") in ("button", "submit") for b in markup.buttons)
    for required in ("sample", "transcript", "note-type", "draft-btn", "stop-btn", "note-editor", "accept-btn",
                     "copy-btn", "qc-btn", "findings", "status", "metrics"):
        assert required in markup.ids
    assert 'aria-live="polite"' in html and 'role="alert"' in html
    logout = re.search(r'<form method="post" action="/logout".*?</form>', html, re.S)
    assert logout and 'name="csrf_token"' in logout.group(0)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors" in csp
    assert response.headers.get("X-Frame-Options", "").upper() != "DENY"


def test_logout_form_signs_out(client, login):
    login(client, "clinician")
    html = client.get("/sidebar").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_from(html)}).status_code == 302
    assert client.get("/sidebar", headers=HTML).status_code == 302


def test_static_assets_are_local_modules(client):
    for name in ("sidebar.js", "api.js", "sse.js", "text.js", "sidebar.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        body = response.get_data(as_text=True)
        assert not re.search(r"https?://", body), f"{name} references an external URL"
        assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function", body), \
            f"{name} builds markup from strings or evaluates code"
    for name in ("sidebar.js", "api.js", "sse.js", "text.js"):
        for target in re.findall(r'^import .* from "([^"]+)";', (STATIC / name).read_text(), re.M):
            assert target.startswith("./") and (STATIC / target[2:]).is_file(), target


def test_samples_need_a_login(client):
    assert client.get("/api/samples").status_code == 401
    assert client.get("/api/samples/aci-d2n069-knee").status_code == 401


def test_samples_list_and_detail(client, auth):
    response = client.get("/api/samples", headers=auth("qc_staff"))
    assert response.status_code == 200
    listed = response.get_json()["samples"]
    assert 5 <= len(listed) <= 8
    for entry in listed:
        assert set(entry) == {"id", "title", "note_type", "has_record"}
        sample = client.get(f"/api/samples/{entry['id']}", headers=auth("clinician")).get_json()
        assert sample["id"] == entry["id"] and sample["title"] == entry["title"]
        assert sample["transcript"].startswith("[doctor]") and "\n[patient]" in sample["transcript"]
        assert sample["note_type"] == ("outpatient_zh" if sample["id"].startswith("zh-") else "soap")
        if entry["has_record"]:
            record = record_from_json(sample["record"])  # a valid project record
            assert record.medications or record.patient.allergies
    missing = client.get("/api/samples/no-such-sample", headers=auth("clinician"))
    assert missing.status_code == 404 and "no-such-sample" in missing.get_json()["error"]


def test_two_chinese_samples_carry_records_with_chinese_medications_and_allergies(client, auth):
    chinese = [s for s in sidebar.load_samples().values() if s["note_type"] == "outpatient_zh"]
    assert len(chinese) >= 2
    for sample in chinese:
        record = record_from_json(sample["record"])
        assert record.patient.allergies and record.medications
        assert "[patient]" in sample["transcript"] and "医生" in sample["transcript"]


def test_samples_are_attributed():
    sources = (sidebar.SAMPLES_DIR / "SOURCES.md").read_text()
    assert "CC BY 4.0" in sources and "ACI-Bench" in sources
    for sample in sidebar.load_samples().values():
        assert sample["id"] in sources and sample["source"]["file"] in sources


@pytest.mark.parametrize("content, message", [
    ("{not json", "sample.json"),
    ("[]", "a JSON object"),
    (json.dumps({"id": "x", "title": "t", "transcript": "", "note_type": "soap"}), "'transcript'"),
    (json.dumps({"id": "Bad Id", "title": "t", "transcript": "[doctor] hi", "note_type": "soap"}), "lower-case"),
    (json.dumps({"id": "x", "title": "t", "transcript": "[doctor] hi", "note_type": "soap", "record": []}), "'record'"),
])
def test_malformed_samples_fail_loudly(tmp_path, content, message):
    (tmp_path / "sample.json").write_text(content)
    with pytest.raises(sidebar.SampleError, match=re.escape(message)):
        sidebar.load_samples(tmp_path)
