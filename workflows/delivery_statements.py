"""A delivery's claim, its acknowledgement and its successor's release as one statement each on
PostgreSQL, run in autocommit.

Why: every outbound event costs a claim and a record. As separate statements in a transaction they were
seven round trips with BEGIN and COMMIT (lock, read the platform, take the lease; the try, the delivery,
the platform's acknowledged version, the successor's release), about a third of the worker's database time
over HTTP (bench/webhooks.py). Now a claim is one statement, and a record two: the acknowledgement, then
the successor's release (see `_delivered` for why it must be a second one). SQLite runs the separate
statements of `workflows.deliveries`; so does a failed try on PostgreSQL (rare, and it reads the row to
decide). `BLOCKED` and `RELEASE` serve both paths."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from models import Delivery, DeliveryAttempt, OutboxMessage, Platform

from . import sync
from .statements import Statement, constant_in

D, O, P = Delivery.__table__, OutboxMessage.__table__, Platform.__table__
DA, S = DeliveryAttempt.__table__, sync.S
OPEN = ("pending", "failing")
_earlier, _later = D.alias("earlier"), D.alias("later")
bp = sa.bindparam

# an earlier version of the delivery's binding to the same platform is not yet acknowledged
BLOCKED = sa.exists().where(_earlier.c.platform_id == D.c.platform_id, _earlier.c.binding_id == D.c.binding_id,
                            _earlier.c.binding_version < D.c.binding_version, _earlier.c.status != "delivered")


def not_leased(now) -> sa.ColumnElement[bool]:
    """No worker is trying the delivery at `now` (a value or a bind parameter): no lease, or one that ran out.
    A claim, and an operator's retry that makes a delivery due, both need it."""
    return sa.or_(D.c.leased_until.is_(None), D.c.leased_until <= now)


# UPDATE … RETURNING waits for a row lock like the SELECT … FOR UPDATE it replaces, then re-checks the row
CLAIM = Statement(
    sa.update(D).where(
        D.c.id == bp("id"), constant_in(D.c.status, OPEN), D.c.next_attempt_at <= bp("horizon"), ~BLOCKED,
        not_leased(bp("now", type_=D.c.leased_until.type)),
        sa.exists().where(P.c.id == D.c.platform_id, P.c.webhook_url.is_not(None)))
    .values(attempts=D.c.attempts + 1, next_attempt_at=bp("lease", type_=D.c.next_attempt_at.type),
            leased_until=bp("lease", type_=D.c.leased_until.type))
    .returning(D.c.attempts, D.c.platform_id, D.c.event_id,
               sa.select(O.c.payload).where(O.c.id == D.c.outbox_id).scalar_subquery().label("payload")),
    final=True)


def _delivered() -> Statement:
    """WITH a AS (INSERT the try), d AS (UPDATE the delivery to delivered RETURNING its binding),
    k AS (raise the platform's acknowledged version FROM d) SELECT the binding FROM d (nothing if the
    delivery was no longer open: replayed or finished by another try).

    The successor is released by a second statement (`RELEASE`), after this one committed: a fan-out of
    the next version that held this delivery's row lock commits before this statement can update the row,
    and only a statement started after that sees its insert (one statement has one snapshot). A worker that
    dies between the two leaves the successor blocked with nothing blocking it: the scheduler's
    `delivery_repair.release_orphans` makes it due."""
    t = bp("t", type_=D.c.delivered_at.type)
    tried = sa.insert(DA).values(delivery_id=bp("id"), attempt_no=bp("n"), at=t, status_code=bp("code"),
                                 error=None, duration_ms=bp("ms")).cte("a")
    done = (sa.update(D).where(D.c.id == bp("id"), constant_in(D.c.status, OPEN))
            .values(status="delivered", delivered_at=t, last_status_code=bp("code"), last_error=None,
                    next_attempt_at=None, leased_until=None)
            .returning(D.c.platform_id, D.c.binding_id, D.c.binding_version).cte("d"))
    ack = sync.raise_acked(postgresql.insert(S).from_select(
        ["platform_id", "binding_id", "acked_version", "acked_at"],
        sa.select(done.c.platform_id, done.c.binding_id, done.c.binding_version, t)
        .where(done.c.binding_id.is_not(None)))).cte("k")
    return Statement(sa.select(done.c.platform_id, done.c.binding_id, done.c.binding_version)
                     .add_cte(tried).add_cte(ack), final=True)


DELIVERED = _delivered()
# the next open version of the binding to the platform, made due now (it was blocked)
RELEASE = Statement(sa.update(D).where(D.c.id == sa.select(_later.c.id).where(
    _later.c.platform_id == bp("p"), _later.c.binding_id == bp("b"), _later.c.binding_version > bp("v"),
    constant_in(_later.c.status, OPEN)).order_by(_later.c.binding_version, _later.c.id).limit(1).scalar_subquery())
    .values(next_attempt_at=bp("t", type_=D.c.next_attempt_at.type)).returning(D.c.id), final=True)
