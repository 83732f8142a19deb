import subprocess
import sys

from copilot.cli import main


def test_help_lists_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    for command in ("model", "serve", "generate", "COPILOT_HOME"):
        assert command in out


def test_prepare_help_documents_formats(capsys):
    try:
        main(["model", "prepare", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "--weight-format" in out and "int4" in out and "--model" in out


def test_prepare_missing_model_path_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(tmp_path))
    assert main(["model", "prepare", "--model", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_generates(embedded_model, embedded_settings):
    done = subprocess.run(
        [sys.executable, "-m", "copilot", "generate", "Define tachycardia in one sentence.", "--max-new-tokens", "24",
         "--model-dir", str(embedded_model)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert '"generated_tokens"' in done.stderr
