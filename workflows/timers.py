"""Durable timers: each pending binding carries its next deadline (`deadline_at`, `deadline_event`).

Deadlines (seconds from the region policy): the invitation TTL → `expire`; an open face-verification
attempt's timeout → `verification_timeout` (counts as a failed attempt). The sweeper takes due rows
due-first in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so sweepers never fire a timer twice) and
costs O(due rows) through the partial index on `deadline_at`."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Binding
from models.types import utcnow

from .machine import PENDING

log = logging.getLogger(__name__)
RETRY_S = 300  # a timer that failed to fire is tried again after this many seconds


def reschedule(row, attempt_deadline: datetime | None = None) -> None:
    """Set the row's next deadline from its state, its invitation expiry and an open attempt."""
    candidates = []
    if row.state in PENDING:
        if row.expires_at is not None:
            candidates.append((row.expires_at, "expire"))
        if attempt_deadline is not None and row.state == "invited":
            candidates.append((attempt_deadline, "verification_timeout"))
    row.deadline_at, row.deadline_event = min(candidates) if candidates else (None, None)


def sweep(db, *, now: datetime | None = None, batch: int = 500) -> int:
    """Fire up to `batch` due timers in one transaction (a savepoint each); returns how many fired."""
    from . import rows
    from .unit import command  # late: unit imports this module

    now = now or utcnow()
    with command(db, now=now) as cmd:
        fired = 0
        for row in rows.lock_due(cmd.session, now, batch):
            sent = len(cmd.messages)
            try:
                with cmd.session.begin_nested():
                    fire(cmd, row)
                fired += 1
            except Exception:  # one bad row must not stop every other timer: retry it later, loudly
                log.exception("timer %s of binding %s failed; retrying in %d s", row.deadline_event, row.id,
                              RETRY_S)
                del cmd.messages[sent:]  # their rows were rolled back with the savepoint
                cmd.session.execute(sa.update(Binding).where(Binding.id == row.id)
                                    .values(deadline_at=now + timedelta(seconds=RETRY_S)))
    return fired


def fire(cmd, row) -> None:
    """Fire the row's due timer event inside the caller's command."""
    from . import rows
    from .verification import timeout_attempt

    if row.deadline_event == "expire":
        cmd.transition(row, "expire", cmd.timer, reason="invitation_ttl")
    elif row.deadline_event == "verification_timeout":
        timeout_attempt(cmd, row)
    else:  # unknown event: clear it rather than spin on it forever
        row.deadline_at, row.deadline_event = None, None
        rows.save(cmd.session, row)


def sweep_all(db, *, now: datetime | None = None, batch: int = 500, max_rounds: int = 10_000) -> int:
    """Sweep until nothing is due (the scheduler's tick); a fired timer may make another one due."""
    total = 0
    for _ in range(max_rounds):
        n = sweep(db, now=now, batch=batch)
        total += n
        if n == 0:
            break
    return total
