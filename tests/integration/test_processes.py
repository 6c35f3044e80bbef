"""Which worker and scheduler processes run (`workflows/processes.py`) on real PostgreSQL: a process's beat,
a real dramatiq worker's row from boot to shutdown (`workers/liveness.py`), two real scheduler loops, one
active and one standby (`workers/scheduler.py`), and the overview and `/metrics` that read them."""
from __future__ import annotations

import threading
from datetime import timedelta

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from models import ProcessBeat
from models.types import utcnow
from workers import scheduler
from workers.liveness import Liveness
from workflows import gauges, processes

from .support import poll

pytestmark = pytest.mark.pg
PB = ProcessBeat.__table__


@pytest.fixture
def beats(pg_db):
    with pg_db.begin() as s:
        s.execute(sa.delete(PB))
    yield pg_db
    with pg_db.begin() as s:
        s.execute(sa.delete(PB))


def _rows(db) -> list[dict]:
    with db() as s:
        return [dict(r) for r in s.execute(sa.select(PB).order_by(PB.c.id)).mappings()]


def test_a_beat_writes_its_row_every_ten_seconds_at_once_on_a_new_role_and_forgets_old_rows(beats):
    """Given a row of a process last seen more than a day ago, and a new worker beat
    When it beats at T, T+5 s, T+5 s as stopped, T+15 s as running again
    Then the row is written at T (and the day-old row deleted), not at T+5 s (too soon), at once for the new
    role, and again at T+15 s; the row has this host and pid and started_at T throughout."""
    t = utcnow()
    with beats.begin() as s:
        s.execute(sa.insert(PB).values(id="worker:old:1", kind="worker", role="running", host="old", pid=1,
                                       started_at=t - timedelta(days=3),
                                       seen_at=t - timedelta(seconds=processes.FORGET_S + 1)))
    b = processes.Beat(processes.WORKER)
    assert b.beat(beats, processes.RUNNING, now=t)
    [row] = _rows(beats)
    assert (row["role"], row["seen_at"], row["started_at"]) == ("running", t, t)
    assert not b.beat(beats, processes.RUNNING, now=t + timedelta(seconds=5))
    assert _rows(beats)[0]["seen_at"] == t
    b.stop(beats, now=t + timedelta(seconds=5))
    assert [(r["role"], r["seen_at"]) for r in _rows(beats)] == [("stopped", t + timedelta(seconds=5))]
    assert b.beat(beats, processes.RUNNING, now=t + timedelta(seconds=15))
    [row] = _rows(beats)
    assert (row["role"], row["started_at"]) == ("running", t)
    assert row["id"].startswith("worker:") and row["pid"] > 0


def test_a_dramatiq_worker_runs_from_boot_and_is_stopped_after_its_shutdown(beats):
    """Given a real dramatiq Worker (StubBroker, one actor) with the Liveness middleware and no health file
    When it starts, Then the overview's reading shows one worker running, with this process's pid;
    When it stops, Then none runs and the last one seen stopped (it did not go away)."""
    import os

    broker = StubBroker()
    broker.add_middleware(Liveness(alive_file=None, db=beats))
    dramatiq.actor(lambda: None, actor_name="gongji_test_noop", broker=broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        poll(lambda: not processes.health(beats)[processes.WORKER].down, timeout=20, what="the worker's row")
        running = processes.health(beats)[processes.WORKER].running
        assert [p["pid"] for p in running] == [os.getpid()]
    finally:
        worker.stop()
    after = processes.health(beats)[processes.WORKER]
    assert after.down and after.last_role == "stopped"


@pytest.fixture
def no_delivery_pass(monkeypatch):
    monkeypatch.setattr(scheduler, "delivery_pass", lambda db, batch=500: 0)  # ticks need no broker here
    monkeypatch.setattr(scheduler, "STANDBY_WAIT_S", 0.1)
    monkeypatch.setattr(scheduler, "_alive", lambda: None)  # no health file


def test_two_schedulers_read_as_one_active_and_one_standby_and_both_stopped_after(beats, pg_engine,
                                                                                   no_delivery_pass):
    """Given two real scheduler loops on one PostgreSQL database (one holds the advisory lock)
    When both run, Then the reading shows one active scheduler and one standby, and `/metrics`'s reading the
    same counts; When both are stopped, Then no scheduler runs and none waits, the last one having stopped,
    and the standby's row says it was a standby (it is never taken for the last active one)."""
    stop = threading.Event()
    loops = [threading.Thread(target=scheduler.run, args=(beats, pg_engine),
                              kwargs={"interval_s": 0.05, "stop": stop}, daemon=True) for _ in range(2)]
    for loop in loops:
        loop.start()
    try:
        poll(lambda: (len(processes.health(beats)[processes.SCHEDULER].running),
                      processes.health(beats)[processes.SCHEDULER].standby) == (1, 1),
             timeout=20, what="one active scheduler and one standby")
        reading = gauges.read(beats, now=utcnow())
        assert reading.processes["running"] == {"worker": 0, "scheduler": 1, "scheduler_standby": 1}
        assert 0 <= reading.processes["last_seen_age_s"]["scheduler"] < processes.STALE_S
        assert reading.processes["last_seen_age_s"]["worker"] == -1.0  # none in the last day
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=20)
    after = processes.health(beats)[processes.SCHEDULER]
    assert after.down and after.standby == 0 and after.last_role == "stopped"
    assert sorted(r["role"] for r in _rows(beats)) == ["stopped", "stopped_standby"]  # the standby's says so


def test_a_long_tick_keeps_the_scheduler_seen_and_a_wedged_one_reads_as_gone(beats, pg_engine, no_delivery_pass,
                                                                             monkeypatch):
    """Given a scheduler whose tick blocks (beats every 0.2 s, a tick allowed MAX_TICK_S = 2 s, a row stale
    after 1 s: shortened)
    When the tick has begun and does not return, Then the row is still written (its seen_at moves on while
    the tick runs); once the tick has run past MAX_TICK_S the row is no longer written and the scheduler
    reads as gone (wedged); When the tick returns and the scheduler is stopped, Then its row reads stopped."""
    monkeypatch.setattr(processes, "BEAT_S", 0.2)
    monkeypatch.setattr(processes, "STALE_S", 1.0)
    monkeypatch.setattr(scheduler, "MAX_TICK_S", 2.0)
    begun, release = threading.Event(), threading.Event()

    def blocked_tick(db, **_kw):
        begun.set()
        release.wait(60)
        return 0
    monkeypatch.setattr(scheduler, "tick", blocked_tick)
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(beats, pg_engine), kwargs={"interval_s": 0.05, "stop": stop},
                            daemon=True)
    loop.start()
    try:
        assert begun.wait(20)
        first = _rows(beats)[0]["seen_at"]
        poll(lambda: _rows(beats)[0]["seen_at"] > first, timeout=20, what="a beat during the tick")
        assert not release.is_set()  # the tick is still running
        poll(lambda: processes.health(beats)[processes.SCHEDULER].down, timeout=20,
             what="the wedged scheduler reading as gone")
        assert _rows(beats)[0]["role"] == "active"  # not stopped: it went quiet
    finally:
        release.set()
        stop.set()
        loop.join(timeout=20)
    assert [r["role"] for r in _rows(beats)] == ["stopped"]
