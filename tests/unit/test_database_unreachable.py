"""Which database errors are an unreachable database (`workflows.errors.database_unreachable`): a request
meeting one is answered 503 `unavailable` with a Retry-After, the scheduler waits as a standby, and an
Idempotency-Key's outcome is kept for later; anything else keeps its own answer (409 for a lock timeout
or a lost race, 500 for the unexpected)."""
from __future__ import annotations

import sqlite3

import psycopg
import pytest
import sqlalchemy as sa

from workflows.errors import database_unreachable, lock_wait_expired


def wrapped(cls, orig, **kw):
    return cls("SELECT 1", {}, orig, **kw)


@pytest.mark.parametrize("exc", [
    wrapped(sa.exc.OperationalError, psycopg.OperationalError("connection failed: Connection refused")),
    wrapped(sa.exc.OperationalError, psycopg.errors.ConnectionTimeout("connection timeout expired")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        'connection is bad: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file '
        'or directory')),
    wrapped(sa.exc.OperationalError, psycopg.errors.IdleSessionTimeout("terminating connection due to idle-"
                                                                       "session timeout"),
            connection_invalidated=True),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError("failed to resolve host 'db': Name or service "
                                                              "not known")),
    wrapped(sa.exc.OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
    wrapped(sa.exc.OperationalError, psycopg.errors.CannotConnectNow("the database system is starting up")),
    wrapped(sa.exc.OperationalError, psycopg.errors.TooManyConnections("sorry, too many clients")),
    wrapped(sa.exc.OperationalError, psycopg.errors.lookup("08006")("connection failure")),
    wrapped(sa.exc.OperationalError, psycopg.errors.DiskFull("could not extend file")),
    wrapped(sa.exc.InternalError, psycopg.errors.ReadOnlySqlTransaction("read-only transaction")),
    wrapped(sa.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError("server closed the connection unexpectedly"),
            connection_invalidated=True),
    sa.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
], ids=["refused", "connect_timeout", "socket_gone", "idle_session_ended", "no_name_service", "admin_shutdown", "starting_up", "too_many_connections", "class_08", "disk_full",
        "read_only", "closed",
        "invalidated", "pool_timeout"])
def test_a_database_that_cannot_be_reached_now_is_unreachable(exc):
    """Given an error SQLAlchemy raises when PostgreSQL cannot serve (refused, shutting down, starting, no
    slot, a full disk, a demoted primary, a broken connection) or the pool has no connection to give
    Then it counts as unreachable: 503, retry after a pause."""
    assert database_unreachable(exc)


@pytest.mark.parametrize("exc", [
    wrapped(sa.exc.OperationalError, psycopg.errors.LockNotAvailable("lock timeout")),
    wrapped(sa.exc.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
    wrapped(sa.exc.OperationalError, sqlite3.OperationalError("database is locked")),
    wrapped(sa.exc.IntegrityError, psycopg.errors.UniqueViolation("duplicate key")),
    wrapped(sa.exc.DataError, psycopg.errors.StringDataRightTruncation("value too long")),
    wrapped(sa.exc.ProgrammingError, psycopg.errors.UndefinedTable("no such table")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        'connection failed: connection to server at "db", port 5432 failed: FATAL:  database "gongji_typo" '
        'does not exist')),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        'connection failed: connection to server at "db", port 5432 failed: FATAL:  password authentication '
        'failed for user "gongji"')),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        "connection failed: server does not support SSL, but SSL was required")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        "connection failed: SSL error: certificate verify failed")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError(
        'connection failed: connection to server at "db", port 6432 failed: FATAL:  no such database: gongji')),
    wrapped(sa.exc.InterfaceError, psycopg.InterfaceError("another command is already in progress")),
    wrapped(sa.exc.ProgrammingError, psycopg.ProgrammingError("the cursor doesn't have a result")),
    RuntimeError("not a database error"),
], ids=["lock_timeout", "deadlock", "sqlite_locked", "unique", "data", "programming", "no_such_database",
        "wrong_password", "ssl_required", "certificate", "pgbouncer_no_database", "driver_misuse", "no_result", "other"])
def test_what_a_statement_did_is_not_unreachable(exc):
    """Given an error about the statement or the data (a lock timeout, a deadlock, SQLite's busy lock, a
    constraint, a value, a missing table), a setting to fix (no such database, a wrong password), the driver
    used wrongly (a bug), or no database error at all
    Then it is not unreachable: it keeps its own answer (409 conflict, 422, 500 with its cause logged), not
    an endless 503."""
    assert not database_unreachable(exc)


def _sqlite_busy(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = code  # set by sqlite3 itself on a real one (tests/integration/test_lock_timeout.py)
    return error


@pytest.mark.parametrize("exc, expired", [
    (wrapped(sa.exc.OperationalError, psycopg.errors.LockNotAvailable("lock timeout")), True),
    (wrapped(sa.exc.OperationalError, _sqlite_busy(5)), True),  # SQLITE_BUSY
    (wrapped(sa.exc.OperationalError, _sqlite_busy(6)), True),  # SQLITE_LOCKED
    (wrapped(sa.exc.OperationalError, _sqlite_busy(1)), False),  # SQLITE_ERROR
    (wrapped(sa.exc.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")), False),
    (wrapped(sa.exc.OperationalError, psycopg.OperationalError("connection failed: refused")), False),
    (RuntimeError("not a database error"), False),
], ids=["pg_lock_timeout", "sqlite_busy", "sqlite_locked", "sqlite_error", "deadlock", "refused", "other"])
def test_a_lock_wait_given_up_is_told_apart(exc, expired):
    """Given PostgreSQL's lock_timeout or SQLite's busy timeout, and other errors, Then only the first two are
    a lock wait given up (409 conflict, retry)."""
    assert lock_wait_expired(exc) is expired


def test_an_actor_meeting_an_outage_is_retried_with_its_backoff_in_one_log_line(caplog):
    """Given an actor body that meets an unreachable database, one that meets another error, and `deliver`'s
    kind (`swept`: dramatiq does not retry it)
    When each runs
    Then the first raises dramatiq's Retry without a delay of its own (the actor's exponential backoff
    applies, so its retries last minutes) and logs one warning naming the cause; the other error goes
    through unchanged; the swept one returns (no dead letter) and says the scheduler's pass will send it."""
    import dramatiq

    from workers.actors import outage_is_a_retry

    away = wrapped(sa.exc.OperationalError, psycopg.OperationalError("connection failed: Connection refused"))

    def meets(exc):
        def body():
            raise exc
        return body
    caplog.set_level("WARNING", logger="workers.actors")
    with pytest.raises(dramatiq.Retry) as retried:
        outage_is_a_retry(meets(away))()
    assert retried.value.delay is None
    with pytest.raises(ValueError):
        outage_is_a_retry(meets(ValueError("a bug")))()
    assert outage_is_a_retry(swept=True)(meets(away))() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("Connection refused" in line for line in lines), lines
    assert "retried" in lines[0] and "scheduler's next pass" in lines[1] and not any(r.exc_info for r in caplog.records)
