"""Batch actions by filter: counted first, confirmed with a reason, run by a worker, audited per binding.

`start` counts what the filter matches, stores the job and an outbox event in one transaction; the worker
(`run`) walks the filter's list in pages from the job's stored cursor, fires the action on each binding
through `repair.ACTIONS` (so each is the workflow's own command with its own audit row carrying the job
id), and records progress after every page. A redelivered job resumes at its cursor and skips bindings
its audit rows already name, so no binding is acted on twice by one job."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import AuditEntry, BatchJob, Operator
from models.types import utcnow

from . import finder, operators, outbox, repair
from .errors import DomainError
from .operators import OperatorInfo

TOPIC = "operator.batch_requested"
PAGE = 50  # bindings per progress update
FILTER_KEYS = ("state", "region", "platform", "stuck", "older_than_s")
MAX_TOTAL = 100_000  # bindings one job may touch; narrow the filter for more


def clean(filters: dict) -> dict:
    return {k: filters[k] for k in FILTER_KEYS if filters.get(k) not in (None, "")}


def count(db, filters: dict, *, now: datetime | None = None) -> int:
    return finder.count(db, **clean(filters), now=now or utcnow())


def start(db, who: OperatorInfo, action: str, filters: dict, reason: str | None, *, expected: int,
          now: datetime | None = None) -> str:
    """Create the job if the count the operator confirmed still holds; its id."""
    now = now or utcnow()
    if action not in repair.ACTIONS:
        raise DomainError("validation_failed", f"unknown batch action {action}")
    reason = repair._check(who, action, reason)
    filters = clean(filters)
    if not filters:
        raise DomainError("validation_failed", "a batch needs at least one filter")
    total = count(db, filters, now=now)
    if total != expected:
        raise DomainError("conflict", f"the filter now matches {total}, not {expected}: look again")
    if total > MAX_TOTAL:
        raise DomainError("validation_failed", f"at most {MAX_TOTAL} bindings a batch")
    with db.begin() as s:
        job = BatchJob(action=action, filters=filters, reason=reason, operator=who.username, total=total,
                       created_at=now)
        s.add(job)
        s.flush()
        operators.record(s, who, f"batch_{action}", reason=reason, detail={"filters": filters, "total": total},
                         batch_id=job.id, now=now)
        ids = [outbox.write(s, TOPIC, now, {"batch_id": job.id})]
    outbox.published(ids)
    return job.id


def run(db, batch_id: str) -> str:
    with db.begin() as s:
        job = s.get(BatchJob, batch_id)
        if job is None or job.state in ("done", "failed"):
            return "skipped"
        job.state = "running"
        op = s.scalar(sa.select(Operator).where(Operator.username == job.operator))
        who = OperatorInfo(op.id, op.username, op.role) if op is not None else None
        action, filters, reason, cursor = job.action, job.filters, job.reason, job.cursor
    if who is None:
        return _finish(db, batch_id, "failed", "the operator no longer exists")
    while True:
        page = finder.find(db, **filters, after=cursor, limit=PAGE, now=utcnow())
        ids = [item["id"] for item in page["items"]]
        with db() as s:
            seen = set(s.scalars(sa.select(AuditEntry.binding_id).where(
                AuditEntry.batch_id == batch_id, AuditEntry.binding_id.in_(ids))))
        done = failed = 0
        for binding_id in ids:
            if binding_id in seen:
                continue
            try:
                repair.ACTIONS[action](db, who, binding_id, reason, batch_id=batch_id)
                done += 1
            except DomainError:
                failed += 1  # audited by the action with its code
        cursor = page["next"]
        with db.begin() as s:
            job = s.get(BatchJob, batch_id)
            job.done, job.failed, job.cursor = job.done + done, job.failed + failed, cursor
        if not cursor:
            return _finish(db, batch_id, "done", None)


def _finish(db, batch_id: str, state: str, error: str | None) -> str:
    with db.begin() as s:
        job = s.get(BatchJob, batch_id)
        job.state, job.finished_at, job.last_error = state, utcnow(), error
    return state


def get(db, batch_id: str) -> dict:
    with db() as s:
        job = s.get(BatchJob, batch_id)
        if job is None:
            raise DomainError("not_found", f"no batch {batch_id}")
        return {"id": job.id, "action": job.action, "filters": job.filters, "reason": job.reason,
                "operator": job.operator, "state": job.state, "total": job.total, "done": job.done,
                "failed": job.failed, "created_at": job.created_at, "finished_at": job.finished_at,
                "last_error": job.last_error}
