"""Integration tier: real PostgreSQL (fixtures `pg_db`, `pg_engine` in the root conftest) and SQLite files.

Helpers shared by these tests are plain functions in `support.py`."""

import pytest


@pytest.fixture
def receivers(pg_db):
    """Fake national, Jiangsu and Xinjiang platforms, registered as the seeded platforms' webhook URLs."""
    from models import seed
    from workers.simulator.platform import FakePlatform
    from workflows import platforms

    with pg_db.begin() as s:
        creds = seed.seed_dev_platforms(s)
    fakes = {}
    for pid in ("national", "jiangsu", "xinjiang"):
        fakes[pid] = FakePlatform([creds[pid][1]]).start()
        platforms.set_webhook_url(pg_db, pid, fakes[pid].url)
    yield fakes
    for fake in fakes.values():
        fake.stop()
