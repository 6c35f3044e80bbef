"""Which database errors are an unreachable database (`workflows.errors.database_unreachable`): a request
meeting one is answered 503 `unavailable` with a Retry-After, the scheduler waits as a standby, and an
Idempotency-Key's outcome is kept for later; anything else keeps its own answer (409 for a lock timeout
or a lost race, 500 for the unexpected)."""
from __future__ import annotations

import sqlite3

import psycopg
import pytest
import sqlalchemy as sa

from workflows.errors import database_unreachable


def wrapped(cls, orig, **kw):
    return cls("SELECT 1", {}, orig, **kw)


@pytest.mark.parametrize("exc", [
    wrapped(sa.exc.OperationalError, psycopg.OperationalError("connection failed: Connection refused")),
    wrapped(sa.exc.OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
    wrapped(sa.exc.OperationalError, psycopg.errors.CannotConnectNow("the database system is starting up")),
    wrapped(sa.exc.OperationalError, psycopg.errors.TooManyConnections("sorry, too many clients")),
    wrapped(sa.exc.OperationalError, psycopg.errors.lookup("08006")("connection failure")),
    wrapped(sa.exc.OperationalError, psycopg.errors.DiskFull("could not extend file")),
    wrapped(sa.exc.InternalError, psycopg.errors.ReadOnlySqlTransaction("read-only transaction")),
    wrapped(sa.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
    wrapped(sa.exc.OperationalError, psycopg.OperationalError("server closed the connection"),
            connection_invalidated=True),
    sa.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
], ids=["refused", "admin_shutdown", "starting_up", "too_many_connections", "class_08", "disk_full",
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
    RuntimeError("not a database error"),
], ids=["lock_timeout", "deadlock", "sqlite_locked", "unique", "data", "programming", "other"])
def test_what_a_statement_did_is_not_unreachable(exc):
    """Given an error about the statement or the data (a lock timeout, a deadlock, SQLite's busy lock, a
    constraint, a value, a missing table) or no database error at all
    Then it is not unreachable: it keeps its own answer (409 conflict, 422, 500)."""
    assert not database_unreachable(exc)
