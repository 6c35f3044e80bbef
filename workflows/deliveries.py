"""Outbound webhooks as data: when a delivery is tried, and again, and when it ends.

`routing.fan_out` makes the deliveries of an event (which platform, in what order). A worker `claim`s a
due delivery (a lease of `LEASE_S` seconds, so a worker killed mid-request is retried after it), sends it
(HTTP lives in `workers/`, never here) and `record`s the answer; an acknowledgement releases the binding's
next version to the same platform, which waited for it. After a failure
the next try waits `SCHEDULE_S[attempts - 1]` seconds: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h,
8 h, then 12 h six times — 16 tries, the last 3 days 15 h 42 min after the first (Stripe retries for 3 days). Then it is `dead`
until an operator replays it (`gongji deliveries replay`). The webhook-id is the event id on every try,
so a receiver drops duplicates."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage
from models.settings import number, schedule
from models.types import utcnow

from . import delivery_statements as statements
from . import free_text, platforms, sync
from .actors import public
from .statements import autocommit

DEFAULT_SCHEDULE_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800) + (43200,) * 6
# GONGJI_DELIVERY_SCHEDULE_S="5,30,120" replaces the schedule; GONGJI_DELIVERY_LEASE_S the lease (seconds)
SCHEDULE_S = schedule("GONGJI_DELIVERY_SCHEDULE_S", DEFAULT_SCHEDULE_S, minimum=0.1, maximum=7 * 86400)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
LEASE_S = number("GONGJI_DELIVERY_LEASE_S", 120, minimum=1, maximum=3600)  # retried after this if its worker vanished
GRACE_S = 30.0  # an enqueued delivery is re-enqueued by the periodic pass after this long
D = Delivery.__table__
OPEN = statements.OPEN
_DUE = (sa.select(D.c.id).where(D.c.status.in_(OPEN), D.c.next_attempt_at <= sa.bindparam("now"), ~statements.BLOCKED)
        .order_by(D.c.next_attempt_at).limit(sa.bindparam("batch", type_=sa.Integer))
        .with_for_update(of=D, skip_locked=True))
# a claim waits for a row lock rather than skipping the row: every lock on a delivery is held by a short
# transaction (another claim, a fan-out's predecessor check, a record), and a delivery skipped here would wait
# for the periodic pass (GRACE_S). After another claim commits, its lease makes this one find nothing: its
# `leased_until`, for the whole lease (its `next_attempt_at`, the same time, comes within the horizon GRACE_S
# before the lease ends).
_CLAIM = (sa.select(D, OutboxMessage.__table__.c.payload)
          .join(OutboxMessage.__table__, OutboxMessage.__table__.c.id == D.c.outbox_id)
          .where(D.c.id == sa.bindparam("id"), D.c.status.in_(OPEN), D.c.next_attempt_at <= sa.bindparam("horizon"),
                 ~statements.BLOCKED, statements.not_leased(sa.bindparam("now")))
          .with_for_update(of=D))
_TAKE = sa.update(D).where(D.c.id == sa.bindparam("_id")).values(attempts=sa.bindparam("n"),
                                                                 next_attempt_at=sa.bindparam("t"),
                                                                 leased_until=sa.bindparam("t"))
_ATTEMPT = sa.insert(DeliveryAttempt.__table__)
_LOCK_ONE = sa.select(D).where(D.c.id == sa.bindparam("id")).with_for_update()
_DELIVERED = (sa.update(D).where(D.c.id == sa.bindparam("_id"), D.c.status.in_(OPEN))
              .values(status="delivered", delivered_at=sa.bindparam("t"), last_status_code=sa.bindparam("code"),
                      last_error=None, next_attempt_at=None, leased_until=None)
              .returning(D.c.platform_id, D.c.binding_id, D.c.binding_version))
_FAILED = sa.update(D).where(D.c.id == sa.bindparam("_id")).values(
    status=sa.bindparam("s"), last_status_code=sa.bindparam("code"), last_error=sa.bindparam("error"),
    dead_at=sa.bindparam("dead"), next_attempt_at=sa.bindparam("t"), leased_until=None)


@dataclass(frozen=True)
class Claim:
    """What a worker needs to send one delivery: where, signed with which secrets, which bytes."""
    id: int
    attempt_no: int
    platform_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    payload: dict


def due(db, *, now: datetime | None = None, batch: int = 500) -> list[int]:
    """The periodic pass: due, unblocked deliveries, marked so the next pass leaves them alone a while."""
    now = now or utcnow()
    with db.begin() as s:
        ids = list(s.scalars(_DUE, {"now": now, "batch": batch}))
        if ids:
            s.execute(sa.update(D).where(D.c.id.in_(ids)).values(next_attempt_at=now + timedelta(seconds=GRACE_S)))
    return ids


def claim(db, delivery_id: int, *, now: datetime | None = None) -> Claim | None:
    """Take a delivery for one try, or None if it is not open, not due, blocked, or another try has it."""
    now = now or utcnow()
    postgres = db.kw["bind"].dialect.name == "postgresql"
    if postgres:  # one statement in autocommit (workflows/delivery_statements.py)
        with autocommit(db) as conn:
            found = statements.CLAIM.first(conn, {"id": delivery_id, "horizon": now + timedelta(seconds=GRACE_S),
                                                  "lease": now + timedelta(seconds=LEASE_S), "now": now})
    if postgres:  # the platform after the connection went back: a thread never holds two pooled connections
        if found is None:  # (8 threads waiting for a second one while holding the pool's first deadlock it)
            return None
        attempts, platform_id, event_id, payload = found
        p = platforms.get(db, platform_id)  # cached; the statement checked that it has a URL
        if not p.webhook_url:  # the cache is older than the URL
            platforms.clear_cache()
            p = platforms.get(db, platform_id)
        return Claim(id=delivery_id, attempt_no=attempts, platform_id=p.id, url=p.webhook_url,
                     secrets=p.signing_secrets(now), event_id=event_id,
                     payload=as_sent(payload)) if p.webhook_url else None
    with db.begin() as s:
        row = s.execute(_CLAIM, {"id": delivery_id, "horizon": now + timedelta(seconds=GRACE_S), "now": now}
                        ).mappings().first()
        if row is None:
            return None
        p = platforms.get_in(s, row["platform_id"])
        if not p.webhook_url:
            return None
        s.execute(_TAKE, {"_id": delivery_id, "n": row["attempts"] + 1, "t": now + timedelta(seconds=LEASE_S)})
    return Claim(id=delivery_id, attempt_no=row["attempts"] + 1, platform_id=p.id, url=p.webhook_url,
                 secrets=p.signing_secrets(now), event_id=row["event_id"], payload=as_sent(row["payload"]))


def as_sent(payload: dict) -> dict:
    """An event as it leaves: one stored before operators went unnamed to platforms (`actors.public`) and sent
    again (a retry, a replay) names no member of staff either."""
    transition = (payload.get("data") or {}).get("transition")
    actor = transition.get("actor") if isinstance(transition, dict) else None
    if not isinstance(actor, dict) or actor.get("kind") != "operator" or actor.get("id") is None:
        return payload
    data = {**payload["data"], "transition": {**transition, "actor": public("operator", None)}}
    return {**payload, "data": data}


def record(db, c: Claim, *, status_code: int | None, error: str | None, duration_ms: int,
           now: datetime | None = None) -> list[int]:
    """Record one try's answer; returns the ids to send next (the released successor, if any)."""
    now = now or utcnow()
    ok = status_code is not None and 200 <= status_code < 300
    if ok and db.kw["bind"].dialect.name == "postgresql":  # one statement in autocommit
        with autocommit(db) as conn:
            row = statements.DELIVERED.first(conn, {"id": c.id, "n": c.attempt_no, "t": now,
                                                     "code": status_code, "ms": duration_ms})
            if row is None or row[1] is None:  # replayed or finished meanwhile by another try
                return []
            return _release(conn, *row, now)
    with db.begin() as s:
        if ok:  # the common case in four statements: the try, the delivery, the acknowledgement, the successor
            s.execute(_ATTEMPT, dict(delivery_id=c.id, attempt_no=c.attempt_no, at=now, status_code=status_code,
                                     error=None, duration_ms=duration_ms))
            row = s.execute(_DELIVERED, {"_id": c.id, "t": now, "code": status_code}).first()
            if row is None or row.binding_id is None:  # replayed or finished meanwhile by another try
                return []
            sync.acknowledge(s, row.platform_id, row.binding_id, row.binding_version, now)
            return _release(s, row.platform_id, row.binding_id, row.binding_version, now)
        row = s.execute(_LOCK_ONE, {"id": c.id}).mappings().one()
        error = free_text.clean(error, limit=2000)  # a receiver's answer may echo anything: masked as free text
        s.execute(_ATTEMPT, dict(delivery_id=c.id, attempt_no=c.attempt_no, at=now, status_code=status_code,
                                 error=error or f"HTTP {status_code}", duration_ms=duration_ms))
        if row["status"] not in OPEN or row["attempts"] != c.attempt_no:  # finished meanwhile by another try,
            return []  # or another claim came since (this one's lease ran out; a replay): that try decides
        dead = row["attempts"] >= MAX_ATTEMPTS
        s.execute(_FAILED, {"_id": c.id, "s": "dead" if dead else "failing", "code": status_code, "error": error,
                            "dead": now if dead else None,
                            "t": None if dead else now + timedelta(seconds=SCHEDULE_S[row["attempts"] - 1])})
        return []


def _release(s, platform_id: str, binding_id: str, version: int, now: datetime) -> list[int]:
    """Make the next open delivery of the binding to the platform due now (it was blocked); [its id] or []."""
    return [found[0] for found in statements.RELEASE.rows(
        s, {"p": platform_id, "b": binding_id, "v": version, "t": now + timedelta(seconds=GRACE_S)})]
