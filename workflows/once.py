"""Run a piece of work for a stored row at most once to completion: the pattern shared by the outbox
actor and inbound-webhook processing. The row needs `processed_at`, `attempts`, `last_error` columns (and
optionally `outcome` and `lease_until`). A failure is recorded on the row and re-raised, so the caller's
retry runs.

The bookkeeping is one statement per step, each deciding alone (the take is a conditional UPDATE …
RETURNING), built once per table and run in autocommit on PostgreSQL (`statements.autocommit`): an inbound
webhook passes through here twice (its outbox row, then the stored webhook), and through the ORM session
with BEGIN/COMMIT that was a tenth of the worker's CPU over HTTP (bench/webhooks.py). `work` gets the row
as a read-only named tuple (its columns as attributes).

A run holds an outbox row for `LEASE_S` seconds (`lease_until`): a second copy of its message arriving
meanwhile (the relay re-sends a row still unprocessed after 10 s; the broker redelivers a dead worker's
messages) returns "in_progress" instead of running the same work at the same time, which used to count a
second attempt and, for a stored webhook (applied inside its outbox row's run), let the later finisher's
outcome ("stale") overwrite the one that applied it ("applied"). The stored webhook itself has no lease:
one outbox row carries it, and a lease of its own could close that row while the webhook waits. A failure
ends the run's own lease at once (the actor's retry takes the row again); a worker that died holding it
is replaced after the lease runs out, by the relay's next re-send. The first run to finish records the
outcome. A model's `ONCE_DONE` columns ({name: SQL expression}) are set by that same statement, from the
parameters `work` returns with its outcome as `(outcome, params)` (a received webhook's binding)."""
from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Callable

import sqlalchemy as sa

from models.types import utcnow

from .statements import Statement, autocommit

_STATEMENTS: dict = {}
LEASE_S = 120.0  # seconds; longer than any run but a batch job's (which has a lease of its own, batches.py)


def _statements(model) -> SimpleNamespace:
    if model not in _STATEMENTS:
        t = model.__table__
        leased = "lease_until" in t.c
        key, at = sa.bindparam("_id"), sa.bindparam("_at", type_=t.c.processed_at.type)
        mine = sa.bindparam("_until", type_=t.c.lease_until.type) if leased else None
        done = {"processed_at": at, "last_error": None, **({"lease_until": None} if leased else {}),
                **getattr(model, "ONCE_DONE", {})}  # a model's own columns, from the params `work` returns
        if "outcome" in t.c:
            done["outcome"] = sa.bindparam("_outcome", type_=t.c.outcome.type)
        free = (sa.or_(t.c.lease_until.is_(None), t.c.lease_until <= at),) if leased else ()
        ours = (t.c.lease_until == mine,) if leased else ()  # a run whose lease ran out leaves the next one's alone
        _STATEMENTS[model] = SimpleNamespace(
            take=Statement(sa.update(t).where(t.c.id == key, t.c.processed_at.is_(None), *free)
                           .values(attempts=t.c.attempts + 1, **({"lease_until": mine} if leased else {}))
                           .returning(*t.c)),
            read=Statement(sa.select(t.c.processed_at, *([t.c.outcome] if "outcome" in t.c else []))
                           .where(t.c.id == key)),
            failed=Statement(sa.update(t).where(t.c.id == key, *ours).values(
                last_error=sa.bindparam("_error", type_=t.c.last_error.type),
                **({"lease_until": None} if leased else {}))),
            done=Statement(sa.update(t).where(t.c.id == key, t.c.processed_at.is_(None)).values(done)),
            row=namedtuple(f"{model.__name__}Row", [c.name for c in t.c]), has_outcome="outcome" in t.c)
    return _STATEMENTS[model]


def run_once(db, model, row_id: int, work: Callable[[object], str | None | tuple[str, dict]], *,
             now: datetime | None = None) -> str | None:
    """`work`'s outcome; else "missing", the outcome recorded ("processed" if the table has none), or
    "in_progress" (another run holds the row's lease)."""
    st, now = _statements(model), now or utcnow()
    until = now + timedelta(seconds=LEASE_S)
    with autocommit(db) as conn:  # taken and counted as an attempt unless processed or leased to another run
        taken = st.take.first(conn, {"_id": row_id, "_at": now, "_until": until})
        if taken is None:
            found = st.read.first(conn, {"_id": row_id})
            if found is None:
                return "missing"
            if found[0] is None:
                return "in_progress"
            return (found[1] if len(found) > 1 else None) or "processed"
    row = st.row(*taken)
    try:
        outcome = work(row)
    except Exception as exc:
        with autocommit(db) as conn:
            st.failed.run(conn, {"_id": row_id, "_until": until,
                                 "_error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    outcome, params = outcome if isinstance(outcome, tuple) else (outcome, {})
    with autocommit(db) as conn:
        st.done.run(conn, {"_id": row_id, "_at": utcnow(), **params,
                           **({"_outcome": outcome} if st.has_outcome else {})})
    return outcome
