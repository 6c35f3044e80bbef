"""Which platform gets which outbound event, and in what order: the fan-out of an outbox event into one
`Delivery` per platform it concerns (the national platform, the grantor's and the beneficiary's provinces,
each only if it registered a webhook URL).

Deliveries of one (platform, binding) leave in version order: while an earlier version is not yet
acknowledged the later one is *blocked* (`next_attempt_at` NULL) and is released when its predecessor is
acknowledged (`deliveries.record`), or by `delivery_repair.replay` of a dead predecessor followed by its
delivery. Trying a delivery, its retry schedule and its end are `workflows/deliveries.py`."""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models import Delivery, OutboxMessage
from models.types import utcnow

from . import platforms, rows, settlements
from .deliveries import GRACE_S
from .persons import province_of
from .statements import Statement

D = Delivery.__table__
# locked in version order, the order `record` locks a delivery and then releases its successor in (one
# transaction on SQLite, two statements on PostgreSQL): a fan-out and an acknowledgement of the same binding
# queue instead of deadlocking
_unacknowledged = (sa.select(D.c.id).where(D.c.platform_id == sa.bindparam("platform_id"),
                                           D.c.binding_id == sa.bindparam("binding_id"),
                                           D.c.binding_version < sa.bindparam("binding_version"),
                                           D.c.status != "delivered")
                   .order_by(D.c.binding_version, D.c.id).with_for_update())
_PREDECESSORS = Statement(_unacknowledged)
# the fan-out's statements, built once and run on the driver's cursor (workflows/statements.py): it runs
# once per outbound event, and through the ORM session it was a fifth of the worker's CPU over HTTP
O = OutboxMessage.__table__
_EVENT_COLUMNS = (O.c.id, O.c.topic, O.c.binding_id, O.c.binding_version, O.c.payload)
Event = namedtuple("Event", [c.name for c in _EVENT_COLUMNS])
_MESSAGE = Statement(sa.select(*_EVENT_COLUMNS, O.c.fanned_out_at).where(O.c.id == sa.bindparam("id")))
_UNFANNED = Statement(sa.select(*_EVENT_COLUMNS)
                      .where(O.c.binding_id == sa.bindparam("b"), O.c.binding_version <= sa.bindparam("v"),
                             O.c.fanned_out_at.is_(None), O.c.topic.like("binding.%"))
                      .order_by(O.c.binding_version, O.c.id).with_for_update())
_FANNED = Statement(sa.update(O).where(O.c.id == sa.bindparam("_id"))
                    .values(fanned_out_at=sa.bindparam("t", type_=O.c.fanned_out_at.type),
                            processed_at=sa.bindparam("t", type_=O.c.processed_at.type)))
_DELIVERY_COLUMNS = ("outbox_id", "platform_id", "event_id", "topic", "binding_id", "binding_version", "status",
                     "attempts", "next_attempt_at", "created_at")
# an event's delivery to a platform that already exists (an operator's re-send or reconciliation made it
# first) is left as it is: the insert does nothing, so the fan-out still completes (`add`)
_ADD = Statement(sqlite_insert(D).values({c: sa.bindparam(c, type_=D.c[c].type) for c in _DELIVERY_COLUMNS})
                 .on_conflict_do_nothing(index_elements=["outbox_id", "platform_id"]).returning(D.c.id))
# PostgreSQL: the fan-out in four round trips instead of seven (BEGIN, these two, COMMIT). `_LOCK_BATCH`
# locks a binding event's binding's events not yet fanned out (it and any earlier, in version order) and
# marks them fanned out; `_ADD_AFTER` then locks the platform's unacknowledged earlier deliveries and inserts
# this one, held (NULL next_attempt_at) if there were any. They must stay two statements: one statement has
# one snapshot, and after `_LOCK_BATCH` waited for a concurrent fan-out of an earlier version, only a later
# statement sees the delivery that fan-out inserted (and so holds this one behind it).
_m = O.alias("m")
_batch = (sa.select(*_EVENT_COLUMNS).where(
    O.c.binding_id == sa.select(_m.c.binding_id).where(_m.c.id == sa.bindparam("id"),
                                                       _m.c.topic.like("binding.%")).scalar_subquery(),
    O.c.binding_version <= sa.select(_m.c.binding_version).where(_m.c.id == sa.bindparam("id")).scalar_subquery(),
    O.c.fanned_out_at.is_(None), O.c.topic.like("binding.%"))
    .order_by(O.c.binding_version, O.c.id).with_for_update(of=O).cte("ev"))
_LOCK_BATCH = Statement(
    sa.select(*_batch.c).add_cte(
        sa.update(O).where(O.c.id.in_(sa.select(_batch.c.id)))
        .values(fanned_out_at=sa.bindparam("t", type_=O.c.fanned_out_at.type),
                processed_at=sa.bindparam("t", type_=O.c.processed_at.type)).cte("f"))
    .order_by(_batch.c.binding_version, _batch.c.id))
_earlier = _unacknowledged.cte("earlier")
_held = sa.select(sa.func.count()).select_from(_earlier).scalar_subquery() > 0  # count: every one is locked
_ADD_AFTER = Statement(pg_insert(D).from_select(_DELIVERY_COLUMNS, sa.select(*[
    sa.case((_held, sa.null()), else_=sa.bindparam(c, type_=D.c[c].type)) if c == "next_attempt_at"
    else sa.bindparam(c, type_=D.c[c].type) for c in _DELIVERY_COLUMNS])).add_cte(_earlier)
    .on_conflict_do_nothing(constraint="uq_deliveries_event_platform").returning(D.c.id, D.c.next_attempt_at))


def concerned(session, payload: dict) -> list[platforms.PlatformInfo]:
    """The platforms a binding event concerns: national ones and those serving the province of either
    side's pooling region, and for `binding.relocated` also of the regions the binding left
    (`relocated_from`: the province that no longer sees it learns that it left). A settlement event: those
    of the beneficiary's and every paying grantor's region, and always the platform that made the
    settlement (`data.platform_id`): after a person moved, its reversal still reaches the platform whose
    institution was paid."""
    data = payload.get("data") or {}
    held = [data.get("binding") or {}, data.get("relocated_from") or {}]
    regions = {b[k] for b in held for k in rows.REGIONS if b.get(k)}
    settled = data.get("settlement")
    provinces = {province_of(session, r) for r in regions}
    if settled:
        provinces |= settlements.provinces(session, settled)
    settled_by = data.get("platform_id") if settled else None
    return [p for p in platforms.all_platforms(session) if p.webhook_url and p.kind != "verifier"
            and (p.kind == "national" or provinces & set(p.provinces) or p.id == settled_by)]


@dataclass
class FanOut:
    """What `fan_out` did: whether the event was one it handles (and its topic), the deliveries ready to
    send now, and the face-verification attempts whose provider session is to be opened (from
    `binding.verification_requested`)."""
    handled: bool = False
    topic: str | None = None  # the event's topic (None: no such outbox row)
    ready: list[int] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)


FANNED_OUT = ("binding.", "settlement.")
RETRY_TOPIC = "operator.retry_requested"  # internal: never delivered to a platform


def fan_out(db, outbox_id: int, *, now: datetime | None = None) -> FanOut:
    """Create the deliveries of one binding or settlement event (idempotent) and mark it processed, in one
    transaction: the outbox actor needs no other bookkeeping for these events.

    Outbox events are handled by concurrent actors in any order, so a binding event first fans out every
    earlier event of its binding not yet fanned out, in version order, under row locks: the delivery of
    version n always exists before that of n+1, which is what lets n block n+1."""
    now = now or utcnow()
    out = FanOut()
    with db.kw["bind"].connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            batch = [Event(*row) for row in _LOCK_BATCH.rows(conn, {"id": outbox_id, "t": now})]
            if batch:  # a binding event (and any earlier one) to fan out, locked and marked fanned out
                out.handled, out.topic = True, next((e.topic for e in batch if e.id == outbox_id), batch[-1].topic)
                _deliveries_of(conn, batch, now, out)
                return out
        found = _MESSAGE.first(conn, {"id": outbox_id})
        out.topic = found[1] if found is not None else None
        if found is None or not found[1].startswith(FANNED_OUT + (RETRY_TOPIC,)):
            return out
        out.handled = True
        msg, fanned_out_at = Event(*found[:-1]), found[-1]
        if fanned_out_at is not None:
            return out
        if msg.topic == RETRY_TOPIC:  # an operator's retry: what to send again, nothing to deliver itself
            out.ready += msg.payload["data"].get("deliveries", [])
            out.verifications += msg.payload["data"].get("verifications", [])
            _FANNED.run(conn, {"_id": msg.id, "t": now})
            return out
        batch = [msg]
        if msg.binding_id is not None:  # locked, and read again after the locks: what is still to fan out
            batch = [Event(*row) for row in _UNFANNED.rows(conn, {"b": msg.binding_id, "v": msg.binding_version})]
        for event in batch:
            _FANNED.run(conn, {"_id": event.id, "t": now})
        _deliveries_of(conn, batch, now, out)
    return out


def _deliveries_of(conn, batch: list[Event], now: datetime, out: FanOut) -> None:
    for event in batch:
        for p in concerned(conn, event.payload):
            out.ready += add(conn, event, p.id, now)
        if event.topic == "binding.verification_requested":
            out.verifications.append(event.payload["data"]["verification"]["verification_id"])


def blocked(s, platform_id: str, binding_id: str | None, version: int | None) -> bool:
    """Is an earlier version of the binding still unacknowledged by the platform? (locks those rows, so
    their acknowledgement waits for this transaction and then releases what it blocks)"""
    return binding_id is not None and _PREDECESSORS.first(s, {
        "platform_id": platform_id, "binding_id": binding_id, "binding_version": version}) is not None


def first_try(blocked: bool, now: datetime) -> datetime | None:
    """`next_attempt_at` of a delivery about to be sent now (NULL while blocked)."""
    return None if blocked else now + timedelta(seconds=GRACE_S)


def add(s, msg, platform_id: str, now: datetime) -> list[int]:
    """Insert the delivery of one outbox event (an `OutboxMessage`, an `Event` or a row with its columns) to
    one platform, in the caller's transaction (a Session or a Connection); [its id] if it may leave now,
    else [] (an earlier version is unacknowledged: its acknowledgement releases this one; or that delivery
    existed already, and is left as it is). On PostgreSQL
    the predecessors' lock and the insert are one statement (`_ADD_AFTER`)."""
    row = dict(outbox_id=msg.id, platform_id=platform_id, event_id=msg.payload["id"], topic=msg.topic,
               binding_id=msg.binding_id, binding_version=msg.binding_version, status="pending", attempts=0,
               next_attempt_at=first_try(False, now), created_at=now)
    bind = s.connection() if isinstance(s, Session) else s
    if bind.dialect.name == "postgresql":
        added = _ADD_AFTER.first(s, row)
        return [] if added is None or added[1] is None else [added[0]]
    held = blocked(s, platform_id, msg.binding_id, msg.binding_version)
    new_id = _ADD.scalar(s, {**row, "next_attempt_at": first_try(held, now)})
    return [] if held or new_id is None else [new_id]
