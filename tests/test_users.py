import sqlite3

import pytest

from copilot.users import UserError, UserStore


def test_tokens_are_shown_once_and_stored_hashed(tmp_path):
    store = UserStore(tmp_path / "users.db")
    token = store.add("dr.lee", "clinician")
    assert store.by_token(token).name == "dr.lee"
    raw = sqlite3.connect(tmp_path / "users.db").execute("SELECT * FROM users").fetchall()
    assert token not in repr(raw)
    new = store.rotate_token("dr.lee")
    assert store.by_token(token) is None and store.by_token(new).role == "clinician"


@pytest.mark.parametrize("name, role, message", [
    ("../etc", "clinician", "invalid user name"), ("ok", "root", "unknown role"), ("", "admin", "invalid")])
def test_bad_users(tmp_path, name, role, message):
    with pytest.raises(UserError, match=message):
        UserStore(tmp_path / "u.db").add(name, role)


def test_duplicates_short_passwords_and_logins(tmp_path):
    store = UserStore(tmp_path / "users.db")
    token = store.add("qc1", "qc_staff")
    with pytest.raises(UserError, match="already exists"):
        store.add("qc1", "admin")
    with pytest.raises(UserError, match="at least"):
        store.set_password("qc1", "short")
    assert store.check_login("qc1", token).role == "qc_staff"
    store.set_password("qc1", "a long enough passphrase")
    assert store.check_login("qc1", token) is None
    assert store.check_login("qc1", "a long enough passphrase").name == "qc1"
    store.set_disabled("qc1", True)
    assert store.check_login("qc1", "a long enough passphrase") is None


def test_cli_users(tmp_path, monkeypatch, capsys):
    from copilot.cli import main

    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    assert main(["users", "add", "nurse.kim", "--role", "clinician"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert UserStore(tmp_path / "users.db").by_token(token).name == "nurse.kim"
    assert main(["users", "add", "nurse.kim", "--role", "clinician"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "list"]) == 0 and "nurse.kim\tclinician\tactive" in capsys.readouterr().out
