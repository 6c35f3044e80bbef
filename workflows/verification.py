"""Face verification: opening an attempt, recording the verifier's result, timing an attempt out.

An attempt times out after the policy's `verification_timeout_s` (seconds) and then counts as failed;
`max_verification_attempts` failed or timed-out attempts end the binding in `verification_failed`.
Opening an attempt writes a `binding.verification_requested` outbox event; a worker asks the provider."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from models import VerificationAttempt
from models.types import new_id

from . import machine, policy, rows, writes
from .actors import Actor
from .errors import DomainError
from .statements import Statement
from .unit import Command, command, retried
from .views import attempt_view, binding_view


VA = VerificationAttempt.__table__
# statements built once (workflows/statements.py); attempts are plain namespaces
_PENDING = Statement(sa.select(VA).where(VA.c.binding_id == sa.bindparam("b"), VA.c.status == "pending"))
_ALL = Statement(sa.select(VA).where(VA.c.binding_id == sa.bindparam("b")))
# no lock: the attempt is written only with its binding's transition, which checks the binding's version
_BY_ID = Statement(sa.select(VA).where(VA.c.id == sa.bindparam("v")))


def _attempt(found: tuple | None) -> SimpleNamespace | None:
    return SimpleNamespace(**dict(zip(_ALL.keys, found))) if found is not None else None


def _pending(cmd: Command, binding_id: str) -> SimpleNamespace | None:
    return _attempt(_PENDING.first(cmd.conn, {"b": binding_id}))


def _close(cmd: Command, attempt: SimpleNamespace, status: str, reason: str | None,
           verifier_id: str | None = None) -> tuple[str, dict]:
    """Close the attempt (in memory); the write that goes with the transition (`writes.transition`)."""
    attempt.status, attempt.completed_at, attempt.reason = status, cmd.now, reason
    attempt.verifier_id = verifier_id or attempt.verifier_id
    return "close_attempt", {"id": attempt.id, **{c: getattr(attempt, c) for c in writes.CLOSE_COLUMNS}}


@retried
def start_verification(db, binding_id: str, actor, *, channel: str | None = None, now=None,
                       platform=None) -> dict:
    """The beneficiary opens a face-verification attempt (or gets the one still open)."""
    with command(db, now=now, platform=platform, optimistic=True) as cmd:
        row = cmd.lock_binding(binding_id)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "start_verification", who, None)
        if not machine.allowed(row.state, "start_verification"):
            raise DomainError("illegal_transition", f"start_verification is not possible in state {row.state}")
        attempts = [_attempt(found) for found in _ALL.rows(cmd.conn, {"b": row.id})]
        attempt = next((a for a in attempts if a.status == "pending"), None)
        if attempt is None:
            pol = policy.by_id(cmd.conn, row.policy_id, row.grantor_region, cmd.now)
            count = len(attempts)
            attempt = SimpleNamespace(id=new_id("ver"), binding_id=row.id, attempt_no=count + 1, status="pending",
                                      opened_at=cmd.now, completed_at=None, reason=None, verifier_id=None,
                                      provider_status=None, provider_session_id=None, provider_requests=0,
                                      provider_error=None,
                                      deadline_at=cmd.now + timedelta(seconds=pol.verification_timeout_s))
            cmd.transition(row, "start_verification", who, channel=channel, attempt_deadline=attempt.deadline_at,
                           extra={"verification": attempt_view(attempt)}, side=("open_attempt", vars(attempt)))
        return {"verification_id": attempt.id, "state": row.state, "attempt": attempt_view(attempt),
                "binding": binding_view(row, row.grantor, row.beneficiary)}


def _fail(cmd: Command, row, attempt: SimpleNamespace, actor: Actor, reason: str, side) -> None:
    pol = policy.by_id(cmd.conn, row.policy_id, row.grantor_region, cmd.now)
    row.failed_verifications = (row.failed_verifications or 0) + 1
    exhausted = row.failed_verifications >= pol.max_verification_attempts
    cmd.transition(row, "verification_failed", actor, reason=reason, attempts_exhausted=exhausted,
                   extra={"verification": attempt_view(attempt)}, side=side)


@retried
def record_verification_result(db, *, verification_id: str, binding_id: str, result: str,
                               verifier_id: str, reason: str | None = None, now=None) -> str:
    """Apply a verifier's `verification.completed`. Returns the outcome; a late or repeated result
    for an attempt that is no longer pending changes nothing (`ignored_<status>`)."""
    if result not in ("passed", "failed"):
        raise DomainError("validation_failed", "result is passed or failed")
    with command(db, now=now, optimistic=True) as cmd:
        row = cmd.lock_binding(binding_id)
        attempt = _attempt(_BY_ID.first(cmd.conn, {"v": verification_id}))
        if attempt is None or attempt.binding_id != row.id:
            raise DomainError("not_found", f"no verification {verification_id} on binding {binding_id}")
        if attempt.status != "pending" or row.state != "invited":
            return f"ignored_{attempt.status}"
        verifier = Actor("verifier", verifier_id)
        closed = _close(cmd, attempt, result, reason, verifier_id)
        if result == "passed":
            cmd.transition(row, "verification_passed", verifier, extra={"verification": attempt_view(attempt)},
                           side=closed)
        else:
            _fail(cmd, row, attempt, verifier, reason or "verification_failed", closed)
        return result


def timeout_attempt(cmd: Command, row) -> None:
    """The sweeper's `verification_timeout`: the open attempt counts as failed."""
    attempt = _pending(cmd, row.id)
    if attempt is None or row.state != "invited":
        from .timers import reschedule
        reschedule(row)
        rows.save(cmd.conn, row)
        return
    _fail(cmd, row, attempt, cmd.timer, "verification_timeout", _close(cmd, attempt, "timed_out", "no result in time"))
