"""What an operator may do to one binding from the dashboard, each one transaction with its audit row.

`retry` repairs whatever makes the binding stuck (`stuck.of_binding`): an overdue timer is fired now; a
pending state with nothing scheduled gets its timer again; a failed provider request is asked again; dead
deliveries are replayed and failing ones tried now; a platform behind gets the latest event again; an
outbox event a worker failed on is published again. Sends leave after commit through one internal outbox
event (`routing.RETRY_TOPIC`), so nothing is enqueued inside the transaction. `expire`, `unbind` and
`verify_in_person` (the service hall checked the relative's identity documents: `in_person.py`) are the
workflow's own commands with the operator as actor. Each acts on the binding the operator saw: given
`seen` (the version the page showed), a binding that changed since is refused with `changed_since_seen`
(the page may be an hour old, or a colleague acted meanwhile). `reveal` shows an admin one person's ID number
and name and records that it did (never the value). A refused action is audited with its error code."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import Delivery, OutboxMessage, Person, VerificationAttempt

from . import delivery_repair, free_text, in_person, reconcile, routing, rows, stuck, timers
from .actors import Actor
from .delivery_statements import not_leased
from .errors import DomainError
from .operators import OperatorInfo, record, record_refusal
from .unit import Command, command

ROLE_FOR = {"retry": "operator", "expire": "operator", "unbind": "admin", "reveal": "admin",
            "verify_in_person": "operator"}
ENDS_BINDING = frozenset({"expire", "unbind"})  # the actions whose transition ends the binding for good
D, VA, OB = Delivery.__table__, VerificationAttempt.__table__, OutboxMessage.__table__


def clean_reason(reason: str | None) -> str | None:
    """A reason as it is stored and shown to every viewer: trimmed, no whole ID or mobile number in it
    (`free_text.clean`; the binding's persons' names are masked where the binding is known, `_audited`)."""
    return free_text.clean(reason)


def check_allowed(who: OperatorInfo, action: str, reason: str | None, roles: dict | None = None) -> str:
    """The cleaned reason if `who` may do `action` with it; forbidden or reason_required otherwise. `roles`:
    the role each action needs (this module's `ROLE_FOR` unless another module's own is given)."""
    role = (ROLE_FOR if roles is None else roles)[action]
    if not who.can(role):
        raise DomainError("forbidden", f"{action} needs the {role} role")
    if not (cleaned := clean_reason(reason)):
        raise DomainError("reason_required")
    return cleaned


def _audited(db, who: OperatorInfo, action: str, binding_id: str | None, reason: str | None, work, now=None,
             batch_id: str | None = None, seen: int | None = None):
    """Run `work(cmd, reason)` in one command with the audit row; a refusal is audited on its own. `seen`: the
    binding's version the page showed (a binding that changed since is refused `changed_since_seen`)."""
    try:
        reason = check_allowed(who, action, reason)
        with command(db, now=now, version=seen, moved_on="changed_since_seen") as cmd:
            reason = free_text.clean_about_binding(cmd.session, reason, binding_id)
            detail = work(cmd, reason)
            record(cmd.session, who, action, binding_id=binding_id, reason=reason, detail=detail or None,
                   batch_id=batch_id, now=cmd.now)
            return detail
    except DomainError as exc:
        with db() as s:
            reason = free_text.clean_about_binding(s, reason, binding_id)
        record_refusal(db, who, action, exc, binding_id=binding_id, reason=reason, batch_id=batch_id)
        raise


def _repair(cmd: Command, row, reason: str, found: str) -> dict | None:
    """The repair of one stuck reason: what it did ({"deliveries": ids to send now, "verifications": ids to
    ask the provider again, "replayed": dead deliveries made pending, "outbox": events handed to the worker
    again}; empty when it fired or re-armed a timer), or None when there was nothing it could do."""
    s, now, out = cmd.session, cmd.now, {}
    if found == "timer_overdue":
        if row.deadline_at is None or row.deadline_at > now:
            return None
        timers.fire(cmd, row)
        return out
    if found == "past_service_level":
        pending = s.scalar(sa.select(VA.c.deadline_at).where(VA.c.binding_id == row.id, VA.c.status == "pending"))
        timers.reschedule(row, pending)
        rows.save(s, row)
        return out
    if found == "verification_request_failed":
        ids = list(s.scalars(sa.update(VA).where(VA.c.binding_id == row.id, VA.c.status == "pending")
                             .values(provider_status=None, provider_error=None).returning(VA.c.id)))
        out["verifications"] = ids
    elif found == "delivery_dead":  # every dead one is replayed; those behind an unacknowledged predecessor wait
        replayed: list[int] = []
        out["deliveries"] = delivery_repair.replay_in(s, delivery_repair.dead_of(row.id), now, replayed)
        out["replayed"] = replayed
    elif found == "delivery_failing":  # a failing one waiting for its next try, or any open one overdue (nothing
        # is trying it); never one a worker is trying (`leased_until` in the future: its first try or a later
        # one), nor a blocked successor (NULL next try): made due now, it would be sent twice or out of order
        out["deliveries"] = list(s.scalars(
            sa.update(D).where(D.c.binding_id == row.id, D.c.next_attempt_at.is_not(None), not_leased(now), sa.or_(
                D.c.status == "failing", sa.and_(D.c.status == "pending", D.c.next_attempt_at < now)))
            .values(next_attempt_at=now).returning(D.c.id)))
    elif found == "sync_behind":
        out["deliveries"] = reconcile.resend_latest(s, row.id, now)
    elif found == "worker_error":
        ids = list(s.scalars(sa.update(OB).where(OB.c.binding_id == row.id, OB.c.processed_at.is_(None),
                                                 OB.c.last_error.is_not(None))
                             .values(attempts=0).returning(OB.c.id)))
        cmd.messages += ids  # published again after commit
        out["outbox"] = ids
    return out if any(out.values()) else None


def retry(db, who: OperatorInfo, binding_id: str, reason: str | None, *, now: datetime | None = None,
          batch_id: str | None = None, seen: int | None = None) -> dict:
    def work(cmd: Command, why: str) -> dict:
        row = cmd.lock_binding(binding_id)
        reasons = [r["reason"] for r in stuck.of_binding(cmd.session, binding_id, cmd.now)]
        if not reasons:
            raise DomainError("not_stuck")
        sends: dict[str, list] = {"deliveries": [], "verifications": [], "replayed": []}
        idle = []
        for found in reasons:
            done = _repair(cmd, row, why, found)
            if done is None:
                idle.append(found)
                continue
            for key in sends:
                sends[key] += [i for i in done.get(key, ()) if i not in sends[key]]  # a replayed dead one is open too
        if len(idle) == len(reasons):
            raise DomainError("nothing_to_retry", f"stuck ({', '.join(reasons)}), but nothing is left to try again")
        if sends["deliveries"] or sends["verifications"]:
            cmd.emit(routing.RETRY_TOPIC, {k: sends[k] for k in ("deliveries", "verifications")})
        return {"reasons": reasons, **{k: v for k, v in sends.items() if v}, **({"idle": idle} if idle else {})}
    return _audited(db, who, "retry", binding_id, reason, work, now, batch_id, seen)


def _fire(event: str):
    def fire(cmd: Command, row, actor: Actor, why: str) -> tuple[str, str]:
        cmd.authorize_actor(row, event, actor, why)
        return cmd.transition(row, event, actor, channel="dashboard", reason=why)
    return fire


def _transition(event: str, fire=None):
    """An operator's action that is one transition: `fire(cmd, row, actor, reason)` → (from, to), by default
    the event itself (`verify_in_person` checks the regions' policies first: `in_person.check`)."""
    fire = fire or _fire(event)

    def run(db, who: OperatorInfo, binding_id: str, reason: str | None, *, now: datetime | None = None,
            batch_id: str | None = None, seen: int | None = None) -> dict:
        def work(cmd: Command, why: str) -> dict:
            row = cmd.lock_binding(binding_id)
            before, after = fire(cmd, row, Actor("operator", who.username), why)
            return {"from": before, "to": after}
        return _audited(db, who, event, binding_id, reason, work, now, batch_id, seen)
    run.__name__ = event
    run.__doc__ = f"An operator fires `{event}` with a reason, through the workflow's own transition."
    return run


expire = _transition("expire")
unbind = _transition("unbind")
verify_in_person = _transition(in_person.EVENT, lambda cmd, row, actor, why: in_person.check(
    cmd, row, actor, why, channel="dashboard"))
ACTIONS = {"retry": retry, "expire": expire, "unbind": unbind, "verify_in_person": verify_in_person}
BATCHABLE = ("retry", "expire", "unbind")  # one person's documents are checked one at a time, never in a batch


def reveal(db, who: OperatorInfo, binding_id: str, side: str, reason: str | None) -> dict:
    """An admin reads one party's ID number and name; the audit row records that, not the value."""
    if side not in ("grantor", "beneficiary"):
        raise DomainError("validation_failed", "side is grantor or beneficiary")
    shown: dict = {}

    def work(cmd: Command, why: str) -> dict:
        row = rows.get(cmd.session, binding_id)
        person = cmd.session.get(Person, row.grantor_id if side == "grantor" else row.beneficiary_id)
        shown.update(id_number=person.id_number, name=person.name)
        return {"side": side, "person_id": person.id}
    _audited(db, who, "reveal", binding_id, reason, work)
    return shown
