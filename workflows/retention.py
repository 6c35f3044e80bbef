"""What Gongji forgets, and when: the messages that carried a change, once they did their work.

Why: a binding's record (the binding, its history, its verification attempts, settlements and their
ledger, the operators' audit) is kept for ever; the traffic around it is not. Every transition leaves an
outbox event (~1.4 KB of JSON), a delivery per platform it concerns and a row per try; every inbound
webhook keeps its raw body (encrypted: it may carry ID numbers). At the enrolment peaks DESIGN §7 plans
for, that is billions of rows a year, and personal data kept past its use (PIPL's storage limitation).

After `RETENTION_S` (`GONGJI_MESSAGE_RETENTION_DAYS`, 90 days by default, never less than 7: the
reconciliation re-sends what a platform lacks from the events of the last 7 days) `purge` deletes:
- deliveries that were delivered, with their tries (`delivery_attempts`);
- processed outbox events none of whose deliveries is left (one still pending, failing or dead keeps its
  event: it is what that delivery sends, and a dead one waits for an operator);
- processed inbound webhooks (`received_webhooks`): their bodies, and their dedupe — a sender's retry of
  a webhook-id older than that is stored as new (Standard Webhooks senders retry for days, not months).
Kept for ever: what is not done yet, and the record above. A platform that lost an older event rebuilds
from the pull feed (`GET /api/v1/sync/bindings`), which serves bindings as they are, not events.

Cost: rows are taken oldest first by primary key (ids grow with time), below the first id of the
retention window (`_boundary`), so a pass reads what it deletes and the few old rows kept, never the
recent table; no index of its own, nothing on the write path. A batch is one transaction that locks
its rows (`SKIP LOCKED` on PostgreSQL: a row a worker or an operator holds waits for the next pass)."""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage, ReceivedWebhook
from models.types import utcnow

log = logging.getLogger(__name__)
RETENTION_S = max(7.0, float(os.environ.get("GONGJI_MESSAGE_RETENTION_DAYS") or 90)) * 86400.0
D, DA, O, RW = Delivery.__table__, DeliveryAttempt.__table__, OutboxMessage.__table__, ReceivedWebhook.__table__

# (table, its time column, what makes an old row deletable)
DONE = {
    "deliveries": (D, D.c.created_at, [D.c.status == "delivered"]),
    "outbox": (O, O.c.created_at, [O.c.processed_at.is_not(None), ~sa.exists().where(D.c.outbox_id == O.c.id)]),
    "received_webhooks": (RW, RW.c.received_at, [RW.c.processed_at.is_not(None)]),
}


def _boundary(conn, table, at, cutoff: datetime) -> int | None:
    """The first id of the retention window: rows below it are older (ids grow with time). The primary
    key is walked from its low end, over the old rows still kept only (what is not done yet: few)."""
    return conn.execute(sa.select(table.c.id).where(at >= cutoff).order_by(table.c.id).limit(1)).scalar()


def _batch(db, name: str, cutoff: datetime, below: int | None, n: int) -> int:
    """Delete up to n deletable rows of one table, oldest first, in one transaction; how many went."""
    table, at, done = DONE[name]
    where = [at < cutoff, *done] + ([table.c.id < below] if below is not None else [])
    with db.kw["bind"].connect() as conn, conn.begin():
        ids = list(conn.execute(sa.select(table.c.id).where(*where).order_by(table.c.id).limit(n)
                                .with_for_update(skip_locked=True)).scalars())
        if not ids:
            return 0
        if name == "deliveries":  # its tries first (they refer to it)
            conn.execute(sa.delete(DA).where(DA.c.delivery_id.in_(ids)))
        # the condition again: read committed re-checks it on a row changed since (e.g. a delivery got one)
        return conn.execute(sa.delete(table).where(table.c.id.in_(ids), *done)).rowcount


def purge(db, *, now: datetime | None = None, batch: int = 1000, most: int = 50_000) -> dict[str, int]:
    """Delete what is past its retention (see the module docstring), at most `most` rows of each table a
    call (the scheduler calls it each minute: a backlog, e.g. after an upgrade, drains over a few calls
    without holding the tick). Deliveries go before the events they carried. Returns {table: rows}."""
    cutoff = (now or utcnow()) - timedelta(seconds=RETENTION_S)
    gone: dict[str, int] = {}
    for name, (table, at, _done) in DONE.items():
        with db.kw["bind"].connect() as conn:
            below = _boundary(conn, table, at, cutoff)
        total = 0
        while total < most:
            want = min(batch, most - total)
            try:
                n = _batch(db, name, cutoff, below, want)
            except sa.exc.IntegrityError:  # a delivery of the event was written meanwhile: the event stays
                log.info("retention: a %s batch met a concurrent write; it is tried again next pass", name)
                break
            total += n
            if n < want:
                break
        gone[name] = total
    if any(gone.values()):
        log.info("retention: deleted %s (older than %.0f days)", gone, RETENTION_S / 86400)
    return gone
