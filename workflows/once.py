"""Run a piece of work for a stored row at most once to completion: the pattern shared by the outbox
actor and inbound-webhook processing. The row needs `processed_at`, `attempts`, `last_error` columns
(and optionally `outcome`). A failure is recorded on the row and re-raised, so the caller's retry runs.

The bookkeeping is Core, one statement per step, built once per table (statement reuse, see
workflows/rows.py); `work` gets the row as a read-only named row (its columns as attributes)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import sqlalchemy as sa

from models.types import utcnow

_STATEMENTS: dict = {}


def _statements(model) -> SimpleNamespace:
    if model not in _STATEMENTS:
        t = model.__table__
        key = sa.bindparam("_id")
        done = {"processed_at": sa.bindparam("_at"), "last_error": None}
        if "outcome" in t.c:
            done["outcome"] = sa.bindparam("_outcome")
        _STATEMENTS[model] = SimpleNamespace(
            take=(sa.update(t).where(t.c.id == key, t.c.processed_at.is_(None))
                  .values(attempts=t.c.attempts + 1).returning(*t.c)),
            read=sa.select(t).where(t.c.id == key),
            failed=sa.update(t).where(t.c.id == key).values(last_error=sa.bindparam("_error")),
            done=sa.update(t).where(t.c.id == key).values(done),
            has_outcome="outcome" in t.c)
    return _STATEMENTS[model]


def run_once(db, model, row_id: int, work: Callable[[object], str | None]) -> str | None:
    st = _statements(model)
    with db.begin() as s:
        row = s.execute(st.take, {"_id": row_id}).first()  # counted as an attempt unless already processed
        if row is None:
            found = s.execute(st.read, {"_id": row_id}).first()
            if found is None:
                return "missing"
            return getattr(found, "outcome", None) or "processed"
    try:
        outcome = work(row)
    except Exception as exc:
        with db.begin() as s:
            s.execute(st.failed, {"_id": row_id, "_error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    with db.begin() as s:
        s.execute(st.done, {"_id": row_id, "_at": utcnow(), **({"_outcome": outcome} if st.has_outcome else {})})
    return outcome
