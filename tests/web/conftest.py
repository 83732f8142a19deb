"""Users for each role, bearer headers, and a form login that returns the CSRF token."""

from __future__ import annotations

import pytest

from tests.helpers import csrf_from

ROLE_USERS = {"clinician": "clin", "qc_staff": "qc", "admin": "adm"}


@pytest.fixture
def tokens(app) -> dict[str, str]:
    store = app.extensions["copilot.users"]
    return {role: store.add(name, role) for role, name in ROLE_USERS.items()}


@pytest.fixture
def auth(tokens):
    def headers(role: str = "clinician") -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}
    return headers


@pytest.fixture
def login(tokens):
    """Sign the test client in through the form (token as secret); returns the page's CSRF token."""
    def sign_in(client, role: str = "clinician") -> str:
        page = client.get("/login")
        response = client.post("/login", data={"username": ROLE_USERS[role], "password": tokens[role],
                                               "csrf_token": csrf_from(page.get_data(as_text=True))})
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
        return csrf_from(client.get("/login").get_data(as_text=True))
    return sign_in
