"""A scratch copilot instance on 127.0.0.1 for the load and chaos benchmarks.

The prepared instance's models and knowledge are linked in (read-only use), and users, audit
log and jobs are fresh, so the real instance is never touched. `Server` runs the real
`copilot serve` as a child process, which the chaos benchmark kills and restarts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROLES = ("clinician", "qc_staff", "admin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_home(source_home: Path, home: Path | None = None) -> tuple[Path, dict[str, str]]:
    """A new instance directory linked to ``source_home``'s models and knowledge; one user per role."""
    from copilot.users import UserStore

    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="copilot-scratch-"))
    home.mkdir(parents=True, exist_ok=True)
    for part in ("models", "knowledge"):
        if not (source_home / part).is_dir():
            sys.exit(f"{source_home / part} is missing: run `make setup` (or `copilot model prepare` and "
                     "`copilot knowledge build`) first, or pass --home")
        (home / part).symlink_to((source_home / part).resolve())
    store = UserStore(home / "users.db")
    return home, {role: store.add(f"bench-{role}", role) for role in ROLES}


class Server:
    """`copilot serve` on a free local port for ``home``; start, stop, kill -9, start again."""

    def __init__(self, home: Path, threads: int | None = None, extra: list[str] | tuple = (), log: Path | None = None):
        self.home = Path(home)
        self.threads, self.extra = threads, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log) if log else self.home / "serve.log"
        self.process: subprocess.Popen | None = None
        self.deaths = 0  # exits nobody asked for
        self._counted = False

    def start(self, timeout: float = 240) -> None:
        command = [sys.executable, "-m", "copilot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   *(["--threads", str(self.threads)] if self.threads else []), *self.extra]
        env = dict(os.environ, COPILOT_HOME=str(self.home))
        env.pop("COPILOT_KNOWLEDGE_HOME", None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._counted = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.process.kill()
        raise RuntimeError(f"the server did not become healthy within {timeout:.0f} s; see {self.log}")

    def alive(self) -> bool:
        """True while it runs; an exit nobody asked for is counted as a death."""
        if self.process is None:
            return False
        if self.process.poll() is None:
            return True
        if not self._counted:
            self.deaths += 1
            self._counted = True
        return False

    def kill(self) -> None:
        """kill -9: no clean-up of any kind, as a power cut or the OOM killer would."""
        self.alive()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.alive()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
