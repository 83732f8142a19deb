"""Logging for the copilot's processes: our messages at the chosen level, third-party chatter off.

Some libraries log below WARNING on every call (bm25s sets its own logger to DEBUG and logs each
index it builds, that is, every draft); a hospital's log should hold the service's own events.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = {"bm25s", "urllib3", "httpx", "httpcore", "PIL", "matplotlib", "faiss", "sentence_transformers",
         "transformers", "presidio-analyzer", "jieba", "filelock", "nncf"}
ROTATE_BYTES = 10 * 1024 * 1024
KEEP = 5


class QuietLibraries(logging.Filter):
    """Below WARNING, only our own records pass. A filter on the handlers, not a level on the
    libraries' loggers: a library imported later (bm25s, with the first draft) resets its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET


def configure(level: str | int = "WARNING", log_file: Path | None = None) -> None:
    """Log to stderr (and, with ``log_file``, to a file rotated at 10 MiB, 5 kept)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=ROTATE_BYTES, backupCount=KEEP,
                                                             encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(QuietLibraries())
        root.addHandler(handler)
    root.setLevel(level)
