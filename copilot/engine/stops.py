"""Hold back streamed text that might be the start of a stop string.

Without this, a client would briefly see "<|im_" or "Assessment:" before the engine
decides to stop: pieces arrive token by token and a stop string can span several.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """``text`` without U+FFFD. The detokenizer writes one for bytes that do not form a character:
    a multi-byte character cut by the token limit (a section ending in "肾结�"), or an invalid
    sequence a small model emits. Neither is text the model meant, so no streamed piece and no
    result carries one; the streamed pieces still join to exactly the result's text."""
    return text.replace(REPLACEMENT, "")


class StopStringFilter:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> list[str]:
        if self.stopped:
            return []
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return [out] if out else []
        hold = max((self._overlap(s) for s in self.stops), default=0)
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        return [out] if out else []

    def flush(self) -> list[str]:
        out, self.pending = self.pending, ""
        return [out] if out and not self.stopped else []

    def _overlap(self, stop: str) -> int:
        """Length of the longest suffix of pending that is a proper prefix of stop."""
        for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
            if self.pending.endswith(stop[:size]):
                return size
        return 0
