"""`run_once` (workflows/once.py) on PostgreSQL: a run holds its row's lease, so a second copy of the same
message (the relay's re-send, a broker redelivery) neither runs the work again meanwhile nor overwrites the
outcome; a failure ends the lease at once; a run that died holding it is replaced once it runs out."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from models import OutboxMessage, ReceivedWebhook
from workflows import once, outbox
from workflows.once import run_once

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)


def _received(db) -> int:
    with db.begin() as s:
        row = ReceivedWebhook(platform_id="jiangsu", webhook_id="msg_once", type="person.updated", body="{}",
                              headers={}, received_at=T0)
        s.add(row)
        s.flush()
        return row.id


def _event(db) -> int:
    with db.begin() as s:
        return outbox.write(s, "test.once", T0, {"n": 1})


def _row(db, model, row_id):
    with db() as s:
        return s.get(model, row_id)


def test_a_second_copy_while_the_first_runs_leaves_the_row_to_it(pg_db):
    """Given a stored webhook whose first run is inside its work (holding the row),
    when a second copy of its message is handled meanwhile (from another thread),
    then the second returns "in_progress" without running the work, and once the first finishes the row
    shows one attempt, the first run's outcome and no lease."""
    rid = _received(pg_db)
    inside, go, ran, first = threading.Event(), threading.Event(), [], []

    def slow(row):
        ran.append(row.id)
        inside.set()
        assert go.wait(60)
        return "applied"
    runner = threading.Thread(target=lambda: first.append(run_once(pg_db, ReceivedWebhook, rid, slow)))
    runner.start()
    try:
        assert inside.wait(60)
        assert run_once(pg_db, ReceivedWebhook, rid, lambda _row: ran.append("second") or "stale") == "in_progress"
    finally:
        go.set()
        runner.join(60)
    assert first == ["applied"] and ran == [rid]
    row = _row(pg_db, ReceivedWebhook, rid)
    assert (row.outcome, row.attempts, row.lease_until, row.processed_at is not None) == ("applied", 1, None, True)
    assert run_once(pg_db, ReceivedWebhook, rid, lambda _row: "again") == "applied"  # done: the outcome, no run


def test_a_failure_ends_the_lease_at_once(pg_db):
    """Given an outbox row whose run failed,
    when the actor's retry handles it at once,
    then it runs (the lease ended with the failure) and counts a second attempt."""
    oid = _event(pg_db)

    def fails(_row):
        raise RuntimeError("provider away")
    with pytest.raises(RuntimeError):
        run_once(pg_db, OutboxMessage, oid, fails, now=T0)
    failed = _row(pg_db, OutboxMessage, oid)
    assert (failed.lease_until, failed.attempts, failed.last_error) == (None, 1, "RuntimeError: provider away")
    assert run_once(pg_db, OutboxMessage, oid, lambda _row: "recorded", now=T0) == "recorded"
    assert _row(pg_db, OutboxMessage, oid).attempts == 2


def test_a_run_that_died_holding_the_row_is_replaced_when_its_lease_runs_out(pg_db):
    """Given an outbox row taken at T0 by a run that never finished (its worker was killed: no failure was
    recorded),
    when copies of its message arrive just before and just after the lease runs out,
    then the first is "in_progress" and the second runs it."""
    oid = _event(pg_db)

    class Killed(BaseException):
        """Not an Exception: nothing is recorded, as when the process dies."""

    def dies(_row):
        raise Killed
    with pytest.raises(Killed):
        run_once(pg_db, OutboxMessage, oid, dies, now=T0)
    assert _row(pg_db, OutboxMessage, oid).lease_until == T0 + timedelta(seconds=once.LEASE_S)
    before = T0 + timedelta(seconds=once.LEASE_S - 1)
    assert run_once(pg_db, OutboxMessage, oid, lambda _row: "too early", now=before) == "in_progress"
    after = T0 + timedelta(seconds=once.LEASE_S + 1)
    assert run_once(pg_db, OutboxMessage, oid, lambda _row: "recorded", now=after) == "recorded"
    row = _row(pg_db, OutboxMessage, oid)
    assert (row.attempts, row.lease_until, row.processed_at is not None) == (2, None, True)

