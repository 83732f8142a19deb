from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MINI, write_sources


@pytest.fixture
def mini_sources(tmp_path) -> Path:
    return write_sources(tmp_path / "sources", MINI)
