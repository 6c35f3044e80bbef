"""Apply Alembic migrations programmatically (used by `gongji db upgrade`, `gongji serve` and the tests).

Each migration runs in a transaction of its own (`transaction_per_migration` in `migrations/env.py`) and is
recorded when it commits, so a failure leaves the database at the last migration that completed, and a
migration may step out of its transaction where PostgreSQL requires it: an index on a large table is
built without blocking writes as

    def upgrade():
        with op.get_context().autocommit_block():
            op.create_index("ix_…", "bindings", ["…"], postgresql_concurrently=True)

(`tests/integration/test_migrations.py` runs such a migration on PostgreSQL)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


class _OnlyWhatRan(logging.Filter):
    """Alembic says at INFO which migrations run (worth a line) and, on every upgrade, which dialect and DDL
    mode it found (two lines of noise before each admin command's own output): those two are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_OnlyWhatRan())


def alembic_config() -> Config:
    """Gongji's migration scripts; `upgrade`/`downgrade` hand it their connection (`migrations/env.py`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@contextmanager
def _migrating(engine: sa.Engine):
    """A connection whose migrations wait for their locks as long as they must (the app's sessions give up
    after `db.LOCK_TIMEOUT_MS`; CREATE INDEX CONCURRENTLY waits for every older transaction to end; a
    migration may set a shorter wait of its own). The pooled connection gets its setting back after, or is
    discarded if that fails, so the migration's own error is the one raised."""
    with engine.connect() as conn:
        held = None
        if conn.dialect.name == "postgresql":
            held = conn.exec_driver_sql("SHOW lock_timeout").scalar()
            conn.exec_driver_sql("SET lock_timeout = 0")
            conn.commit()
        try:
            yield conn
            conn.commit()  # whatever Alembic read outside its migrations' transactions
        finally:
            if held is not None and not conn.invalidated:
                try:
                    conn.rollback()
                    conn.exec_driver_sql("SELECT set_config('lock_timeout', %(held)s, false)", {"held": held})
                    conn.commit()
                except sa.exc.DBAPIError:
                    conn.invalidate()


def upgrade(engine: sa.Engine, revision: str = "head", *, config: Config | None = None) -> None:
    with _migrating(engine) as conn:
        command.upgrade(_bound(config or alembic_config(), conn), revision)


def downgrade(engine: sa.Engine, revision: str = "base", *, config: Config | None = None) -> None:
    with _migrating(engine) as conn:
        command.downgrade(_bound(config or alembic_config(), conn), revision)


def _bound(cfg: Config, connection: sa.Connection) -> Config:
    cfg.attributes["connection"] = connection
    return cfg


def fill_in_batches(conn: sa.Connection, next_upto: sa.TextClause, fill: sa.TextClause, *, batch: int = 5000) -> None:
    """For a migration, inside `op.get_context().autocommit_block()`: run `fill` (bound to :after and :upto,
    an id range) over a table in id order, `batch` rows a statement, each committed by itself, so no lock is
    held on the whole table; `next_upto` (bound to :after and :n) gives the last id of the next batch."""
    after = ""
    while True:
        upto = conn.execute(next_upto, {"after": after, "n": batch}).scalar()
        if upto is None:
            return
        conn.execute(fill, {"after": after, "upto": upto})
        after = upto
