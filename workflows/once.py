"""Run a piece of work for a stored row at most once to completion: the pattern shared by the outbox
actor and inbound-webhook processing. The row needs `processed_at`, `attempts`, `last_error` columns
(and optionally `outcome`). A failure is recorded on the row and re-raised, so the caller's retry runs."""
from __future__ import annotations

from typing import Callable

from models.types import utcnow


def run_once(db, model, row_id: int, work: Callable[[object], str | None]) -> str | None:
    with db.begin() as s:
        row = s.get(model, row_id)
        if row is None:
            return "missing"
        if row.processed_at is not None:
            return getattr(row, "outcome", None) or "processed"
        row.attempts += 1
    try:
        outcome = work(row)
    except Exception as exc:
        with db.begin() as s:
            s.get(model, row_id).last_error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    with db.begin() as s:
        done = s.get(model, row_id)
        done.processed_at, done.last_error = utcnow(), None
        if hasattr(done, "outcome"):
            done.outcome = outcome
    return outcome
