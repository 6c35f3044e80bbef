"""The race tests' own helper: `wait_for_a_lock_wait` must see a lock wait that begins after it started
polling. PostgreSQL keeps one snapshot of pg_stat_activity per transaction, so a helper polling inside one
transaction never saw such a wait (the failure CI met once under load)."""
from __future__ import annotations

import threading

import sqlalchemy as sa

from . import support


def test_a_lock_wait_that_begins_after_the_first_poll_is_seen(pg_db, monkeypatch):
    """Given a row locked by one session and the helper's first poll made while nobody waits,
    when a second session then starts waiting for that row,
    then the helper's next polls see it and it returns."""
    engine = pg_db.kw["bind"]
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE lock_probe (id int PRIMARY KEY)")
        c.exec_driver_sql("INSERT INTO lock_probe VALUES (1)")
    holder = engine.connect()
    holder.exec_driver_sql("SELECT id FROM lock_probe FOR UPDATE")
    waiter = threading.Thread(target=_update_probe, args=(engine,))
    polls, real = [], support.wait_until

    def first_poll_then_start_the_waiter(predicate, **kw):
        def counted():
            value = predicate()
            polls.append(value)
            if len(polls) == 1:
                waiter.start()
            return value
        return real(counted, **kw)
    monkeypatch.setattr(support, "wait_until", first_poll_then_start_the_waiter)
    try:
        support.wait_for_a_lock_wait(pg_db, on="lock_probe")
        assert polls[0] is False and polls[-1] is True
    finally:
        holder.rollback()
        holder.close()
        if waiter.is_alive() or waiter.ident:
            waiter.join(30)
        with engine.begin() as c:
            c.execute(sa.text("DROP TABLE lock_probe"))


def _update_probe(engine) -> None:
    with engine.connect() as c:
        c.exec_driver_sql("UPDATE lock_probe SET id = 1")
        c.rollback()
