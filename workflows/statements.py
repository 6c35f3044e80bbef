"""Hot statements: built once from SQLAlchemy Core, run on the driver's own cursor on PostgreSQL.

Why: a command runs two to four statements and the in-process lifecycle is bound by one Python core
(the GIL; see bench/transitions.py). Through SQLAlchemy's execution layer a statement costs 25–120 µs
of client CPU (most of it turning the cursor description into result metadata for each call), on the
psycopg cursor 10–40 µs. So the SQL still comes from Core, compiled once per dialect; the connection
and its transaction still come from SQLAlchemy's pool; only the execution is the driver's.

What SQLAlchemy would do per call is done here where it matters: a TypeDecorator's bind and result
processing (UTC timestamps, encrypted columns), JSON parameters serialized, literal values compiled
into the statement passed along, driver errors raised as SQLAlchemy's (IntegrityError → 409 upstream)
and a lost connection invalidated. `before_cursor_execute` listeners still hear every statement.
Other databases (SQLite, the embedded default) simply go through `Connection.execute`."""
from __future__ import annotations

import json
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator


class _Compiled:
    __slots__ = ("sql", "defaults", "binds", "results", "dialect")

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        if compiled.positiontup:
            raise NotImplementedError("statements take named parameters only")
        self.sql, self.dialect = compiled.string, dialect
        self.defaults = {}  # literal values the compiler turned into parameters (e.g. status = 'pending')
        self.binds = []  # (name, processor) for parameters whose type needs processing
        for name, bp in compiled.binds.items():
            if bp.expanding:
                raise NotImplementedError("expanding IN parameters need Connection.execute")
            if not bp.required:
                self.defaults[name] = bp.effective_value
            proc = _bind_processor(bp.type, dialect)
            if proc is not None:
                self.binds.append((name, proc))
        self.results = [(i, _result_processor(col.type, dialect)) for i, col in enumerate(stmt.exported_columns)]
        self.results = [(i, proc) for i, proc in self.results if proc is not None]


def _bind_processor(type_, dialect):
    if isinstance(type_, TypeDecorator):
        return lambda value: type_.process_bind_param(value, dialect)
    if isinstance(type_, sa.JSON):
        return lambda value: None if value is None else json.dumps(value)
    return None


def _result_processor(type_, dialect):
    if isinstance(type_, TypeDecorator):
        return lambda value: type_.process_result_value(value, dialect)
    if isinstance(type_, sa.JSON):
        raise NotImplementedError("JSON results need Connection.execute")
    return None


class Statement:
    """One Core statement (select, or DML with or without RETURNING) ready to run many times."""

    __slots__ = ("stmt", "_by_dialect", "keys")

    def __init__(self, stmt):
        self.stmt = stmt
        self._by_dialect: dict[str, _Compiled] = {}
        self.keys = tuple(stmt.exported_columns.keys())

    def _run(self, conn, params: dict, fetch: bool):
        if isinstance(conn, Session):  # as `Session.execute` would: pending ORM changes first
            if conn.new or conn.dirty or conn.deleted:
                conn.flush()
            conn = conn.connection()
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
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            if conn.dispatch.before_cursor_execute:
                conn.dispatch.before_cursor_execute(conn, cur, c.sql, params, None, False)
            try:
                cur.execute(c.sql, params)
                found = cur.fetchall() if fetch else None
            except c.dialect.loaded_dbapi.Error as exc:
                if c.dialect.is_disconnect(exc, raw, cur):
                    conn.invalidate(exc)
                raise sa.exc.DBAPIError.instance(c.sql, params, exc, c.dialect.loaded_dbapi.Error,
                                                 dialect=c.dialect) from exc
            count = cur.rowcount
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

    def mapping(self, conn: sa.Connection | Session, params: dict | None = None) -> dict[str, Any] | None:
        found = self.first(conn, params)
        return dict(zip(self.keys, found)) if found is not None else None

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


def mappings(stmt: Statement, found: Sequence[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(stmt.keys, row)) for row in found]
