"""The outbox relay: after a command commits its outbox ids are sent to the broker at once (`enqueue`,
registered with `workflows.outbox.on_commit`; in the web processes coalesced by `workers.publisher`); a
periodic pass (`relay_pass`) re-sends every row still
unprocessed after `GRACE_S` seconds — rows of a crashed process, a broker outage, or exhausted retries.
Sending twice is harmless: the actor skips processed rows and rows another run holds (workflows/once.py)."""
from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa

from models import OutboxMessage
from models.db import is_postgres
from models.types import utcnow
from workflows import outbox

from .publisher import Publisher

log = logging.getLogger(__name__)
GRACE_S = 10.0
RESEND_S = 60.0


def enqueue(ids: list[int]) -> None:
    from .actors import process_outbox
    for outbox_id in ids:
        process_outbox.send(outbox_id)


def enqueue_many(ids: list[int]) -> None:
    from .actors import process_outbox_many
    process_outbox_many.send(ids)


_publisher = Publisher(enqueue_many)


def install(*, coalesce: bool = False) -> None:
    """Send a command's outbox ids right after its commit: one message each from the calling thread, or
    (`coalesce`, the web processes) queued for a background thread that sends what gathered as one."""
    outbox.on_commit(_publisher if coalesce else enqueue)


def flush(timeout_s: float = 10.0) -> bool:
    return _publisher.flush(timeout_s)


def relay_pass(db, *, now=None, batch: int = 1000) -> int:
    """Re-send unprocessed rows older than GRACE_S not sent in the last RESEND_S seconds."""
    now = now or utcnow()
    with db.begin() as s:
        query = (sa.select(OutboxMessage).where(
            OutboxMessage.processed_at.is_(None),
            OutboxMessage.created_at <= now - timedelta(seconds=GRACE_S),
            sa.or_(OutboxMessage.relayed_at.is_(None),
                   OutboxMessage.relayed_at <= now - timedelta(seconds=RESEND_S)))
            .order_by(OutboxMessage.id).limit(batch))
        if is_postgres(s):
            query = query.with_for_update(skip_locked=True)
        rows = s.scalars(query).all()
        ids = [r.id for r in rows]
        for r in rows:
            r.relayed_at = now
    enqueue(ids)  # after commit; a crash before this is covered by the next pass (relayed_at ages out)
    if ids:
        log.info("relay pass re-sent %d outbox rows", len(ids))
    return len(ids)
