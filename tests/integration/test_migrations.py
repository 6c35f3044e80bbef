"""Alembic migrations on both backends: from an empty database to head, down to base, up again, and the
migrated schema equal to the models (`alembic.autogenerate.compare_metadata`).

compare_metadata reports no spurious differences for the TypeDecorator columns here (`Encrypted` → TEXT,
`UTCDateTime` → TIMESTAMP WITH TIME ZONE on PostgreSQL, DATETIME on SQLite), so nothing is filtered. It
does not compare partial-index predicates, so those are checked separately below."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import models
from models import db as mdb
from models import migrate

MODEL_TABLES = set(models.Base.metadata.tables)
PARTIAL_INDEXES = {  # name -> a fragment of its WHERE clause
    "uq_bindings_active_pair": "invited",
    "ix_bindings_deadline": "deadline_at",
    "ix_outbox_pending": "processed_at",
    "ix_received_webhooks_pending": "processed_at",
    "ix_deliveries_due": "status",
    "ix_verification_attempts_pending": "pending",
    "ix_deliveries_undelivered": "delivered",
    "ix_delivery_attempts_failed": "error",
}


def _head() -> str:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


def _tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _revision(engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _differences(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, models.Base.metadata)


def _up_down_up(engine) -> None:
    assert _tables(engine) == set() and _revision(engine) is None

    migrate.upgrade(engine)
    assert _tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert _revision(engine) == _head()

    migrate.downgrade(engine, "base")
    assert _tables(engine) <= {"alembic_version"}, "downgrade to base must drop every model table"
    assert _revision(engine) is None

    migrate.upgrade(engine)
    assert _tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert _revision(engine) == _head()


@pytest.fixture
def fresh_pg(pg_server):
    """A brand-new, empty PostgreSQL database (not the session's shared one), dropped afterwards."""
    url = pg_server.create_database("gongji_mig")
    engine = mdb.make_engine(url, pool_size=2)
    yield engine
    engine.dispose()
    pg_server.drop_database(url)


@pytest.fixture
def fresh_sqlite(tmp_path):
    engine = mdb.make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
    yield engine
    engine.dispose()


@pytest.mark.pg
def test_postgresql_upgrade_downgrade_upgrade(fresh_pg):
    """Given a brand-new empty PostgreSQL database,
    when it is upgraded to head, downgraded to base and upgraded again,
    then each step leaves exactly the expected tables and revision, and the result matches the models."""
    _up_down_up(fresh_pg)
    assert _differences(fresh_pg) == []


def test_sqlite_upgrade_downgrade_upgrade(fresh_sqlite):
    """Given a new SQLite file,
    when it is upgraded to head, downgraded to base and upgraded again,
    then each step leaves exactly the expected tables and revision, and the result matches the models."""
    _up_down_up(fresh_sqlite)
    assert _differences(fresh_sqlite) == []


@pytest.mark.pg
def test_postgresql_partial_indexes_keep_their_predicates(fresh_pg):
    """Given a migrated PostgreSQL database,
    when its index definitions are read from pg_indexes,
    then the partial indexes exist with their WHERE clauses (the live-pair one unique), which
    compare_metadata does not check."""
    migrate.upgrade(fresh_pg)
    with fresh_pg.connect() as conn:
        defs = dict(conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes "
                                         "WHERE schemaname = 'public'")).all())
    for name, fragment in PARTIAL_INDEXES.items():
        assert name in defs, f"missing index {name}"
        assert " WHERE " in defs[name] and fragment in defs[name].split(" WHERE ", 1)[1], defs[name]
    assert defs["uq_bindings_active_pair"].startswith("CREATE UNIQUE INDEX")


def test_sqlite_partial_indexes_keep_their_predicates(fresh_sqlite):
    """Given a migrated SQLite database,
    when its index definitions are read from sqlite_master,
    then the partial indexes exist with their WHERE clauses (the live-pair one unique)."""
    migrate.upgrade(fresh_sqlite)
    with fresh_sqlite.connect() as conn:
        defs = dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master "
                                         "WHERE type = 'index' AND sql IS NOT NULL")).all())
    for name, fragment in PARTIAL_INDEXES.items():
        assert name in defs, f"missing index {name}"
        assert fragment in defs[name].upper().split(" WHERE ", 1)[1].lower(), defs[name]
    assert defs["uq_bindings_active_pair"].upper().startswith("CREATE UNIQUE INDEX")


@pytest.mark.pg
def test_schema_comparison_is_not_blind(fresh_pg):
    """Given a migrated PostgreSQL database,
    when an index is dropped and a column added inside a transaction that is rolled back,
    then compare_metadata reports both differences (so an empty report above means something)."""
    migrate.upgrade(fresh_pg)
    with fresh_pg.connect() as conn:
        trans = conn.begin()
        conn.exec_driver_sql("DROP INDEX ix_bindings_deadline")
        conn.exec_driver_sql("ALTER TABLE persons ADD COLUMN stray text")
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        kinds = {(d[0], getattr(d[1], "name", None)) for d in compare_metadata(ctx, models.Base.metadata)
                 if isinstance(d, tuple)}
        trans.rollback()
    assert ("add_index", "ix_bindings_deadline") in kinds
    assert any(kind == "remove_column" for kind, _ in kinds)
    assert _differences(fresh_pg) == []


CONCURRENT = ("9999", "a test-only index built without blocking writes",
              """    op.execute("INSERT INTO regions (code, name, province_code) VALUES ('990000', 'x', '99')")
    with op.get_context().autocommit_block():
        op.create_index("ix_bindings_test_concurrent", "bindings", ["channel"], postgresql_concurrently=True)""",
              """    with op.get_context().autocommit_block():
        op.drop_index("ix_bindings_test_concurrent", "bindings", postgresql_concurrently=True)
    op.execute("DELETE FROM regions WHERE code = '990000'")""")


@pytest.mark.pg
def test_a_migration_can_build_an_index_concurrently_each_migration_in_its_own_transaction(fresh_pg, tmp_path):
    """Given the migrations plus one (test-only) that writes a row, then builds an index with CREATE INDEX
    CONCURRENTLY in an autocommit block (PostgreSQL refuses it inside a transaction)
    When the database is upgraded to it and downgraded again
    Then the index exists and is valid, the row is there, the revision is the new one; and after the
    downgrade both are gone and the revision is head again."""
    from .support import with_test_migrations
    cfg = with_test_migrations(tmp_path, CONCURRENT)

    migrate.upgrade(fresh_pg, "9999", config=cfg)
    with fresh_pg.connect() as conn:
        valid = conn.execute(sa.text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                     "WHERE c.relname = 'ix_bindings_test_concurrent'")).scalar()
        region = conn.execute(sa.text("SELECT count(*) FROM regions WHERE code = '990000'")).scalar()
    assert valid is True and region == 1 and _revision(fresh_pg) == "9999"

    migrate.downgrade(fresh_pg, _head(), config=cfg)
    with fresh_pg.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM pg_class WHERE relname = 'ix_bindings_test_concurrent'"
                                    )).scalar()
        region = conn.execute(sa.text("SELECT count(*) FROM regions WHERE code = '990000'")).scalar()
    assert left == 0 and region == 0 and _revision(fresh_pg) == _head()


def _ended_bindings_at_0009(engine) -> None:
    """At revision 0009: two persons, a binding the system unbound and one still accepted, with history."""
    from datetime import datetime, timezone

    from models import Binding, Person, Region, RegionPolicy, Transition
    from models.crypto import lookup_hash
    from workflows.idnumbers import mask, mask_name, with_check_digit

    migrate.upgrade(engine, "0009")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
    # 南京 and its policy as at 0009 (the seed writes the policy columns of later revisions too)
    RP = sa.table("region_policies", *(sa.column(c.name, c.type) for c in RegionPolicy.__table__.columns
                                       if c.name not in ("id", "in_person_verification")))
    with engine.begin() as conn:
        conn.execute(sa.insert(Region.__table__).values(code="320100", name="南京市", province_code="32",
                                                        platform_id="jiangsu"))
        conn.execute(sa.insert(RP).values(
            region_code="320100", version=1, effective_from=at, commitment_version="JS-2024-01",
            allowed_relationships=["spouse", "parent", "child"], intra_province=True, cross_province=True,
            invitation_ttl_s=604800, verification_timeout_s=600, max_verification_attempts=3,
            max_beneficiaries_per_grantor=10, max_grantors_per_beneficiary=3, frequency_max_changes=10,
            frequency_window_s=86400, deduction_order_policy="user_order", created_at=at))
    # persons as at 0009 (the ORM's Person has the columns of later revisions): written as rows
    P = sa.table("persons", *(sa.column(c.name, c.type) for c in Person.__table__.columns
                              if c.name != "registry_sent_at"))
    ids = []
    with engine.begin() as conn:
        for k, number in enumerate((with_check_digit("32010219600101001"), with_check_digit("32010219850202002"))):
            conn.execute(sa.insert(P).values(
                id=f"psn_{k}", id_number=number, id_number_hash=lookup_hash(number), id_number_masked=mask(number),
                name="张三", name_masked=mask_name("张三"), insurance_type="employee", insurance_status="active",
                region_code="320100", real_name_verified=True, balance_fen=0, deceased=False, created_at=at,
                updated_at=at))
            ids.append(f"psn_{k}")
    T = Transition.__table__  # bindings as at 0009: the columns of later revisions (and their defaults) left out
    B = sa.table("bindings", *(sa.column(c.name, c.type) for c in Binding.__table__.columns
                               if c.name not in ("ended_by", "change_seq")))
    with engine.begin() as conn:
        policy_id = conn.execute(sa.text("SELECT min(id) FROM region_policies")).scalar()
        for bid, state, version, ended in (("bnd_ended", "unbound", 4, at), ("bnd_live", "accepted", 3, None)):
            conn.execute(sa.insert(B).values(
                id=bid, grantor_id=ids[0], beneficiary_id=ids[1], relationship="spouse", state=state,
                verification_method="face", channel="app", version=version, province_code="32",
                grantor_region="320100", beneficiary_region="320100", policy_id=policy_id, failed_verifications=0,
                created_at=at, updated_at=at, ended_at=ended, end_event="unbind" if ended else None))
            for seq in range(1, version + 1):
                kind = "system" if ended and seq == version else "person"
                conn.execute(sa.insert(T).values(binding_id=bid, seq=seq, to_state=state, event="x",
                                                 actor_kind=kind, at=at))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def test_0010_backfills_who_ended_each_binding_from_its_history(backend, request, crypto_keys):
    """Given a database at 0009 with a binding the system unbound (its last history row's actor) and a live one,
    when it is upgraded to head,
    then the ended binding has ended_by 'system' and the live one none."""
    engine = request.getfixturevalue("fresh_pg" if backend == "pg" else "fresh_sqlite")
    _ended_bindings_at_0009(engine)

    migrate.upgrade(engine)

    with engine.connect() as conn:
        found = dict(conn.execute(sa.text("SELECT id, ended_by FROM bindings")).all())
    assert found == {"bnd_ended": "system", "bnd_live": None}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def test_0011_stamps_existing_bindings_below_every_later_change(backend, request, crypto_keys):
    """Given a database at 0010 with two bindings,
    when it is upgraded to head and then one binding changes,
    then both had a stamp, the changed one's new stamp is above every stamp the upgrade gave, and the pull
    feed serves the unchanged binding, then the changed one."""
    from models import Binding, seed
    from workflows import platforms, sync

    engine = request.getfixturevalue("fresh_pg" if backend == "pg" else "fresh_sqlite")
    _ended_bindings_at_0009(engine)
    migrate.upgrade(engine, "0010")

    migrate.upgrade(engine)

    B = Binding.__table__
    with engine.connect() as conn:
        stamped = dict(conn.execute(sa.select(B.c.id, B.c.change_seq)).all())
    assert set(stamped) == {"bnd_ended", "bnd_live"} and None not in stamped.values()
    with engine.begin() as conn:
        conn.execute(sa.update(B).where(B.c.id == "bnd_ended").values(end_event="unbind"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(B.c.change_seq).where(B.c.id == "bnd_ended")).scalar() > max(stamped.values())
    db = mdb.make_sessionmaker(engine)
    with db.begin() as s:
        seed.seed_dev_platforms(s)
    feed = sync.feed(db, platforms.get(db, "national"))
    assert [b["id"] for b in feed["bindings"]] == ["bnd_live", "bnd_ended"]


def test_a_fill_in_batches_covers_every_row_once_in_id_order():
    """Given 7 rows and batches of 3, When a migration fills them with `migrate.fill_in_batches`, Then every row
    is filled, by 3 fills (3, 3, 1 rows) in id order, and an empty table takes none."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t (id) VALUES " + ", ".join(f"('r{k}')" for k in range(7)))
    upto = sa.text("SELECT max(id) FROM (SELECT id FROM t WHERE id > :after ORDER BY id LIMIT :n) AS b")
    fill = sa.text("UPDATE t SET v = (SELECT coalesce(max(v), 0) + 1 FROM t) WHERE id > :after AND id <= :upto")
    with engine.begin() as conn:
        migrate.fill_in_batches(conn, upto, fill, batch=3)
        assert conn.exec_driver_sql("SELECT v, count(*) FROM t GROUP BY v ORDER BY v").all() == [(1, 3), (2, 3), (3, 1)]
        conn.exec_driver_sql("DELETE FROM t")
        migrate.fill_in_batches(conn, upto, fill, batch=3)
    engine.dispose()
