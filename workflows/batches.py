"""Batch actions by filter: counted first, confirmed with a reason, run by a worker, audited per binding.

`start` counts what the filter matches, stores the job and an outbox event in one transaction. The worker
(`run`) takes the job under a lease (LEASE_S, renewed every page, so a redelivered message finds it held
and leaves it), walks the filter's list in pages from the job's stored cursor, fires the action on each
binding through `repair.ACTIONS` (each the workflow's own command with its own audit row carrying the job
id) and records progress after every page. The walk covers only bindings last changed before the job was
confirmed (its first cursor is that moment): what changed since — and so no longer what the operator
counted — is left alone and shown as "changed meanwhile". A job whose worker died is found by
`resume_stalled` (the scheduler, every minute) once its lease ran out; it resumes at its cursor and skips
bindings its audit rows already name, so no binding is acted on twice by one job.

The lease is the worker's token: before each binding the worker renews it on the condition that it still
holds the value it wrote (`_renew`). A worker whose page outlasted the lease (slow commands, lock waits)
while another took the job over finds it changed and stops, instead of acting on the same bindings as its
successor. Only one action that itself outlasts LEASE_S could still meet its successor's."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import AuditEntry, BatchJob, Operator
from models.types import utcnow

from . import finder, operators, outbox, repair, sync
from .errors import DomainError
from .operators import OperatorInfo

TOPIC = "operator.batch_requested"
PAGE = 50  # bindings per progress update
FILTER_KEYS = ("state", "region", "platform", "stuck", "older_than_s")
MAX_TOTAL = 100_000  # bindings one job may touch; narrow the filter for more
LEASE_S = 120  # a running job's hold; a page of PAGE commands takes a few seconds
AFTER_ALL = "~"  # sorts after every binding id: the first cursor includes bindings changed at that instant
log = logging.getLogger(__name__)


def clean(filters: dict) -> dict:
    return {k: filters[k] for k in FILTER_KEYS if filters.get(k) not in (None, "")}


def count(db, filters: dict, *, now: datetime | None = None) -> int:
    return finder.count(db, **clean(filters), now=now or utcnow())


def start(db, who: OperatorInfo, action: str, filters: dict, reason: str | None, *, expected: int,
          now: datetime | None = None) -> str:
    """Create the job if the count the operator confirmed still holds; its id. A refusal is audited."""
    now = now or utcnow()
    try:
        if action not in repair.BATCHABLE:
            raise DomainError("validation_failed", f"no batch action {action}")
        reason = repair.check_allowed(who, action, reason)
        filters = clean(filters)
        if not filters:
            raise DomainError("validation_failed", "a batch needs at least one filter")
        total = count(db, filters, now=now)
        if total != expected:
            raise DomainError("conflict", f"the filter now matches {total}, not {expected}: look again")
        if total > MAX_TOTAL:
            raise DomainError("validation_failed", f"at most {MAX_TOTAL} bindings a batch")
    except DomainError as exc:
        operators.record_refusal(db, who, f"batch_{action}"[:48], exc, reason=repair.clean_reason(reason))
        raise
    with db.begin() as s:
        job = BatchJob(action=action, filters=filters, reason=reason, operator=who.username, total=total,
                       created_at=now, cursor=sync._cursor(now, AFTER_ALL))
        s.add(job)
        s.flush()
        operators.record(s, who, f"batch_{action}", reason=reason, detail={"filters": filters, "total": total},
                         batch_id=job.id, now=now)
        ids = [outbox.write(s, TOPIC, now, {"batch_id": job.id})]
    outbox.published(ids)
    return job.id


def _claim(db, batch_id: str, now: datetime):
    """Take the job for LEASE_S: (who, action, filters, reason, cursor, lease), or a word saying why not."""
    with db.begin() as s:
        job = s.scalar(sa.select(BatchJob).where(BatchJob.id == batch_id).with_for_update())
        if job is None or job.state in ("done", "failed"):
            return "skipped"
        if job.lease_until is not None and job.lease_until > now:
            return "held"
        job.state, job.lease_until = "running", now + timedelta(seconds=LEASE_S)
        op = s.scalar(sa.select(Operator).where(Operator.username == job.operator, Operator.disabled_at.is_(None)))
        who = OperatorInfo(op.id, op.username, op.role) if op is not None else None
        return who, job.action, job.filters, job.reason, job.cursor, job.lease_until


_BJ = BatchJob.__table__


def _tally(db, batch_id: str, after_id: int) -> tuple[int, int, int]:
    """(bindings acted on, refused, the last audit id) by the job's per-binding audit rows after `after_id`
    (one per binding and action): what a worker that stopped did before its progress was written counts too."""
    A = AuditEntry.__table__
    ok = A.c.outcome == "ok"
    with db() as s:
        done, failed, last = s.execute(sa.select(
            sa.func.count().filter(ok), sa.func.count().filter(~ok), sa.func.max(A.c.id)).where(
            A.c.batch_id == batch_id, A.c.binding_id.is_not(None), A.c.id > after_id)).one()
    return done or 0, failed or 0, last if last is not None else after_id


def _renew(db, batch_id: str, lease: datetime, **progress) -> datetime | None:
    """Hold the job LEASE_S more (and write `progress`) if this worker still holds `lease`: the new lease,
    or None when another worker took the job over meanwhile."""
    new = max(utcnow() + timedelta(seconds=LEASE_S), lease + timedelta(microseconds=1))  # never the same value
    with db.begin() as s:
        held = s.execute(sa.update(_BJ).where(_BJ.c.id == batch_id, _BJ.c.lease_until == lease)
                         .values(lease_until=new, **progress)).rowcount
    return new if held else None


def _act(db, who: OperatorInfo, action: str, binding_id: str, reason: str, batch_id: str, seen: int) -> None:
    """Fire the action on one binding as the page listed it (`seen`: its version then; a binding that changed
    since is refused `changed_since_seen`); its audit row (ok, a refusal's code, or error) is what progress
    counts."""
    try:
        repair.ACTIONS[action](db, who, binding_id, reason, batch_id=batch_id, seen=seen)
    except DomainError:
        pass  # audited by the action with its code
    except Exception as exc:  # one bad binding must not stall the job: audit it and go on
        log.exception("batch %s: %s on %s failed", batch_id, action, binding_id)
        with db.begin() as s:
            operators.record(s, who, action, binding_id=binding_id, reason=reason, batch_id=batch_id,
                             outcome="error", detail={"error": type(exc).__name__})


def run(db, batch_id: str) -> str:
    claimed = _claim(db, batch_id, utcnow())
    if isinstance(claimed, str):
        return claimed
    who, action, filters, reason, cursor, lease = claimed
    if who is None:
        return _finish(db, batch_id, "failed", "the operator no longer exists or is disabled")
    mark = None  # the last audit row counted; None: the first count takes all the job's rows
    while cursor:
        page = finder.find(db, **filters, after=cursor, limit=PAGE, now=utcnow())
        ids = [item["id"] for item in page["items"]]
        versions = {item["id"]: item["version"] for item in page["items"]}
        with db() as s:
            seen = set(s.scalars(sa.select(AuditEntry.binding_id).where(
                AuditEntry.batch_id == batch_id, AuditEntry.binding_id.in_(ids))))
        for b in (b for b in ids if b not in seen):
            lease = _renew(db, batch_id, lease)
            if lease is None:
                return "taken over"  # the successor resumes from the last page recorded, skipping what is audited
            _act(db, who, action, b, reason, batch_id, versions[b])
        cursor = page["next"]
        done, failed, last = _tally(db, batch_id, mark or 0)
        counts = dict(done=done, failed=failed) if mark is None else dict(done=_BJ.c.done + done,
                                                                          failed=_BJ.c.failed + failed)
        lease, mark = _renew(db, batch_id, lease, cursor=cursor, **counts), last
        if lease is None:
            return "taken over"
    done, failed, _ = _tally(db, batch_id, 0)  # all again: a row committed late by a worker that lost the lease
    return _finish(db, batch_id, "done", None, done=done, failed=failed)


def resume_stalled(db, *, now: datetime | None = None) -> list[int]:
    """Re-send the job event of every running job whose lease ran out (its worker died); outbox ids."""
    now = now or utcnow()
    with db.begin() as s:
        stalled = s.scalars(sa.select(BatchJob.id).where(BatchJob.state == "running",
                                                         BatchJob.lease_until < now)).all()
        ids = [outbox.write(s, TOPIC, now, {"batch_id": job_id}) for job_id in stalled]
    outbox.published(ids)
    return ids


def _finish(db, batch_id: str, state: str, error: str | None, **counts) -> str:
    with db.begin() as s:
        job = s.get(BatchJob, batch_id)
        job.state, job.finished_at, job.last_error, job.lease_until = state, utcnow(), error, None
        for name, value in counts.items():
            setattr(job, name, value)
    return state


def get(db, batch_id: str) -> dict:
    with db() as s:
        job = s.get(BatchJob, batch_id)
        if job is None:
            raise DomainError("not_found", f"no batch {batch_id}")
        return {"id": job.id, "action": job.action, "filters": job.filters, "reason": job.reason,
                "operator": job.operator, "state": job.state, "total": job.total, "done": job.done,
                "failed": job.failed, "created_at": job.created_at, "finished_at": job.finished_at,
                "changed_meanwhile": max(job.total - job.done - job.failed, 0) if job.state == "done" else 0,
                "last_error": job.last_error}
