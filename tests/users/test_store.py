"""Users and sessions on every backend: the HOME/users.db file, and the instance database (SQLite, and
PostgreSQL marked `postgres`) that replicas share when COPILOT_DATABASE_URL is set."""

from __future__ import annotations

import pytest

from copilot.config import Settings
from copilot.users.store import SharedUserStore, UserError, UserStore, open_user_store


@pytest.fixture(params=["file", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request, tmp_path):
    """A factory of stores that see the same users, as two servers would."""
    if request.param == "file":
        return lambda: UserStore(tmp_path / "users.db")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'copilot.db'}"
    else:
        url = request.getfixturevalue("postgres_server")()
    return lambda: SharedUserStore(url)


def test_users_tokens_passwords_and_sessions_are_shared(stores):
    one, two = stores(), stores()
    token = one.add("dr.lee", "clinician")
    assert two.by_token(token).name == "dr.lee"
    with pytest.raises(UserError, match="already exists"):
        two.add("dr.lee", "admin")
    one.set_password("dr.lee", "a long enough passphrase")
    user = two.check_login("dr.lee", "a long enough passphrase")
    assert user is not None and two.check_login("dr.lee", token) is None
    session = user.get_id()
    assert one.session_user(session).name == "dr.lee"
    two.end_sessions("dr.lee")  # signing out on one server ends the session on the other
    assert one.session_user(session) is None
    new = one.rotate_token("dr.lee")
    assert two.by_token(token) is None and two.by_token(new).role == "clinician"
    two.add("qc.wu", "dept_qc", department="Cardiology")
    assert [(u.name, u.department) for u in one.list()] == [("dr.lee", None), ("qc.wu", "Cardiology")]
    one.set_disabled("qc.wu", True)
    assert two.get("qc.wu").disabled and not two.get("qc.wu").is_active
    with pytest.raises(UserError, match="no such user"):
        two.set_disabled("nobody", True)
    with pytest.raises(UserError, match="needs a department"):
        one.add("qc.x", "dept_qc")


def test_the_settings_choose_the_store(tmp_path, monkeypatch):
    assert type(open_user_store(Settings(home=tmp_path / "a"))) is UserStore
    monkeypatch.setenv("COPILOT_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    store = open_user_store(Settings(home=tmp_path / "b"))
    assert isinstance(store, SharedUserStore)
    store.add("admin1", "admin")
    assert not (tmp_path / "b" / "users.db").exists() and (tmp_path / "a" / "users.db").exists()
