"""Writing state files so that a crash leaves the old version or the new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

# An absolute path in a message: "/" not after a letter, digit, dot, colon or slash (so neither
# "Patient/123" nor "https://host/x" matches), then its components.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"`;,/]+/)*([^\s'\"`;,/]+)")


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """tmp file + fsync + rename + directory fsync; private (0600) unless ``mode`` says otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def without_paths(message: str) -> str:
    """A message for someone outside the server: each absolute path reduced to its last part
    ("no exported model at .../openvino-int8"), so no reply maps the server's disks."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}", message)
