"""Face verification: opening an attempt, recording the verifier's result, timing an attempt out.

An attempt times out after the policy's `verification_timeout_s` (seconds) and then counts as failed;
`max_verification_attempts` failed or timed-out attempts end the binding in `verification_failed`.
The clock decides, not which comes first: a result that arrives at or after the attempt's deadline times
the attempt out (what the sweeper would have done, had it not been late), and a beneficiary asking for a
verification while the open attempt is overdue gets it timed out and a new one (attempts left permitting).
Opening an attempt writes a `binding.verification_requested` outbox event; a worker asks the provider."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from models import VerificationAttempt
from models.types import new_id

from . import face_sessions, free_text, machine, policy, rows, writes
from .actors import Actor
from .errors import DomainError
from .statements import Statement
from .unit import Command, command, retried
from .views import attempt_view, binding_view


VA = VerificationAttempt.__table__
# statements built once (workflows/statements.py); attempts are plain namespaces
_PENDING = Statement(sa.select(VA).where(VA.c.binding_id == sa.bindparam("b"), VA.c.status == "pending"))
# The binding read together with its attempts (one statement per optimistic command, no lock: an attempt is
# written only with its binding's transition, which checks the binding's version).
_A = VA.alias("a")
_B = rows.B
_ATTEMPT = [_A.c[c.name].label(f"a_{c.name}") for c in VA.columns]
# record_verification_result: the attempt named, if it belongs to this binding
_WITH_ATTEMPT = Statement(rows.select_bindings().add_columns(*_ATTEMPT)
                          .outerjoin(_A, sa.and_(_A.c.id == sa.bindparam("v"), _A.c.binding_id == _B.c.id))
                          .where(_B.c.id == sa.bindparam("binding_id")))
# start_verification: the open attempt, if any, and how many attempts there were
_WITH_OPEN = Statement(rows.select_bindings().add_columns(
    *_ATTEMPT, sa.select(sa.func.count()).where(VA.c.binding_id == _B.c.id).scalar_subquery().label("attempts"))
    .outerjoin(_A, sa.and_(_A.c.binding_id == _B.c.id, _A.c.status == "pending"))
    .where(_B.c.id == sa.bindparam("binding_id")))


def _attempt(found: tuple | None) -> SimpleNamespace | None:
    """An attempt from its columns in table order (None when absent, also from an outer join's NULLs)."""
    if found is None or found[0] is None:
        return None
    return SimpleNamespace(**dict(zip(writes.ATTEMPT_COLUMNS, found)))


def _pending(cmd: Command, binding_id: str) -> SimpleNamespace | None:
    return _attempt(_PENDING.first(cmd.conn, {"b": binding_id}))


def _close(cmd: Command, attempt: SimpleNamespace, status: str, reason: str | None,
           verifier_id: str | None = None) -> tuple[str, dict]:
    """Close the attempt (in memory); the write that goes with the transition (`writes.transition`)."""
    attempt.status, attempt.completed_at, attempt.reason = status, cmd.now, reason
    attempt.verifier_id = verifier_id or attempt.verifier_id
    return "close_attempt", {"id": attempt.id, **{c: getattr(attempt, c) for c in writes.CLOSE_COLUMNS}}


def start_verification(db, binding_id: str, actor, *, channel: str | None = None, now=None,
                       platform=None, version: int | None = None) -> dict:
    """The beneficiary opens a face-verification attempt (or gets the one still open). An open attempt past
    its deadline is timed out first, in its own command (an optimistic command writes once); then the
    binding is read again: another attempt, or 409 illegal_transition when that was the last one allowed.
    `version` (the one the caller saw) is checked by the first command only: the timeout is this request's."""
    while True:
        done = _start_verification(db, binding_id, actor, channel=channel, now=now, platform=platform,
                                   version=version)
        if done is not None:
            return done
        version = None


@retried
def _start_verification(db, binding_id: str, actor, *, channel, now, platform, version) -> dict | None:
    with command(db, now=now, platform=platform, optimistic=True, version=version) as cmd:
        row, rest = cmd.read_binding_joined(binding_id, _WITH_OPEN)
        who = cmd.resolve(actor, row)
        cmd.authorize_actor(row, "start_verification", who, None)
        if not machine.allowed(row.state, "start_verification"):
            raise DomainError("illegal_transition", f"start_verification is not possible in state {row.state}")
        attempt, count = _attempt(rest[:-1]), rest[-1]
        if attempt is not None and _overdue(cmd, attempt):
            _time_out(cmd, row, attempt)
            return None
        if attempt is None:
            pol = policy.by_id(cmd.conn, row.policy_id, row.grantor_region, cmd.now)
            attempt = SimpleNamespace(id=new_id("ver"), binding_id=row.id, attempt_no=count + 1, status="pending",
                                      opened_at=cmd.now, completed_at=None, reason=None, verifier_id=None,
                                      provider_status=None, provider_session_id=None, provider_requests=0,
                                      provider_error=None,
                                      deadline_at=cmd.now + timedelta(seconds=pol.verification_timeout_s))
            cmd.transition(row, "start_verification", who, channel=channel, attempt_deadline=attempt.deadline_at,
                           extra={"verification": attempt_view(attempt)}, side=("open_attempt", vars(attempt)))
        return {"verification_id": attempt.id, "state": row.state, "attempt": attempt_view(attempt),
                "binding": cmd.view or binding_view(row, row.grantor, row.beneficiary)}


def _overdue(cmd: Command, attempt: SimpleNamespace) -> bool:
    """The attempt's deadline has come (the sweeper fires a timer due at `now` too)."""
    return attempt.deadline_at is not None and cmd.now >= attempt.deadline_at


def _time_out(cmd: Command, row, attempt: SimpleNamespace) -> None:
    """The attempt had no result in time: it counts as failed, the system timer the actor."""
    _fail(cmd, row, attempt, cmd.timer, "verification_timeout", _close(cmd, attempt, "timed_out", "no result in time"))


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
    for an attempt that is no longer pending changes nothing (`ignored_<status>`), and one that comes at or
    after the attempt's deadline times the attempt out instead (`ignored_timed_out`), as the sweeper would."""
    if result not in ("passed", "failed"):
        raise DomainError("validation_failed", "result is passed or failed")
    with command(db, now=now, optimistic=True) as cmd:
        row, rest = cmd.read_binding_joined(binding_id, _WITH_ATTEMPT, v=verification_id)
        attempt = _attempt(rest)
        if attempt is None:
            raise DomainError("not_found", f"no verification {verification_id} on binding {binding_id}")
        if not face_sessions.may_answer(cmd.conn, attempt.verifier_id, row.beneficiary.region_code, verifier_id):
            raise DomainError("not_your_binding", f"verification {verification_id} was not asked of {verifier_id}")
        if attempt.status != "pending" or row.state != "invited":
            return f"ignored_{attempt.status}"
        if _overdue(cmd, attempt):
            _time_out(cmd, row, attempt)
            return "ignored_timed_out"
        verifier = Actor("verifier", verifier_id)
        if reason:  # the verifier's words are shown on the attempt and in the history: masked like any
            reason = free_text.clean_about(cmd.conn, reason, (row.grantor_id, row.beneficiary_id))
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
    _time_out(cmd, row, attempt)
