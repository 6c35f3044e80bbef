"""`gongji scheduler`'s single activity on PostgreSQL (`workers/scheduler.py`): of two schedulers one holds the
advisory lock and ticks, the other waits as a standby; when the active one's lock session dies (a database
restart, a killed idle connection) it stops ticking (`LockLost`) instead of ticking beside the standby, which
takes the lock, and waits as a standby itself. Two real scheduler loops in threads on the test database; the
lock checks are shortened."""
from __future__ import annotations

import contextlib
import logging
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

    def __init__(self, db, engine, stop, name: str):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(db, engine, stop), daemon=True, name=name)
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
    loops = [Loop(db, engine, stop, "scheduler-a"), Loop(db, engine, stop, "scheduler-b")]
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
        pg_db, pg_engine, monkeypatch, tmp_path, caplog):
    """Given two schedulers started on one database
    When both are running, and then the lock holder's database session is terminated
    Then exactly one session holds the lock while both run; after the kill, the scheduler that held it
    stops ticking (it does not go on unlocked) and waits as a standby, while the other one now holds the lock
    and is the only one ticking; neither loop ends, and each touched its health file while it ran."""
    ticks: list[str] = []
    monkeypatch.setattr(scheduler, "tick", lambda db, **kw: ticks.append(threading.current_thread().name) or 0)
    caplog.set_level(logging.WARNING, logger="workers.scheduler")
    with two_schedulers(pg_db, pg_engine, monkeypatch, tmp_path / "alive", check_s=0.1) as (loops, first):
        poll(lambda: _went_standby(caplog), timeout=20, what="the scheduler whose lock went away standing by")
        [lost] = _went_standby(caplog)
        poll(lambda: _holders(pg_engine) not in ([], [first]), timeout=20, what="the standby taking the lock")
        seen = len(ticks)
        poll(lambda: len(ticks) >= seen + 20, timeout=20, what="twenty more ticks")
        assert lost not in ticks[seen:] and len(set(ticks[seen:])) == 1, ticks[seen:]
        assert all(loop.thread.is_alive() and loop.error is None for loop in loops)
        assert len(_holders(pg_engine)) == 1 and (tmp_path / "alive").exists()
    assert [loop.error for loop in loops] == [None, None]


def _went_standby(caplog) -> list[str]:
    """The threads of the loops that logged going back to waiting as a standby."""
    return [r.threadName for r in caplog.records if "waiting as a standby" in r.getMessage()]


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
