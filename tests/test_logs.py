"""Logging of the service: our events at the chosen level, a rotated file, no third-party chatter."""

from __future__ import annotations

import logging
import logging.handlers

from copilot.logs import configure


def test_file_logging_rotates_and_keeps_library_debug_out(tmp_path):
    log_file = tmp_path / "logs" / "copilot.log"
    try:
        configure("DEBUG", log_file)
        handlers = logging.getLogger().handlers
        rotating = [h for h in handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
        assert len(rotating) == 1 and rotating[0].maxBytes == 10 * 1024 * 1024 and rotating[0].backupCount == 5
        logging.getLogger("copilot.serve").info("serving on 127.0.0.1:8000")
        logging.getLogger("bm25s").debug("Building index from IDs objects")  # bm25s sets itself to DEBUG
        logging.getLogger("bm25s").warning("a real problem")
        for handler in handlers:
            handler.flush()
        text = log_file.read_text()
        assert "copilot.serve: serving on 127.0.0.1:8000" in text
        assert "Building index" not in text and "a real problem" in text
    finally:
        configure("WARNING")
