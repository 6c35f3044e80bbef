"""Run a piece of work for a stored row at most once to completion: the pattern shared by the outbox
actor and inbound-webhook processing. The row needs `processed_at`, `attempts`, `last_error` columns
(and optionally `outcome`). A failure is recorded on the row and re-raised, so the caller's retry runs.

The bookkeeping is one statement per step, each deciding alone (the take is a conditional UPDATE …
RETURNING), built once per table and run in autocommit on PostgreSQL (`statements.autocommit`): an inbound
webhook passes through here twice (its outbox row, then the stored webhook), and through the ORM session
with BEGIN/COMMIT that was a tenth of the worker's CPU over HTTP (bench/webhooks.py). `work` gets the row
as a read-only named tuple (its columns as attributes)."""
from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace
from typing import Callable

import sqlalchemy as sa

from models.types import utcnow

from .statements import Statement, autocommit

_STATEMENTS: dict = {}


def _statements(model) -> SimpleNamespace:
    if model not in _STATEMENTS:
        t = model.__table__
        key = sa.bindparam("_id")
        done = {"processed_at": sa.bindparam("_at", type_=t.c.processed_at.type), "last_error": None}
        if "outcome" in t.c:
            done["outcome"] = sa.bindparam("_outcome", type_=t.c.outcome.type)
        _STATEMENTS[model] = SimpleNamespace(
            take=Statement(sa.update(t).where(t.c.id == key, t.c.processed_at.is_(None))
                           .values(attempts=t.c.attempts + 1).returning(*t.c)),
            read=Statement(sa.select(t).where(t.c.id == key)),
            failed=Statement(sa.update(t).where(t.c.id == key).values(
                last_error=sa.bindparam("_error", type_=t.c.last_error.type))),
            done=Statement(sa.update(t).where(t.c.id == key).values(done)),
            row=namedtuple(f"{model.__name__}Row", [c.name for c in t.c]),
            outcome=list(t.c.keys()).index("outcome") if "outcome" in t.c else None)
    return _STATEMENTS[model]


def run_once(db, model, row_id: int, work: Callable[[object], str | None]) -> str | None:
    st = _statements(model)
    with autocommit(db) as conn:
        taken = st.take.first(conn, {"_id": row_id})  # counted as an attempt unless already processed
        if taken is None:
            found = st.read.first(conn, {"_id": row_id})
            if found is None:
                return "missing"
            return (found[st.outcome] if st.outcome is not None else None) or "processed"
    row = st.row(*taken)
    try:
        outcome = work(row)
    except Exception as exc:
        with autocommit(db) as conn:
            st.failed.run(conn, {"_id": row_id, "_error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    with autocommit(db) as conn:
        st.done.run(conn, {"_id": row_id, "_at": utcnow(),
                           **({"_outcome": outcome} if st.outcome is not None else {})})
    return outcome
