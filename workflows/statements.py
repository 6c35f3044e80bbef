"""Hot statements: built once from SQLAlchemy Core, run on the driver's own cursor on PostgreSQL.

Why: a command runs two to four statements and the in-process lifecycle is bound by one Python core
(the GIL; see bench/transitions.py). Through SQLAlchemy's execution layer a statement costs 25–120 µs
of client CPU (most of it turning the cursor description into result metadata for each call), on the
psycopg cursor 10–40 µs. So the SQL still comes from Core, compiled once per dialect; the connection
and its transaction still come from SQLAlchemy's pool; only the execution is the driver's.

What SQLAlchemy would do per call is done here: its own (cached) bind and result processors of each
type (UTC timestamps, encrypted columns, JSON), literal values compiled into the statement passed along,
autobegin, and a driver error handled by the Connection itself (translated to SQLAlchemy's exceptions,
so IntegrityError still answers 409/422; a disconnect invalidates the pool). `before_cursor_execute`
listeners hear every statement (the bench counts them); `echo` logging and `after_cursor_execute` do not.
Other databases (SQLite, the embedded default) simply go through `Connection.execute`.

A write Statement refuses to run on a connection an optimistic command holds (`READ_ONLY`), unless it is
that command's one `final` write (`workflows/writes.py`): in autocommit, a stray write would commit alone.
Uses three private SQLAlchemy methods (the types' `_cached_bind_processor` and `_cached_result_processor`,
the Connection's `_handle_dbapi_exception`); SQLAlchemy is pinned in pyproject.toml."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

READ_ONLY = "_gongji_read_only"  # attribute set on a Connection by an optimistic command
AUTOCOMMIT = "_gongji_autocommit"  # on a Connection: the driver connection `autocommit_on` put in autocommit


@contextmanager
def final_write(conn):
    """The optimistic command's one write as several statements (SQLite: they share its transaction)."""
    held = getattr(conn, READ_ONLY, False)
    setattr(conn, READ_ONLY, False)
    try:
        yield conn
    finally:
        setattr(conn, READ_ONLY, held)


@contextmanager
def autocommit(db):
    """A connection on which every statement commits by itself: PostgreSQL in autocommit (no BEGIN, no
    COMMIT round trip); elsewhere (SQLite) one transaction around the block. For work whose every write
    is one statement that decides alone (a conditional UPDATE … RETURNING, an INSERT … ON CONFLICT)."""
    with db.kw["bind"].connect() as conn:
        if conn.dialect.name == "postgresql":
            autocommit_on(conn)
            yield conn
        else:
            with conn.begin():
                yield conn


def autocommit_on(conn: sa.Connection) -> None:
    """Put a checked-out PostgreSQL connection in autocommit until it goes back to the pool, whose check-in
    takes it out again on every path (`models.db`: a close, an exception, a connection dropped unclosed).
    Set on the driver's connection: SQLAlchemy's `execution_options(isolation_level="AUTOCOMMIT")` does the
    same through its connection characteristics, set at each checkout and reset at each check-in, which
    cost ~3.5 % of an optimistic command's client CPU (py-spy, bench/transitions.py). SQLAlchemy's begin
    and commit would be no-ops on it (the driver sends neither BEGIN nor COMMIT while no transaction is
    open): `Statement._run` skips them. The driver is remembered: a Connection that reconnected after a
    disconnect has a new one, not in autocommit, and a statement on it is refused (it would run in a
    transaction nobody commits)."""
    driver = conn.connection.dbapi_connection
    driver.autocommit = True
    setattr(conn, AUTOCOMMIT, driver)


class PerDialect:
    """A Statement built on first use for each dialect from that dialect's `insert` (`build(insert)`): an
    INSERT … ON CONFLICT is a dialect's own construct (PostgreSQL's and SQLite's differ in class)."""

    def __init__(self, build):
        self.build, self._built = build, {}

    def __call__(self, dialect: str) -> "Statement":
        if dialect not in self._built:
            from sqlalchemy.dialects import postgresql, sqlite
            self._built[dialect] = Statement(self.build(postgresql.insert if dialect == "postgresql"
                                                        else sqlite.insert))
        return self._built[dialect]


class _Compiled:
    __slots__ = ("sql", "defaults", "binds", "results")

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        if compiled.positiontup:
            raise NotImplementedError("statements take named parameters only")
        self.sql = compiled.string
        self.defaults = {}  # literal values the compiler turned into parameters (e.g. status = 'pending')
        self.binds = []  # (name, processor) for parameters whose type needs processing
        for name, bp in compiled.binds.items():
            if bp.expanding or bp.callable is not None or bp.literal_execute:
                raise NotImplementedError("expanding, callable or literal-execute parameters need "
                                          "Connection.execute")
            if not bp.required:
                self.defaults[name] = bp.effective_value
            proc = bp.type._cached_bind_processor(dialect)
            if proc is not None:
                self.binds.append((name, proc))
        self.results = [(i, col.type._cached_result_processor(dialect, None))
                        for i, col in enumerate(stmt.exported_columns)]
        self.results = [(i, proc) for i, proc in self.results if proc is not None]


_CURSOR = "gongji_cursor"


def _cursor(conn: sa.Connection):
    """The driver connection's one cursor for these statements, kept with the pooled connection (its
    record's `info`) and used again: a new psycopg cursor per statement cost ~4 % of a command's client CPU.
    A connection is used by one thread at a time, and each execute starts the cursor afresh. A cursor of
    an earlier driver connection (the record reconnected) or a closed one (an error) is replaced."""
    fairy = conn.connection
    driver = fairy.dbapi_connection
    cur = fairy.info.get(_CURSOR)
    if cur is None or cur.closed or cur.connection is not driver:
        cur = fairy.info[_CURSOR] = driver.cursor()
    return cur


class Statement:
    """One Core statement (select, or DML with or without RETURNING) ready to run many times."""

    __slots__ = ("stmt", "_by_dialect", "keys", "writes", "final")

    def __init__(self, stmt, *, final: bool = False):
        self.stmt = stmt
        self._by_dialect: dict[str, _Compiled] = {}
        self.keys = tuple(stmt.exported_columns.keys())
        self.writes = final or isinstance(stmt, (sa.Insert, sa.Update, sa.Delete)) or \
            getattr(stmt, "_for_update_arg", None) is not None
        self.final = final  # an optimistic command's one write (see the module docstring)

    def _run(self, conn, params: dict, fetch: bool):
        if isinstance(conn, Session):  # as `Session.execute` would: pending ORM changes first
            if conn.new or conn.dirty or conn.deleted:
                conn.flush()
            conn = conn.connection()
        if self.writes and not self.final and getattr(conn, READ_ONLY, False):
            raise RuntimeError("an optimistic command writes once, through its transition")
        if conn.dialect.name != "postgresql":
            result = conn.execute(self.stmt, params)
            return ([tuple(r) for r in result] if fetch else None), result.rowcount
        c = self._by_dialect.get("postgresql")
        if c is None:
            c = self._by_dialect["postgresql"] = _Compiled(self.stmt, conn.dialect)
        if c.defaults:
            params = {**c.defaults, **params}
        for name, proc in c.binds:
            if name in params:
                params[name] = proc(params[name])
        autocommit = getattr(conn, AUTOCOMMIT, None)
        if autocommit is None:
            if not conn.in_transaction():
                conn.begin()  # SQLAlchemy's autobegin, which the raw cursor would bypass
        elif conn.connection.dbapi_connection is not autocommit:  # (see `autocommit_on`)
            raise sa.exc.InvalidRequestError("the connection was replaced after a disconnect and is no longer "
                                             "in autocommit: start again on a new connection")
        cur = None
        try:
            cur = _cursor(conn)
            if conn.dispatch.before_cursor_execute:
                conn.dispatch.before_cursor_execute(conn, cur, c.sql, params, None, False)
            cur.execute(c.sql, params)
            found = cur.fetchall() if fetch else None
            count = cur.rowcount
        except BaseException as exc:  # as Connection.execute: translate, invalidate on disconnect, re-raise
            conn._handle_dbapi_exception(exc, c.sql, params, cur, None)  # (closes the cursor)
            raise
        if found and c.results:
            converted = []
            for row in found:
                row = list(row)
                for i, proc in c.results:
                    row[i] = proc(row[i])
                converted.append(tuple(row))
            found = converted
        return found, count

    def rows(self, conn: sa.Connection | Session, params: dict | None = None) -> list[tuple]:
        return self._run(conn, dict(params or {}), True)[0]

    def first(self, conn: sa.Connection | Session, params: dict | None = None) -> tuple | None:
        found = self._run(conn, dict(params or {}), True)[0]
        return found[0] if found else None

    def scalar(self, conn: sa.Connection | Session, params: dict | None = None) -> Any:
        found = self.first(conn, params)
        return found[0] if found is not None else None

    def run(self, conn: sa.Connection | Session, params: dict | None = None) -> int:
        """Execute without fetching; the number of rows it touched."""
        return self._run(conn, dict(params or {}), False)[1]


def constant_in(column, values: Sequence[str]):
    """`column IN ('a', 'b')` with the constants in the SQL text: no expanding parameter to render per call,
    and PostgreSQL can match a partial index's predicate (`state in (...)`) against them."""
    quoted = [sa.literal_column("'" + v.replace("'", "''") + "'") for v in values]
    return column.in_(quoted)
