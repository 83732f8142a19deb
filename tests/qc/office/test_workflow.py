"""The state machine of a finding: every move from every state, for every role."""

from __future__ import annotations

import pytest

from copilot.qc.office.workflow import MOVES, STATES, WorkflowError, check_move

ALLOWED = {  # (action, from state) -> target, for a QC staff member
    ("confirm", "open"): "confirmed", ("confirm", "dismissed"): "confirmed",
    ("dismiss", "open"): "dismissed", ("dismiss", "confirmed"): "dismissed",
    ("assign", "open"): "assigned", ("assign", "confirmed"): "assigned", ("assign", "assigned"): "assigned",
    ("fix", "confirmed"): "fixed", ("fix", "assigned"): "fixed",
    ("reopen", "dismissed"): "open", ("reopen", "fixed"): "open", ("reopen", "closed"): "open",
    ("close", "fixed"): "closed", ("close", "rechecked"): "closed",
}


@pytest.mark.parametrize("action", ["confirm", "dismiss", "assign", "fix", "reopen", "close"])
@pytest.mark.parametrize("state", STATES)
def test_every_user_move_from_every_state(action, state):
    extra = {"reason": "why", "assignee_type": "doctor", "assignee": "dr.wang"}
    if (action, state) in ALLOWED:
        assert check_move(action, state, "qc_staff", **extra).target == ALLOWED[(action, state)]
    else:
        with pytest.raises(WorkflowError, match="cannot be"):
            check_move(action, state, "qc_staff", **extra)


@pytest.mark.parametrize("role, action, allowed", [
    ("doctor", "fix", True), ("doctor", "confirm", False), ("doctor", "dismiss", False),
    ("dept_qc", "dismiss", True), ("admin", "assign", True), ("clinician", "confirm", False),
    ("qc_staff", "recheck", False), ("admin", "autoclose", False), ("system", "recheck", True),
    ("system", "confirm", False),
])
def test_who_may_move(role, action, allowed):
    state = next(s for s in MOVES[action].sources)
    extra = {"reason": "why", "assignee_type": "department", "assignee": "心内科"}
    if allowed:
        check_move(action, state, role, **extra)
    else:
        with pytest.raises(WorkflowError, match="may not"):
            check_move(action, state, role, **extra)


def test_reasons_and_assignees_are_required_and_bounded():
    with pytest.raises(WorkflowError, match="needs a reason"):
        check_move("dismiss", "open", "qc_staff")
    with pytest.raises(WorkflowError, match="longer than"):
        check_move("dismiss", "open", "qc_staff", reason="x" * 501)
    with pytest.raises(WorkflowError, match="assignee_type"):
        check_move("assign", "open", "qc_staff", assignee_type="ward", assignee="5A")
    with pytest.raises(WorkflowError, match="user name or the department"):
        check_move("assign", "open", "qc_staff", assignee_type="doctor", assignee=" ")
    with pytest.raises(WorkflowError, match="unknown action"):
        check_move("delete", "open", "admin")
