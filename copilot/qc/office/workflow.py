"""A finding's life as a work item: who may move it from which state to which, and why.

    open ──confirm──> confirmed ──assign──> assigned ──fix──> fixed
      │                   │                                     │  re-check on a new version of the record:
      └──dismiss(reason)──┴──> dismissed                        │  gone -> rechecked -> closed,
                                                                │  still there -> back to assigned
    A closed (or rechecked) finding that a later version shows again is reopened (open).

Reviewers (dept_qc within their department, qc_staff and admin everywhere) confirm, dismiss with a
reason, assign to a doctor or a department, reopen and close; the responsible or assigned doctor marks
it fixed. The ``system`` actor (re-checks) is the only one that moves findings to rechecked, closes them
on a re-check or reopens them when they return. Every move is one row of qc_finding_events and one audit
entry.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("open", "confirmed", "dismissed", "assigned", "fixed", "rechecked", "closed")
ACTIVE = ("open", "confirmed", "assigned", "fixed")  # a re-check that no longer finds it closes these
REVIEWED = ("confirmed", "dismissed")
ASSIGNEE_TYPES = ("doctor", "department")
REVIEWERS = ("dept_qc", "qc_staff", "admin")
OFFICE_ROLES = ("doctor", "dept_qc", "qc_staff", "admin")
SYSTEM = "system"
MAX_REASON = 500


class WorkflowError(ValueError):
    """A move the workflow does not allow (wrong state, role or missing reason)."""


@dataclass(frozen=True)
class Move:
    action: str
    sources: tuple[str, ...]
    target: str
    roles: tuple[str, ...]
    needs_reason: bool = False
    needs_assignee: bool = False


MOVES = {move.action: move for move in (
    Move("confirm", ("open", "dismissed"), "confirmed", REVIEWERS),
    Move("dismiss", ("open", "confirmed"), "dismissed", REVIEWERS, needs_reason=True),
    Move("assign", ("open", "confirmed", "assigned"), "assigned", REVIEWERS, needs_assignee=True),
    Move("fix", ("confirmed", "assigned"), "fixed", ("doctor",) + REVIEWERS),
    Move("reopen", ("dismissed", "fixed", "closed"), "open", REVIEWERS, needs_reason=True),
    Move("close", ("fixed", "rechecked"), "closed", REVIEWERS),
    # the system's moves, made by re-checks
    Move("recheck", ACTIVE, "rechecked", (SYSTEM,)),
    Move("autoclose", ("rechecked",), "closed", (SYSTEM,)),
    Move("still_present", ("fixed",), "assigned", (SYSTEM,)),
    Move("reappear", ("rechecked", "closed"), "open", (SYSTEM,)),
)}
USER_ACTIONS = tuple(a for a, m in MOVES.items() if SYSTEM not in m.roles)


def check_move(action: str, state: str, role: str, reason: str | None = None, assignee_type: str | None = None,
               assignee: str | None = None) -> Move:
    """The move, or WorkflowError saying why it is not allowed."""
    move = MOVES.get(action)
    if move is None:
        raise WorkflowError(f"unknown action {action!r}; one of {', '.join(USER_ACTIONS)}")
    if role not in move.roles and not (role == "admin" and SYSTEM not in move.roles):
        raise WorkflowError(f"role {role!r} may not {action} a finding")
    if state not in move.sources:
        raise WorkflowError(f"a finding that is {state} cannot be {move.target} by {action!r} "
                            f"(only from {', '.join(move.sources)})")
    if move.needs_reason and not (reason or "").strip():
        raise WorkflowError(f"{action} needs a reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise WorkflowError(f"the reason is longer than {MAX_REASON} characters")
    if move.needs_assignee:
        if assignee_type not in ASSIGNEE_TYPES:
            raise WorkflowError(f"assign needs assignee_type {' or '.join(ASSIGNEE_TYPES)}")
        if not (assignee or "").strip() or len(assignee) > 100:
            raise WorkflowError("assign needs the doctor's user name or the department (at most 100 characters)")
    return move
