"""Autocommit set on the driver's connection (`workflows.statements.autocommit_on`) never outlives its use.

An optimistic command and the one-statement paths put the pooled psycopg connection in autocommit directly
(cheaper than SQLAlchemy's isolation-level characteristics). The pool's check-in takes it out again
(`models.db`): a connection handed out still in autocommit would silently give the next command no
transaction at all (its row locks released at once, each statement committed alone)."""
from __future__ import annotations

import gc

import pytest
import sqlalchemy as sa

from models import db as mdb
from workflows.statements import Statement, autocommit_on

pytestmark = pytest.mark.pg

_PROBE = sa.table("autocommit_probe", sa.column("id", sa.Integer))
_INSERT = Statement(sa.insert(_PROBE).values(id=sa.bindparam("id", type_=sa.Integer)))
_PID = Statement(sa.select(sa.func.pg_backend_pid()))


@pytest.fixture()
def one_connection(pg_engine):
    """An engine whose pool holds exactly one connection (every checkout gets the same driver connection),
    with the probe table created empty."""
    engine = mdb.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    engine.pool._max_overflow = 0
    with engine.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS autocommit_probe")
        c.exec_driver_sql("CREATE TABLE autocommit_probe (id int primary key)")
    try:
        yield engine
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE autocommit_probe")
        engine.dispose()


def _rolled_back_insert_is_gone(engine) -> bool:
    """The next checkout behaves transactionally: an insert rolled back is not there."""
    with engine.connect() as c:
        assert c.connection.dbapi_connection.autocommit is False
        _INSERT.run(c, {"id": 99})
        c.rollback()
    with engine.connect() as c:
        return c.exec_driver_sql("SELECT count(*) FROM autocommit_probe WHERE id = 99").scalar() == 0


def test_a_connection_closed_after_autocommit_goes_back_transactional(one_connection):
    """Given a checked-out connection put in autocommit, which commits an insert by itself,
    when it is closed,
    then the insert stayed (autocommit), and the pool's next checkout of that same driver connection is
    out of autocommit: a rolled-back insert on it is gone."""
    with one_connection.connect() as c:
        autocommit_on(c)
        _INSERT.run(c, {"id": 1})
    with one_connection.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM autocommit_probe WHERE id = 1").scalar() == 1
    assert _rolled_back_insert_is_gone(one_connection)


def test_a_connection_dropped_unclosed_or_left_by_an_exception_goes_back_transactional(one_connection):
    """Given connections put in autocommit and then left without close: one dropped and collected, one whose
    block raised,
    when the pool takes each back,
    then the next checkout is out of autocommit either way."""
    c = one_connection.connect()
    autocommit_on(c)
    del c
    gc.collect()
    assert _rolled_back_insert_is_gone(one_connection)
    with pytest.raises(RuntimeError):
        with one_connection.connect() as c:
            autocommit_on(c)
            raise RuntimeError("the command failed")
    assert _rolled_back_insert_is_gone(one_connection)


def test_a_statement_on_a_connection_replaced_after_a_disconnect_is_refused(one_connection, pg_engine):
    """Given a connection in autocommit whose server process is terminated, so that a statement fails and
    SQLAlchemy invalidates it,
    when the caller runs another statement on the same Connection (SQLAlchemy would reconnect it, to a
    driver connection not in autocommit),
    then that statement is refused before it runs: it would have run in a transaction nobody commits and
    answered success for a write that is then lost."""
    with one_connection.connect() as c:
        autocommit_on(c)
        pid = _PID.scalar(c)  # (through the Statement path: SQLAlchemy holds no transaction of its own)
        with pg_engine.connect() as admin:
            assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
        with pytest.raises(sa.exc.OperationalError):
            _INSERT.run(c, {"id": 7})
        with pytest.raises(sa.exc.InvalidRequestError, match="replaced after a disconnect"):
            _INSERT.run(c, {"id": 8})
    with one_connection.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM autocommit_probe").scalar() == 0
