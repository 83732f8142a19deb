"""Admission control: generations get their own budget of server threads, and a caller beyond it
is answered 503 with Retry-After at once.

A streamed generation holds a server thread for as long as it streams. With one thread pool
for everything, a burst of generations took every thread: the next caller waited up to 35 s
for the engine's refusal, and /health and QC calls waited behind them. Here the web tier
admits at most ``slots`` generations (the engine's capacity: what it runs plus what it queues)
and ``copilot serve`` sizes waitress with those slots on top of COPILOT_THREADS, so the threads
for health, metrics, QC and the sidebar are never taken by generation. The engine is only read
through its interface (an optional ``capacity``, else COPILOT_MAX_QUEUE + 1 running).
"""

from __future__ import annotations

import threading

from flask import current_app, g, jsonify

EXTENSION = "copilot.admission"
RETRY_AFTER_S = 5


class Slot:
    """One admitted generation; ``release`` is idempotent (the stream's end and its close both call it)."""

    def __init__(self, gate: Gate):
        self._gate = gate
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._gate._leave()


class Gate:
    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("a generation gate needs at least one slot")
        self.slots = slots
        self._in_use = 0
        self._lock = threading.Lock()

    def enter(self) -> Slot | None:
        """A slot now, or None when every slot is taken (never waits)."""
        with self._lock:
            if self._in_use >= self.slots:
                return None
            self._in_use += 1
        return Slot(self)

    def _leave(self) -> None:
        with self._lock:
            self._in_use -= 1

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use


def capacity(engine, max_queue: int) -> int:
    """Generations the engine accepts at once: its own ``capacity`` when it declares one, else one
    running plus ``max_queue`` waiting (the queue it refuses beyond)."""
    declared = getattr(engine, "capacity", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1:
        return declared
    return max_queue + 1


def init_app(app) -> Gate:
    settings = app.extensions["copilot.settings"]
    gate = Gate(capacity(app.extensions.get("copilot.engine"), settings.max_queue))
    app.extensions[EXTENSION] = gate
    return gate


def server_threads(app) -> int:
    """Waitress threads: the generation slots plus COPILOT_THREADS for everything else."""
    return app.extensions[EXTENSION].slots + app.extensions["copilot.settings"].threads


def gate() -> Gate:
    return current_app.extensions[EXTENSION]


def enter() -> Slot | None:
    return gate().enter()


def busy(message: str | None = None):
    """The 503 a caller beyond the generation budget gets, with when to try again."""
    g.audit_reason = "busy"
    return (jsonify(error=message or "every generation slot is taken; try again shortly"), 503,
            {"Retry-After": str(RETRY_AFTER_S)})
