"""Face verification: opening an attempt, recording the verifier's result, timing an attempt out.

An attempt times out after the policy's `verification_timeout_s` (seconds) and then counts as failed;
`max_verification_attempts` failed or timed-out attempts end the binding in `verification_failed`.
Opening an attempt writes a `binding.verification_requested` outbox event; a worker asks the provider."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import VerificationAttempt

from . import machine, policy, rows
from .actors import Actor
from .errors import DomainError
from .unit import Command, command
from .views import attempt_view, binding_view


def _pending(cmd: Command, binding_id: str) -> VerificationAttempt | None:
    return cmd.session.scalar(sa.select(VerificationAttempt).where(
        VerificationAttempt.binding_id == binding_id, VerificationAttempt.status == "pending"))


def start_verification(db, binding_id: str, actor, *, channel: str | None = None, now=None) -> dict:
    """The beneficiary opens a face-verification attempt (or gets the one still open)."""
    with command(db, now=now) as cmd:
        row = cmd.lock_binding(binding_id)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "start_verification", who, None)
        if not machine.allowed(row.state, "start_verification"):
            raise DomainError("illegal_transition", f"start_verification is not possible in state {row.state}")
        attempt = _pending(cmd, row.id)
        if attempt is None:
            pol = policy.by_id(cmd.session, row.policy_id, row.grantor_region, cmd.now)
            count = cmd.session.scalar(sa.select(sa.func.count()).where(VerificationAttempt.binding_id == row.id))
            attempt = VerificationAttempt(binding_id=row.id, attempt_no=count + 1, status="pending",
                                          opened_at=cmd.now,
                                          deadline_at=cmd.now + timedelta(seconds=pol.verification_timeout_s))
            cmd.session.add(attempt)
            cmd.session.flush()
            cmd.transition(row, "start_verification", who, channel=channel, attempt_deadline=attempt.deadline_at,
                           extra={"verification": attempt_view(attempt)})
        return {"verification_id": attempt.id, "state": row.state, "attempt": attempt_view(attempt),
                "binding": binding_view(row, row.grantor, row.beneficiary)}


def _fail(cmd: Command, row, attempt: VerificationAttempt, actor: Actor, reason: str) -> None:
    pol = policy.by_id(cmd.session, row.policy_id, row.grantor_region, cmd.now)
    row.failed_verifications = (row.failed_verifications or 0) + 1
    exhausted = row.failed_verifications >= pol.max_verification_attempts
    cmd.transition(row, "verification_failed", actor, reason=reason, attempts_exhausted=exhausted,
                   extra={"verification": attempt_view(attempt)})


def record_verification_result(db, *, verification_id: str, binding_id: str, result: str,
                               verifier_id: str, reason: str | None = None, now=None) -> str:
    """Apply a verifier's `verification.completed`. Returns the outcome; a late or repeated result
    for an attempt that is no longer pending changes nothing (`ignored_<status>`)."""
    if result not in ("passed", "failed"):
        raise DomainError("validation_failed", "result is passed or failed")
    with command(db, now=now) as cmd:
        row = cmd.lock_binding(binding_id)
        attempt = cmd.session.get(VerificationAttempt, verification_id)
        if attempt is None or attempt.binding_id != row.id:
            raise DomainError("not_found", f"no verification {verification_id} on binding {binding_id}")
        if attempt.status != "pending" or row.state != "invited":
            return f"ignored_{attempt.status}"
        verifier = Actor("verifier", verifier_id)
        attempt.status, attempt.completed_at, attempt.reason = result, cmd.now, reason
        attempt.verifier_id = verifier_id
        if result == "passed":
            cmd.transition(row, "verification_passed", verifier, extra={"verification": attempt_view(attempt)})
        else:
            _fail(cmd, row, attempt, verifier, reason or "verification_failed")
        return result


def timeout_attempt(cmd: Command, row) -> None:
    """The sweeper's `verification_timeout`: the open attempt counts as failed."""
    attempt = _pending(cmd, row.id)
    if attempt is None or row.state != "invited":
        from .timers import reschedule
        reschedule(row)
        rows.save(cmd.session, row)
        return
    attempt.status, attempt.completed_at, attempt.reason = "timed_out", cmd.now, "no result in time"
    _fail(cmd, row, attempt, cmd.timer, "verification_timeout")
