"""`run_once` (workflows/once.py) on PostgreSQL: a run holds its outbox row's lease, so a second copy of the
same message (the relay's re-send, a broker redelivery) neither runs the work again meanwhile nor, for a
stored webhook, overwrites its outcome; a failure ends the run's own lease at once; a run that died holding
it is replaced once it runs out."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import OutboxMessage, ReceivedWebhook
from workflows import once, outbox, platforms, webhooks
from workflows.once import run_once

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)


def _received(db) -> tuple[int, int]:
    """A stored webhook and its outbox row, as `POST /webhooks/<platform>` leaves them: (webhook, outbox)."""
    body = json.dumps({"type": "test.unsupported", "data": {}}).encode()
    rid, _ = webhooks.receive(db, platform=platforms.get(db, "jiangsu"), webhook_id=f"msg_{uuid.uuid4().hex}",
                              body=body, headers={"webhook-timestamp": str(int(T0.timestamp()))},
                              event_type="test.unsupported")
    with db() as s:
        oid = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.topic == webhooks.TOPIC)
                       .order_by(OutboxMessage.id.desc()).limit(1))
    return rid, oid


def _event(db) -> int:
    with db.begin() as s:
        return outbox.write(s, "test.once", T0, {"n": 1})


def _row(db, model, row_id):
    with db() as s:
        return s.get(model, row_id)


def test_a_second_copy_while_the_first_runs_leaves_the_webhook_to_it(pg_db):
    """Given a stored webhook whose outbox row's first run is inside its work (holding the row),
    when a second copy of that outbox message is handled meanwhile (from another thread),
    then the second returns "in_progress" without running the work, and once the first finishes the
    webhook shows one attempt and the first run's outcome, and the outbox row is processed, lease ended."""
    rid, oid = _received(pg_db)
    inside, go, ran, first = threading.Event(), threading.Event(), [], []

    def slow(_row):
        ran.append("first")
        inside.set()
        assert go.wait(60)
        return webhooks.process(pg_db, rid)  # what the outbox actor does for a webhook.received row
    runner = threading.Thread(target=lambda: first.append(run_once(pg_db, OutboxMessage, oid, slow)))
    runner.start()
    try:
        assert inside.wait(60)
        assert run_once(pg_db, OutboxMessage, oid,
                        lambda _row: ran.append("second") or webhooks.process(pg_db, rid)) == "in_progress"
    finally:
        go.set()
        runner.join(60)
    assert first == ["unsupported_type"] and ran == ["first"]
    hook, event = _row(pg_db, ReceivedWebhook, rid), _row(pg_db, OutboxMessage, oid)
    assert (hook.outcome, hook.attempts, hook.processed_at is not None) == ("unsupported_type", 1, True)
    assert (event.attempts, event.lease_until, event.processed_at is not None) == (1, None, True)
    assert run_once(pg_db, OutboxMessage, oid, lambda _row: "again") == "processed"  # done: no second run


def test_a_run_whose_lease_ran_out_leaves_the_next_runs_lease_alone(pg_db):
    """Given an outbox row taken at T0 by a run that is still working when its lease runs out, and taken
    again by a second run after that,
    when the first run then fails,
    then the failure (of a run another one has replaced) changes nothing on the row: the second run's lease
    stands (a third copy is still "in_progress") and the row is not marked failed."""
    oid = _event(pg_db)
    inside, go, outcome = threading.Event(), threading.Event(), []

    def slow_then_fails(_row):
        inside.set()
        assert go.wait(60)
        raise RuntimeError("late failure")

    def first_run():
        try:
            run_once(pg_db, OutboxMessage, oid, slow_then_fails, now=T0)
        except RuntimeError as exc:
            outcome.append(str(exc))
    runner = threading.Thread(target=first_run)
    runner.start()
    second_at = T0 + timedelta(seconds=once.LEASE_S + 1)
    try:
        assert inside.wait(60)
        second_inside, second_go = threading.Event(), threading.Event()

        def second_work(_row):
            second_inside.set()
            assert second_go.wait(60)
            return "recorded"
        second = threading.Thread(target=lambda: run_once(pg_db, OutboxMessage, oid, second_work, now=second_at))
        second.start()
        assert second_inside.wait(60)
    finally:
        go.set()
        runner.join(60)
    try:
        assert outcome == ["late failure"]
        row = _row(pg_db, OutboxMessage, oid)
        assert (row.lease_until, row.last_error) == (second_at + timedelta(seconds=once.LEASE_S), None)
        assert run_once(pg_db, OutboxMessage, oid, lambda _row: "third", now=second_at) == "in_progress"
    finally:
        second_go.set()
        second.join(60)
    assert _row(pg_db, OutboxMessage, oid).processed_at is not None


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

