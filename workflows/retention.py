"""What Gongji forgets, and when: the messages that carried a change, once they did their work.

Why: a binding's record (the binding, its history, its verification attempts, settlements and their
ledger, the operators' audit) is kept for ever; the traffic around it is not. Every transition leaves an
outbox event (~1.5 KB of JSON), a delivery per platform it concerns and a row per try; every inbound
webhook keeps its raw body (encrypted: it may carry ID numbers). At the enrolment peaks DESIGN §7 plans
for that is billions of rows a year (docs/SCALE.md), and personal data kept past its use (PIPL's storage
limitation).

After `RETENTION_S` (`GONGJI_MESSAGE_RETENTION_DAYS`, 90 days by default, never less than 7: the
reconciliation re-sends what a platform lacks from the events of the last 7 days) `purge` deletes:
- deliveries that were delivered, with their tries (`delivery_attempts`);
- processed outbox events none of whose deliveries is left (one still pending, failing or dead keeps its
  event: it is what that delivery sends, and a dead one waits for an operator);
- inbound webhooks (`received_webhooks`) that were processed and did not give up: their bodies, and their
  dedupe (a webhook-id older than that is stored as new). One that gave up (`failed:<error>`, or
  `conflict`) is kept: an operator may still retry it (`platform_repair.retry_webhook`).
Kept for ever: what is not done yet, and the record above. A platform that lost an older event rebuilds
from the pull feed (`GET /api/v1/sync/bindings`), which serves bindings as they are, not events.

Cost, on tables of hundreds of millions of rows, with only the primary key (nothing on the write path):
ids grow with time, so the first id of the retention window is found by a binary search of primary-key
probes (`_boundary`, ~40 probes), and rows are taken oldest first below it, from where the last batch
stopped (`_CURSORS`, kept by the scheduler's process): the old rows that are kept (e.g. a million dead
deliveries of a platform that was away) are passed once, not at every batch. Once a day the cursor starts
again from the lowest id, for rows that became deletable behind it (a dead delivery replayed and
delivered). A call stops after `budget_s` seconds, so the scheduler's tick is never held for long. A batch
is one transaction that locks its rows (`SKIP LOCKED` on PostgreSQL: a row a worker or an operator holds
is left for a later pass) and deletes them under the same conditions."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage, ReceivedWebhook
from models.settings import number
from models.types import utcnow

from .inbound import GAVE_UP_SQL

log = logging.getLogger(__name__)
RETENTION_S = max(7.0, number("GONGJI_MESSAGE_RETENTION_DAYS", 90, minimum=0, maximum=3650)) * 86400.0
RESCAN_S = 86400.0  # the cursor starts again from the lowest id this often
D, DA, O, RW = Delivery.__table__, DeliveryAttempt.__table__, OutboxMessage.__table__, ReceivedWebhook.__table__

# (table, its time column, what makes an old row deletable); deliveries go before the events they carried
DONE = {
    "deliveries": (D, D.c.created_at, [D.c.status == "delivered"]),
    "outbox": (O, O.c.created_at, [O.c.processed_at.is_not(None), ~sa.exists().where(D.c.outbox_id == O.c.id)]),
    "received_webhooks": (RW, RW.c.received_at, [RW.c.processed_at.is_not(None), sa.text("not " + GAVE_UP_SQL)]),
}
_CURSORS: dict[tuple[str, str], tuple[int, float]] = {}  # (database, table) → (last id passed, started at)


def _boundary(conn, table, at, cutoff: datetime) -> int:
    """An id such that every row below it is older than `cutoff` (the first id of the retention window,
    or one past the last id): a binary search over the id range, each step one primary-key probe."""
    first = sa.select(table.c.id, at).where(table.c.id >= sa.bindparam("x")).order_by(table.c.id).limit(1)
    lo, hi = 0, (conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
    while lo < hi:  # every id below lo is older than the cutoff; every row from hi on is not
        row = conn.execute(first, {"x": (lo + hi) // 2}).first()
        if row is None or row[0] >= hi:
            hi = (lo + hi) // 2
        elif row[1] >= cutoff:
            hi = row[0]
        else:
            lo = row[0] + 1
    return lo


def _batch(db, name: str, cutoff: datetime, after: int, below: int, n: int) -> tuple[int, int | None]:
    """Delete up to n deletable rows with ids in (after, below), oldest first, in one transaction:
    (rows deleted, the last id taken, None when fewer than n were found: the range is done)."""
    table, at, done = DONE[name]
    with db.kw["bind"].connect() as conn, conn.begin():
        ids = list(conn.execute(sa.select(table.c.id).where(table.c.id > after, table.c.id < below, at < cutoff, *done)
                                .order_by(table.c.id).limit(n).with_for_update(skip_locked=True)).scalars())
        if not ids:
            return 0, None
        if name == "deliveries":  # its tries first (they refer to it)
            conn.execute(sa.delete(DA).where(DA.c.delivery_id.in_(ids)))
        # the row locks keep them as they were read; a delivery written meanwhile for an event is refused by
        # the foreign key (its insert waits for this transaction, then finds the event gone)
        gone = conn.execute(sa.delete(table).where(table.c.id.in_(ids), *done)).rowcount
    return gone, (ids[-1] if len(ids) == n else None)


def purge(db, *, now: datetime | None = None, batch: int = 1000, budget_s: float = 2.0) -> dict[str, int]:
    """Delete what is past its retention (see the module docstring) for at most about `budget_s` seconds
    (the scheduler calls it each minute; a backlog, e.g. after an upgrade, drains over several calls).
    Returns {table: rows deleted}."""
    now = now or utcnow()
    cutoff, deadline = now - timedelta(seconds=RETENTION_S), time.monotonic() + budget_s
    database = db.kw["bind"].url.render_as_string(hide_password=True)
    gone: dict[str, int] = {}
    for name, (table, at, _done) in DONE.items():
        gone[name] = 0
        with db.kw["bind"].connect() as conn:
            below = _boundary(conn, table, at, cutoff)
        after, since = _CURSORS.get((database, name), (0, time.monotonic()))
        if time.monotonic() - since > RESCAN_S:
            after, since = 0, time.monotonic()
        while True:  # at least one batch a table a call, however long the others took
            try:
                n, last = _batch(db, name, cutoff, after, below, batch)
            except sa.exc.IntegrityError:  # a delivery of the event was written meanwhile: the event stays
                log.info("retention: a %s batch met a concurrent write; it is tried again next pass", name)
                break
            gone[name] += n
            if last is None:  # passed everything below the window: next time, go on from there
                after = max(after, below - 1)
                break
            after = last
            if time.monotonic() >= deadline:
                break
        _CURSORS[(database, name)] = (after, since)
    if any(gone.values()):
        log.info("retention: deleted %s (older than %.0f days)", gone, RETENTION_S / 86400)
    return gone


def forget_cursors() -> None:
    """Start every table's pass again from its lowest id (tests; a restored database)."""
    _CURSORS.clear()
