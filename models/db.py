"""Engine and session set-up for SQLite (embedded default) and PostgreSQL (production, tests).

SQLite: WAL, a busy timeout, foreign keys on, and every transaction opened with BEGIN IMMEDIATE so two
writers queue for the lock instead of failing on a read→write upgrade. PostgreSQL: row locks and version
checks decide (see workflows/unit.py). Both engines hide bound parameters from logs and exception texts
(`hide_parameters`): they carry masked views, keyed hashes, ciphertexts and free-text reasons, and an
error's text ends up in logs and on delivery rows."""
from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from . import crypto
from .settings import Settings


# PostgreSQL: how long a statement waits for a row or table lock before it gives up (`lock_timeout`), in ms.
# A command then answers 409 `conflict` (retry) instead of hanging behind a transaction that holds a lock
# for long (a stuck client, an operator's open psql session) until the web server kills the request; and a
# command commits within a few such waits of the moment it was stamped, which the sync feed's horizon
# (`workflows/sync.py`, 60 s) relies on. Migrations wait as long as they must (`models/migrate.py`).
LOCK_TIMEOUT_MS = 10_000
# SQLite (the embedded default): how long a transaction waits for another's write lock, in seconds; then
# "database is locked", which a command answers as PostgreSQL's lock timeout (409 `conflict`, retry)
SQLITE_BUSY_S = 30.0


# PostgreSQL, libpq's connection options (seconds), each unless the URL (or PGCONNECT_TIMEOUT) sets it. Why:
# a database that accepts TCP but does not answer (overloaded, a half-done failover, a stuck proxy) held
# every connection attempt, and with it the request, the actor or the tick, for ever; now it fails after
# CONNECT_TIMEOUT_S, and a request is answered 503 `unavailable`. A server that vanished under an open
# connection (a host gone, no RST) is found by TCP keepalives after ~KEEPALIVE idle + probes (about a
# minute) instead of the kernel's two hours.
CONNECT_TIMEOUT_S = 10
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def json_bytes(value) -> bytes:
    """JSON columns' serializer (orjson: UTF-8 bytes, no spaces). Every transition stores its outbox event,
    ~1.4 KB of JSON; the standard library's encoder took ~7 % of a command's client CPU (py-spy of
    bench/transitions.py), orjson about a tenth of that. Keys that are not strings become strings, as the
    standard library does."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def json_text(value) -> str:
    """The same as text, for SQLite's driver (bytes would be stored as a BLOB)."""
    return json_bytes(value).decode()


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                connect_timeout_s: int = CONNECT_TIMEOUT_S, sqlite_busy_s: float = SQLITE_BUSY_S) -> sa.Engine:
    url_obj = sa.make_url(url)
    if url_obj.get_backend_name() == "sqlite":
        if url_obj.database and url_obj.database != ":memory:":
            Path(url_obj.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url_obj, echo=echo, hide_parameters=True, json_serializer=json_text,
                                  connect_args={"check_same_thread": False, "timeout": sqlite_busy_s})
        _sqlite_pragmas(engine, sqlite_busy_s)
        return engine
    if url_obj.drivername in ("postgresql", "postgres"):
        url_obj = url_obj.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url_obj, echo=echo, hide_parameters=True, pool_size=pool_size, max_overflow=pool_size,
                              json_serializer=json_bytes, connect_args=_libpq_options(url_obj, connect_timeout_s))
    _lock_timeout(engine, int(lock_timeout_ms))
    _ping_when_idle(engine)
    _autocommit_off_at_checkin(engine)
    return engine


def _libpq_options(url: sa.URL, connect_timeout_s: int) -> dict:
    """CONNECT_TIMEOUT_S and KEEPALIVE, except what the URL's query (or PGCONNECT_TIMEOUT) already sets."""
    options = {"connect_timeout": int(connect_timeout_s), **KEEPALIVE}
    if os.environ.get("PGCONNECT_TIMEOUT"):
        options.pop("connect_timeout")
    return {k: v for k, v in options.items() if k not in url.query}


def _lock_timeout(engine: sa.Engine, ms: int) -> None:
    """Set on each new connection with a statement (not libpq's `options`, which would replace any the URL
    or PGOPTIONS carry, and which PgBouncer refuses)."""
    @event.listens_for(engine, "connect")
    def _set(dbapi_conn, _record):
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True  # the session's value, not one a transaction would roll back
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET SESSION lock_timeout = {ms}")
        finally:
            dbapi_conn.autocommit = autocommit


PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: sa.Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, skipped for a connection checked in less than PING_AFTER_IDLE_S ago.

    A ping is a round trip per checkout (one per command, ~7 % of a command's client CPU): under load a
    connection is back in use within milliseconds and was just proven alive; one that sat idle (where
    a server restart or a proxy's idle timeout leaves it dead) is pinged, and a dead one is replaced
    before the command sees it, together with every connection older than it (InvalidatePoolError, as
    SQLAlchemy's own pre-ping does). A connection just opened counts as just used."""
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _used(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.InvalidatePoolError("connection found dead at checkout") from exc


def _autocommit_off_at_checkin(engine: sa.Engine) -> None:
    """A connection goes back to the pool out of autocommit, whatever put it there and however it comes back
    (closed, or dropped unclosed and collected; `workflows.statements.autocommit_on` relies on this): in
    autocommit the next command's row locks and atomicity would silently be gone. A driver that refuses
    (closed, broken) fails its next use and is replaced then."""
    @event.listens_for(engine, "checkin")
    def _off(dbapi_conn, _record):
        if dbapi_conn is not None and dbapi_conn.autocommit:
            try:
                dbapi_conn.autocommit = False
            except engine.dialect.loaded_dbapi.Error:
                pass


def _sqlite_pragmas(engine: sa.Engine, busy_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("pragma journal_mode=wal")
        cur.execute("pragma foreign_keys=on")
        cur.execute(f"pragma busy_timeout={int(busy_s * 1000)}")
        cur.execute("pragma synchronous=normal")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def from_settings(settings: Settings, *, pool_size: int = 10) -> tuple[sa.Engine, sessionmaker[Session]]:
    """Configure PII crypto for this process and build the engine + session factory."""
    crypto.configure(settings.pii_keys, settings.pii_active_key, settings.lookup_key, settings.lookup_retired)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    return engine, make_sessionmaker(engine)


def is_postgres(session_or_engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"
