"""Limits on failed sign-ins, per user name and per client address, counted in memory.

Only failures count (a moving window, the ``limits`` library that flask-limiter is built on).
Once a name or an address has used its allowance, sign-in is refused with 429 and Retry-After
until the window has moved on, even with the right password; the moment a limit is reached is
written to the audit log once (``login-lockout``), not every refused attempt, so a flood of
guesses cannot flood the log. A successful sign-in clears its user name's count. Counts live in
the server process: a restart forgets them, and several server processes count separately.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Lockout:
    kind: str  # "user" or "address"
    key: str
    limit: str


class LoginLimits:
    def __init__(self, per_user: str, per_address: str):
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._limits = {"user": parse(per_user), "address": parse(per_address)}

    def retry_after(self, user: str, address: str) -> int | None:
        """Seconds until a sign-in may be tried again, or None when it may be tried now."""
        waits = []
        for kind, key in (("user", user.lower()), ("address", address)):
            limit = self._limits[kind]
            if not self._limiter.test(limit, kind, key):
                reset = self._limiter.get_window_stats(limit, kind, key).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits) if waits else None

    def failed(self, user: str, address: str) -> list[Lockout]:
        """Count a failed sign-in; the limits it has just used up (to audit, once each)."""
        reached = []
        for kind, key in (("user", user.lower()), ("address", address)):
            limit = self._limits[kind]
            self._limiter.hit(limit, kind, key)
            if not self._limiter.test(limit, kind, key):
                reached.append(Lockout(kind, key, str(limit)))
        return reached

    def succeeded(self, user: str) -> None:
        self._limiter.clear(self._limits["user"], "user", user.lower())
