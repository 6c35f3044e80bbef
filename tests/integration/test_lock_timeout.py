"""PostgreSQL lock waits are bounded (`models.db.LOCK_TIMEOUT_MS`): a command behind a transaction that holds
the binding's row too long answers 409 `conflict` and writes nothing, instead of hanging until the web
server kills the request; migrations wait as long as they must and hand the pooled connection back with the
app's setting. The lock is held until the command has answered, so no timing decides these tests: only
`lock_timeout` can end the wait."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from models import db as mdb
from models import migrate
from workflows import commands
from workflows.errors import DomainError

from .support import T0, accepted, history, invite, person, wait_for_a_lock_wait, with_test_migrations

pytestmark = pytest.mark.pg


@pytest.fixture
def impatient(pg_engine, pg_db):
    """A sessionmaker on the test database whose sessions wait 200 ms for a lock (the app's: 10 s)."""
    engine = mdb.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=2, lock_timeout_ms=200)
    yield mdb.make_sessionmaker(engine)
    engine.dispose()


def _held(pg_engine, binding_id: str):
    """Another session's open transaction holding the binding's row (SELECT … FOR UPDATE)."""
    conn = pg_engine.connect()
    conn.begin()
    conn.execute(sa.text("SELECT id FROM bindings WHERE id = :id FOR UPDATE"), {"id": binding_id})
    return conn


def _refused_while_held(holder, run) -> BaseException | None:
    """What `run` raised while `holder`'s open transaction held the lock it needs (rolled back after). A
    broken timeout fails the test (the lock is let go after 60 s), never hangs it."""
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(run)
        try:
            return waiting.exception(timeout=60)
        finally:
            holder.rollback()
            holder.close()


@pytest.mark.parametrize("kind", ["locking (cancel)", "optimistic (unbind)"])
def test_a_command_behind_a_lock_held_too_long_is_a_conflict_and_writes_nothing(pg_engine, pg_db, impatient,
                                                                                family, kind):
    """Given a binding (invited for a cancel, which locks the row; accepted for an unbind, whose versioned
    UPDATE waits on the row) whose row another transaction holds
    When the grantor's command runs on sessions that wait 200 ms for a lock
    Then it is 409 conflict (retry), and after the holder lets go the binding, its version and its history
    are as before; the same command then succeeds."""
    fam = family(pg_db, now=T0)
    if kind.startswith("locking"):
        bid, run = invite(pg_db, fam)["id"], commands.cancel
    else:
        bid, run = accepted(pg_db, fam), commands.unbind
    before = [(t.seq, t.to_state) for t in history(pg_db, bid)]
    holder = _held(pg_engine, bid)
    refused = _refused_while_held(holder, lambda: run(impatient, bid, person(fam.grantor), now=T0.replace(hour=3)))

    assert isinstance(refused, DomainError), refused
    assert refused.code == "conflict" and "lock timeout" in refused.detail
    assert [(t.seq, t.to_state) for t in history(pg_db, bid)] == before
    done = run(impatient, bid, person(fam.grantor), now=T0.replace(hour=3))
    assert done["state"] in ("cancelled", "unbound") and done["version"] == before[-1][0] + 1


def test_an_invitation_the_server_aborts_in_a_deadlock_is_a_conflict_and_writes_nothing(pg_engine, pg_db, family):
    """Given a family, and another transaction holding the beneficiary's or grantor's row, whichever sorts
    last (an invitation locks both persons in id order)
    When the invitation runs, has locked the first person and waits for the second, and the other
    transaction then asks for the first (a cycle; the other's deadlock_timeout is a minute, so PostgreSQL's
    check aborts the invitation, SQLSTATE 40P01, whatever language the server's messages are in)
    Then the invitation is 409 conflict and writes nothing; once the other lets go it succeeds."""
    fam = family(pg_db, now=T0)
    with pg_engine.connect() as c:
        first, last = c.execute(sa.text("SELECT id FROM persons ORDER BY id")).scalars().all()[-2:]
        assert c.execute(sa.text("SELECT count(*) FROM bindings")).scalar() == 0
    other = pg_engine.connect()
    other.begin()
    other.exec_driver_sql("SET LOCAL deadlock_timeout = '60s'")
    other.execute(sa.text("SELECT id FROM persons WHERE id = :id FOR UPDATE"), {"id": last})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(invite, pg_db, fam)
        try:
            wait_for_a_lock_wait(pg_db, on="persons")  # the invitation holds `first` and waits for `last`
            with ThreadPoolExecutor(1) as second:  # the other's own wait ends when the invitation is aborted
                grabbing = second.submit(other.execute, sa.text("SELECT id FROM persons WHERE id = :id FOR UPDATE"),
                                         {"id": first})
                refused = waiting.exception(timeout=60)
                grabbing.result(timeout=60)
        finally:
            other.rollback()
            other.close()
    assert isinstance(refused, DomainError), refused
    assert refused.code == "conflict"
    with pg_engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM bindings")).scalar() == 0
    assert invite(pg_db, fam)["state"] == "invited"


NO_LIMIT = """    op.execute("DO $$ BEGIN IF current_setting('lock_timeout') <> '0' THEN "
               "RAISE EXCEPTION 'lock_timeout is %', current_setting('lock_timeout'); END IF; END $$")"""


def test_migrations_wait_for_locks_without_limit_and_the_pool_gets_ten_seconds_back(pg_server, tmp_path):
    """Given a new database at head, the app's engine with one pooled connection, and two test-only migrations
    after head: 9998 checks that it runs with lock_timeout 0, 9999 checks the same and then fails
    When the database is upgraded to 9998, and then to 9999
    Then 9998 is applied; the upgrade to 9999 raises the migration's own error; and after each a statement
    on the pooled connection (the same server process) runs with the app's 10 s again."""
    cfg = with_test_migrations(
        tmp_path, ("9998", "runs without a lock timeout", NO_LIMIT, "    pass"),
        ("9999", "then fails", NO_LIMIT + '\n    raise RuntimeError("9999 failed on purpose")', "    pass"))
    url = pg_server.create_database("gongji_locks")
    engine = mdb.make_engine(url, pool_size=1)
    try:
        with engine.connect() as c:
            pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()

        migrate.upgrade(engine, "9998", config=cfg)
        with engine.connect() as c:
            assert (c.exec_driver_sql("SELECT pg_backend_pid()").scalar(), c.exec_driver_sql(
                "SHOW lock_timeout").scalar()) == (pid, "10s")
        with pytest.raises(RuntimeError, match="9999 failed on purpose"):
            migrate.upgrade(engine, "9999", config=cfg)
        with engine.connect() as c:
            assert c.exec_driver_sql("SHOW lock_timeout").scalar() == "10s"
            assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "9998"
    finally:
        engine.dispose()
        pg_server.drop_database(url)


def test_a_command_behind_sqlites_write_lock_is_a_conflict_and_writes_nothing(tmp_path, sqlite_db, family):
    """Given the embedded default's SQLite, and another connection holding the write lock (BEGIN IMMEDIATE,
    as a long command would)
    When a command on a binding runs meanwhile on a connection whose busy timeout is 0.2 s (the app's: 30 s)
    Then it is 409 `conflict` (a lock timeout, like PostgreSQL's `lock_timeout`), not a 500; after the holder
    lets go the history is as before, and the same command succeeds."""
    fam = family(sqlite_db, now=T0)
    bid = accepted(sqlite_db, fam, now=T0)
    before = [(t.seq, t.to_state) for t in history(sqlite_db, bid)]
    engine = mdb.make_engine(f"sqlite:///{tmp_path / 'gongji.db'}", sqlite_busy_s=0.2)  # sqlite_db's file
    impatient = mdb.make_sessionmaker(engine)
    holder = sqlite_db.kw["bind"].connect()
    holder.begin()  # BEGIN IMMEDIATE (models/db.py): the write lock, until rolled back
    holder.execute(sa.text("SELECT 1"))
    refused = _refused_while_held(holder, lambda: commands.unbind(impatient, bid, person(fam.grantor),
                                                                  now=T0.replace(hour=3)))

    assert isinstance(refused, DomainError), refused
    assert refused.code == "conflict" and "lock timeout" in refused.detail
    assert [(t.seq, t.to_state) for t in history(sqlite_db, bid)] == before
    assert commands.unbind(impatient, bid, person(fam.grantor), now=T0.replace(hour=3))["state"] == "unbound"
    engine.dispose()
