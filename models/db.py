"""Engine and session set-up for SQLite (embedded default) and PostgreSQL (production, tests).

SQLite: WAL, a busy timeout, foreign keys on, and every transaction opened with BEGIN IMMEDIATE so two
writers queue for the lock instead of failing on a read→write upgrade. PostgreSQL: row locks decide."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from . import crypto
from .settings import Settings


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> sa.Engine:
    url_obj = sa.make_url(url)
    if url_obj.get_backend_name() == "sqlite":
        if url_obj.database and url_obj.database != ":memory:":
            Path(url_obj.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url_obj, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    if url_obj.drivername in ("postgresql", "postgres"):
        url_obj = url_obj.set(drivername="postgresql+psycopg")
    return sa.create_engine(url_obj, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                            pool_pre_ping=True)


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("pragma journal_mode=wal")
        cur.execute("pragma foreign_keys=on")
        cur.execute("pragma busy_timeout=30000")
        cur.execute("pragma synchronous=normal")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def from_settings(settings: Settings, *, pool_size: int = 10) -> tuple[sa.Engine, sessionmaker[Session]]:
    """Configure PII crypto for this process and build the engine + session factory."""
    crypto.configure(settings.pii_keys, settings.pii_active_key, settings.lookup_key)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    return engine, make_sessionmaker(engine)


def is_postgres(session_or_engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"
