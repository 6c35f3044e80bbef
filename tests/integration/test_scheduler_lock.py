"""`gongji scheduler`'s single activity on PostgreSQL (`workers/scheduler.py`): of two schedulers one holds the
advisory lock and ticks, the other waits as a standby; when the active one's lock session dies (a database
restart, a killed idle connection) it stops with `LockLost` instead of ticking beside the standby, which
takes the lock. Two real scheduler loops in threads on the test database; the lock checks are shortened."""
from __future__ import annotations

import contextlib
import threading

import pytest
import sqlalchemy as sa

from workers import scheduler

from .support import poll

HOLDERS = sa.text("select pid from pg_locks where locktype = 'advisory' and granted and classid = 0 "
                  "and objid = :k and objsubid = 1 and database = (select oid from pg_database "
                  "where datname = current_database())")


class Loop:
    """One scheduler loop in a thread; what it raised, if anything."""

    def __init__(self, db, engine, stop):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(db, engine, stop), daemon=True)
        self.thread.start()

    def _run(self, db, engine, stop):
        try:
            scheduler.run(db, engine, interval_s=0.05, stop=stop)
        except BaseException as exc:  # noqa: BLE001 - what the test reads
            self.error = exc


def _holders(engine) -> list[int]:
    with engine.connect() as c:
        return list(c.execute(HOLDERS, {"k": scheduler.LOCK_KEY}).scalars())


@contextlib.contextmanager
def two_schedulers(db, engine, monkeypatch, alive, *, check_s: float):
    """Two scheduler loops on one database, the lock checked every `check_s`; once one holds the lock, its
    session is terminated. Yields (loops, the killed session's pid); stops and joins both after."""
    monkeypatch.setattr(scheduler, "LOCK_CHECK_S", check_s)
    monkeypatch.setattr(scheduler, "STANDBY_WAIT_S", 0.1)
    monkeypatch.setattr(scheduler, "ALIVE_FILE", alive)
    stop = threading.Event()
    loops = [Loop(db, engine, stop), Loop(db, engine, stop)]
    try:
        poll(lambda: len(_holders(engine)) == 1, timeout=20, what="one scheduler holding the lock")
        [first] = _holders(engine)
        assert all(loop.thread.is_alive() for loop in loops)  # the other waits, it does not give up
        with engine.connect() as c:
            assert c.execute(sa.text("select pg_terminate_backend(:p)"), {"p": first}).scalar()
        yield loops, first
    finally:
        stop.set()
        for loop in loops:
            loop.thread.join(timeout=20)
        engine.dispose()  # the killed session must not reach the next test through the shared pool


def test_one_scheduler_ticks_and_the_other_takes_over_when_the_first_ones_lock_session_dies(
        pg_db, pg_engine, monkeypatch, tmp_path):
    """Given two schedulers started on one database
    When both are running, and then the lock holder's database session is terminated
    Then exactly one session holds the lock while both run; after the kill, the scheduler that held it
    stops with LockLost (it does not go on ticking unlocked) and the other one now holds the lock; each
    touched its health file while it ran."""
    with two_schedulers(pg_db, pg_engine, monkeypatch, tmp_path / "alive", check_s=0.1) as (loops, first):
        poll(lambda: any(isinstance(loop.error, scheduler.LockLost) for loop in loops), timeout=20,
             what="the scheduler whose lock went away stopping")
        poll(lambda: _holders(pg_engine) not in ([], [first]), timeout=20, what="the standby taking the lock")
        lost = [loop for loop in loops if loop.error is not None]
        assert len(lost) == 1 and not lost[0].thread.is_alive()
        assert [loop.thread.is_alive() for loop in loops if loop is not lost[0]] == [True]
        assert (tmp_path / "alive").exists()
    assert [type(loop.error) for loop in loops].count(scheduler.LockLost) == 1
    assert [loop.error for loop in loops].count(None) == 1


def test_without_the_check_the_lock_loss_would_go_unnoticed(pg_db, pg_engine, monkeypatch, tmp_path):
    """A control: with the check made rare (an hour), the same kill leaves the first scheduler ticking
    with no lock while the standby takes it, two active at once: what the check prevents."""
    with two_schedulers(pg_db, pg_engine, monkeypatch, tmp_path / "alive", check_s=3600.0) as (loops, first):
        poll(lambda: _holders(pg_engine) not in ([], [first]), timeout=20, what="the standby taking the lock")
        assert all(loop.thread.is_alive() and loop.error is None for loop in loops)


@pytest.fixture(autouse=True)
def _no_broker_needed(monkeypatch):
    """The loops tick an empty database: nothing to send, but the delivery pass must not need a worker."""
    monkeypatch.setattr(scheduler, "delivery_pass", lambda db, batch=500: 0)
