from __future__ import annotations

import pytest

@pytest.fixture(scope="session")
def qc_runner(shipped_snapshot):
    from datetime import date

    from copilot.qc.runner import QCRunner

    return QCRunner(shipped_snapshot, today=date(2026, 12, 1))


@pytest.fixture
def run_qc(qc_runner):
    from copilot.records.loaders import record_from_json

    def run(data: dict) -> list[dict]:
        return qc_runner.check(record_from_json(data))

    return run
