"""Shared fixtures for every tier: test keys, the test PostgreSQL, an SQLite file, a person factory.

Import-time safe: nothing here touches the application, a database or the environment until a fixture
runs (application modules are imported inside the fixtures). Tier-specific fixtures live in the tier's
own conftest (`tests/integration/conftest.py`, `tests/e2e/conftest.py`).

PostgreSQL comes from `GONGJI_TEST_DATABASE_URL` (set by `scripts/services.sh`, i.e. `make test`). Without
it a test that needs PostgreSQL is skipped with the reason, except in CI (`CI=true`), where it fails."""
from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
import threading
from datetime import date, timedelta
from typing import NamedTuple

import pytest

# Fixed, obviously-fake keys: deterministic runs, and never the development keys of `models.settings`.
TEST_PII_KEYS = {"test1": base64.b64encode(hashlib.sha256(b"gongji-test:pii").digest()).decode()}
TEST_PII_ACTIVE = "test1"
TEST_LOOKUP_KEY = base64.b64encode(hashlib.sha256(b"gongji-test:lookup").digest()).decode()

JIANGSU_COMMITMENT = "JS-2024-01"  # the seeded commitment letter version of province 32 (regions.json)


def pytest_configure(config):
    # also declared in pyproject.toml; repeated so a stray run with another config still knows it
    config.addinivalue_line("markers", "pg: needs the PostgreSQL started by `make test` (GONGJI_TEST_DATABASE_URL)")
    # an API operation answering a problem code its OpenAPI operation does not list fails the test that
    # meets it (a 500 naming the code: web/api/codes.py); the e2e servers get it too (tests/e2e/conftest.py)
    os.environ["GONGJI_PROBLEM_CODES"] = "strict"


def pytest_collection_modifyitems(items):
    """Every test that uses the PostgreSQL fixtures carries the `pg` marker (`-m "not pg"` deselects)."""
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pg)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# --- crypto -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def crypto_keys():
    """Configure `models.crypto` with the fixed test keys for the whole session."""
    from models import crypto
    crypto.configure(TEST_PII_KEYS, TEST_PII_ACTIVE, TEST_LOOKUP_KEY)
    return {"pii_keys": TEST_PII_KEYS, "active": TEST_PII_ACTIVE, "lookup_key": TEST_LOOKUP_KEY}


# --- databases ----------------------------------------------------------------------------------------

def _seed(db) -> None:
    from models import crypto, seed
    from workflows import platforms, policy, retention
    # the test keys again: a command line test run in this process (click's runner) configured its own
    crypto.configure(TEST_PII_KEYS, TEST_PII_ACTIVE, TEST_LOOKUP_KEY)
    with db.begin() as session:
        seed.seed_regions(session)
        seed.seed_dev_platforms(session)
    policy.clear_cache()
    platforms.clear_cache()
    retention.forget_cursors()  # ids start again: a cursor of an earlier test would pass over rows


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's URL; skipped with a reason outside CI when absent, a failure in CI."""
    url = os.environ.get("GONGJI_TEST_DATABASE_URL", "").strip()
    if not url:
        message = "GONGJI_TEST_DATABASE_URL is not set: run the tests through `make test` (scripts/services.sh)"
        if _in_ci():
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def pg_server(pg_url):
    """A helper to create and drop private databases on the test server (through its `postgres` db)."""
    import sqlalchemy as sa

    admin = sa.create_engine(sa.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)

    class Server:
        def create_database(self, prefix: str = "gongji_it") -> str:
            name = f"{prefix}_{secrets.token_hex(6)}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            return sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)

        def drop_database(self, url: str) -> None:
            name = sa.make_url(url).database
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    yield Server()
    admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_server, crypto_keys):
    """A fresh database (`gongji_it_<random>`) on the test server, migrated to head; dropped at the end."""
    from models import db as mdb
    from models import migrate

    url = pg_server.create_database()
    engine = mdb.make_engine(url, pool_size=20)
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        pg_server.drop_database(url)


@pytest.fixture
def pg_db(pg_engine):
    """A sessionmaker on the session's PostgreSQL database, emptied and re-seeded for this test.

    Every table but `alembic_version` is truncated (identities restarted), regions, policies and the
    development platforms are seeded again and the policy cache is cleared: a fresh schema per test, so
    tests may commit from several threads for real."""
    import sqlalchemy as sa

    from models import db as mdb

    tables = [t for t in sa.inspect(pg_engine).get_table_names() if t != "alembic_version"]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    db = mdb.make_sessionmaker(pg_engine)
    _seed(db)
    yield db
    from workflows import policy
    policy.clear_cache()


@pytest.fixture
def sqlite_db(tmp_path, crypto_keys):
    """A sessionmaker on a migrated, seeded SQLite file in the test's tmp_path."""
    from models import db as mdb
    from models import migrate
    from workflows import policy

    engine = mdb.make_engine(f"sqlite:///{tmp_path / 'gongji.db'}")
    migrate.upgrade(engine)
    db = mdb.make_sessionmaker(engine)
    _seed(db)
    yield db
    engine.dispose()
    policy.clear_cache()  # the cache is keyed by id(engine): a later engine may reuse the id


# --- persons ------------------------------------------------------------------------------------------

_counter = itertools.count(1)
_counter_lock = threading.Lock()
_SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国玉兰志红云飞"


def _next() -> int:
    with _counter_lock:
        return next(_counter)


def new_id_number(*, region: str = "320102", born: date = date(1980, 1, 1)) -> str:
    """A valid, process-unique resident ID number (GB 11643-1999) born on `born` (± a few days)."""
    from workflows.idnumbers import with_check_digit
    n = _next()
    day = born + timedelta(days=n // 1000)  # 1000 sequence numbers per birth day
    return with_check_digit(f"{region}{day:%Y%m%d}{n % 1000:03d}")


def new_name() -> str:
    """A three-character name, distinct per call for the first ~30k calls."""
    n = _next()
    return (_SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n // len(_SURNAMES)) % len(_GIVEN)]
            + _GIVEN[(n // (len(_SURNAMES) * len(_GIVEN))) % len(_GIVEN)])


def upsert_person(db, *, insurance_type: str = "resident", region_code: str = "320100",
                  born: date = date(1985, 2, 2), real_name_verified: bool = True,
                  insurance_status: str = "active", balance_fen: int = 100_000,
                  id_number: str | None = None, name: str | None = None, now=None) -> tuple[str, str]:
    """Create a person through `workflows.persons.upsert` (no platform); returns (ID number, name)."""
    from workflows import persons
    number = id_number or new_id_number(region=region_code[:4] + "02", born=born)
    name = name or new_name()
    persons.upsert(db, dict(id_number=number, name=name, insurance_type=insurance_type,
                            insurance_status=insurance_status, region_code=region_code,
                            real_name_verified=real_name_verified, balance_fen=balance_fen),
                   platform=None, now=now)
    return number, name


class Family(NamedTuple):
    grantor: str  # ID numbers
    beneficiary: str
    grantor_name: str
    beneficiary_name: str


def make_family(db, *, region: str = "320100", beneficiary_region: str | None = None,
                beneficiary_born: date = date(1985, 2, 2), grantor: tuple[str, str] | None = None,
                now=None) -> Family:
    """Upsert an eligible grantor (employee, active, real-name verified) and a resident beneficiary.

    `grantor=(number, name)` reuses an existing grantor instead of creating one."""
    g_number, g_name = grantor or upsert_person(db, insurance_type="employee", region_code=region,
                                                born=date(1960, 1, 1), now=now)
    b_number, b_name = upsert_person(db, insurance_type="resident", region_code=beneficiary_region or region,
                                     born=beneficiary_born, now=now)
    return Family(g_number, b_number, g_name, b_name)


@pytest.fixture
def family():
    """The pair factory: `family(db, **kw) -> Family(grantor, beneficiary, grantor_name, beneficiary_name)`."""
    return make_family


@pytest.fixture
def new_person():
    """The person factory: `new_person(db, insurance_type=..., region_code=..., born=...) -> (ID number, name)`."""
    return upsert_person
