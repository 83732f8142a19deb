"""The QC office's roles and departments on users: new roles, a department where the role needs one, and a
users.db from before the department column migrated in place."""

from __future__ import annotations

import sqlite3

import pytest

from copilot.users import UserError, UserStore


def test_doctor_and_department_qc_roles(tmp_path):
    store = UserStore(tmp_path / "users.db")
    token = store.add("dr.wang", "doctor", department="心内科")
    assert store.by_token(token).department == "心内科"
    with pytest.raises(UserError, match="needs a department"):
        store.add("cardio.qc", "dept_qc")
    store.add("cardio.qc", "dept_qc", department="心内科")
    store.set_department("dr.wang", "神经内科")
    assert store.get("dr.wang").department == "神经内科"
    with pytest.raises(UserError, match="needs a department"):
        store.set_department("cardio.qc", None)
    with pytest.raises(UserError, match="one line"):
        store.set_department("dr.wang", "a\nb")


def test_a_users_database_from_before_gains_the_department_column(tmp_path):
    path = tmp_path / "users.db"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, "
                      "password_hash TEXT, created TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);"
                      "INSERT INTO users VALUES ('old.qc', 'qc_staff', 'abc', NULL, '2026-01-01', 0);")
    old.commit()
    old.close()
    store = UserStore(path)
    assert store.get("old.qc").department is None and store.get("old.qc").role == "qc_staff"
    UserStore(path)  # opening again changes nothing
    assert [c[1] for c in sqlite3.connect(path).execute("PRAGMA table_info(users)")].count("department") == 1


def test_cli_adds_a_department(tmp_path, monkeypatch, capsys):
    from copilot.cli import main

    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    assert main(["users", "add", "neuro.qc", "--role", "dept_qc", "--department", "神经内科"]) == 0
    assert main(["users", "add", "x.qc", "--role", "dept_qc"]) == 2
    assert "needs a department" in capsys.readouterr().err
    assert main(["users", "department", "neuro.qc", "卒中中心"]) == 0
    assert main(["users", "list"]) == 0 and "neuro.qc\tdept_qc\tactive" in capsys.readouterr().out
