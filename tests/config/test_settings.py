"""One settings surface: every COPILOT_* variable typed, documented, and moving with COPILOT_HOME."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from copilot.cli import main
from copilot.config import Settings, markdown_table

REPO = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\bCOPILOT_[A-Z][A-Z0-9_]*\b")
TEST_ONLY = {"COPILOT_TEST_HOME"}  # where the test suite caches the embedded export


def test_the_readme_table_is_generated_from_the_settings():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S)
    assert table, "README lost its settings table markers"
    assert table.group(1) == markdown_table(), "README settings table is stale: paste `copilot config show --markdown`"


def test_every_variable_the_project_mentions_is_a_setting():
    declared = {row["name"] for row in Settings.variables()}
    mentioned = set()
    for folder in ("copilot", "finetune", "knowledge", "benchmarks"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".yaml", ".md", ".html", ".js", ".j2"}:
                mentioned |= set(VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace")))
    for path in (REPO / "Makefile", REPO / "README.md"):
        mentioned |= set(VARIABLE.findall(path.read_text(encoding="utf-8")))
    assert mentioned - TEST_ONLY <= declared, sorted(mentioned - TEST_ONLY - declared)


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for folder in ("copilot", "finetune", "knowledge"):
        for path in (REPO / folder).rglob("*.py"):
            if "os.environ" in path.read_text(encoding="utf-8") or "os.getenv" in path.read_text(encoding="utf-8"):
                readers.append(path.relative_to(REPO).as_posix())
    assert readers == ["copilot/config/__init__.py"], readers


def test_environment_values_are_typed_and_validated(monkeypatch, tmp_path):
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("COPILOT_MAX_QUEUE", "3")
    monkeypatch.setenv("COPILOT_COOKIE_SECURE", "1")
    settings = Settings()
    assert settings.max_queue == 3 and settings.cookie_secure is True and settings.home == tmp_path.resolve()
    for name, bad in (("COPILOT_MAX_QUEUE", "lots"), ("COPILOT_WEIGHT_FORMAT", "int3"), ("COPILOT_PORT", "0"),
                      ("COPILOT_QC_JURISDICTION", "FR"), ("COPILOT_DEID_KEY", " ")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("COPILOT_NO_SUCH_THING", "1")  # an unknown COPILOT_ variable is not an error of ours
    Settings()


def test_a_home_override_moves_every_derived_path(tmp_path):
    settings = Settings(home=tmp_path / "elsewhere")
    home = (tmp_path / "elsewhere").resolve()
    derived = [settings.models_dir, settings.export_dir(), settings.checkpoint_dir(), settings.served_model_dir,
               settings.knowledge_dir, settings.users_db, settings.audit_db, settings.qc_jobs_dir, settings.cache_dir,
               settings.finetune_dir, settings.secret_key_file, settings.deid_key_file]
    assert all(home in path.parents or path == home for path in derived), derived
    assert Settings(home=tmp_path, knowledge_home=tmp_path / "kb").knowledge_dir == (tmp_path / "kb").resolve()


def test_create_app_builds_from_the_settings_and_moves_the_model(tmp_path, fake_engine):
    from copilot.web import create_app

    app = create_app({"TESTING": True, "home": tmp_path / "h"})
    assert "copilot model prepare" in app.extensions["copilot.engine_error"]
    assert str((tmp_path / "h" / "models").resolve()) in app.extensions["copilot.engine_error"]
    assert Path(app.instance_path) == (tmp_path / "h").resolve()
    with pytest.raises(ValueError, match="unknown settings"):
        create_app({"homme": tmp_path}, engine=fake_engine)


def test_the_deid_key_is_created_private_and_never_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("COPILOT_DEID_KEY", raising=False)
    settings = Settings(home=tmp_path)
    key = settings.deid_secret()
    assert len(key) == 64 and key == settings.deid_secret()
    assert stat.S_IMODE(settings.deid_key_file.stat().st_mode) == 0o600
    settings.deid_key_file.write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        settings.deid_secret()
    assert Settings(home=tmp_path, deid_key="from-the-vault").deid_secret() == "from-the-vault"


def test_config_show_prints_every_variable_and_masks_secrets(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("COPILOT_DEID_KEY", "do-not-print-me")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert all(row["name"] in out for row in Settings.variables())
    assert "do-not-print-me" not in out and "(set)" in out
    assert re.search(r"COPILOT_HOME\s+\*\s+" + re.escape(str(tmp_path.resolve())), out)
    assert main(["config", "show", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()


def test_bad_settings_stop_a_command_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_MAX_QUEUE", "many")
    with pytest.raises(SystemExit) as stop:
        main(["config", "show"])
    assert "COPILOT_MAX_QUEUE" in str(stop.value) and "invalid settings" in str(stop.value)
