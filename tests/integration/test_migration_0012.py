"""Migration 0012 on both backends: received_webhooks.binding_id and its two partial indexes, built on a table
that already holds webhooks (PostgreSQL: CONCURRENTLY), with the predicates the queries prove them by
(compare_metadata, the schema-drift test, does not compare predicates), and its downgrade."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import db as mdb
from models import migrate
from models.messaging import PROBLEM_SQL

NAMES = ("ix_received_webhooks_binding", "ix_received_webhooks_problems")
_ROWS = ("INSERT INTO received_webhooks (platform_id, webhook_id, type, body, headers, received_at, processed_at,"
         " outcome, attempts) VALUES ('jiangsu', :w, 'person.deceased', 'x', '{}', :at, :done, :outcome, 1)")


def _store_before(engine) -> None:
    """Two webhooks stored under revision 0011: one refused (not_found), one applied."""
    with engine.begin() as conn:
        for wid, outcome in (("msg_refused", "not_found"), ("msg_applied", "applied")):
            conn.execute(sa.text(_ROWS), {"w": wid, "at": "2026-11-20 00:00:00+00", "done": "2026-11-20 00:00:01+00",
                                          "outcome": outcome})


@pytest.fixture
def fresh_pg(pg_server):
    url = pg_server.create_database("gongji_mig")
    engine = mdb.make_engine(url, pool_size=2)
    yield engine
    engine.dispose()
    pg_server.drop_database(url)


@pytest.mark.pg
def test_postgresql_builds_the_indexes_on_existing_webhooks_and_drops_them(fresh_pg):
    """Given a PostgreSQL database at 0011 holding a refused and an applied webhook,
    When it is upgraded to head, queried with sequential scans off, and downgraded to 0011,
    Then the column exists, the two indexes are partial with their predicates, the problem index finds the
    refused webhook (and not the applied one), and the downgrade removes column and indexes."""
    migrate.upgrade(fresh_pg, "0011")
    _store_before(fresh_pg)
    migrate.upgrade(fresh_pg)
    with fresh_pg.connect() as conn:
        defs = dict(conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                                         "'received_webhooks'")).all())
        conn.exec_driver_sql("SET enable_seqscan = off")
        query = f"SELECT webhook_id FROM received_webhooks WHERE {PROBLEM_SQL} ORDER BY received_at DESC, id DESC"
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + query))
        found = conn.exec_driver_sql(query).scalars().all()
    assert "binding_id IS NOT NULL" in defs[NAMES[0]] and "(binding_id, received_at)" in defs[NAMES[0]]
    assert "processed_at IS NOT NULL" in defs[NAMES[1]]
    assert "'applied'" in defs[NAMES[1]].split(" WHERE ", 1)[1]
    assert NAMES[1] in plan and found == ["msg_refused"]
    migrate.downgrade(fresh_pg, "0011")
    inspector = sa.inspect(fresh_pg)
    assert "binding_id" not in {c["name"] for c in inspector.get_columns("received_webhooks")}
    assert not set(NAMES) & {i["name"] for i in inspector.get_indexes("received_webhooks")}


def test_sqlite_builds_the_indexes_and_drops_them(tmp_path):
    """Given an SQLite file at 0011 holding webhooks, When it is upgraded to head and downgraded to 0011, Then
    the column and the two partial indexes come and go, the webhooks stay."""
    engine = mdb.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(engine, "0011")
        _store_before(engine)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            defs = dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                             "AND tbl_name = 'received_webhooks'")).all())
        assert "binding_id is not null" in defs[NAMES[0]] and "outcome not in" in defs[NAMES[1]]
        migrate.downgrade(engine, "0011")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM received_webhooks")).scalar() == 2
        assert "binding_id" not in {c["name"] for c in sa.inspect(engine).get_columns("received_webhooks")}
    finally:
        engine.dispose()
