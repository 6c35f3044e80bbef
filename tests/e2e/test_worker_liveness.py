"""`gongji worker`'s health file (`workers/liveness.py`): a real dramatiq worker process on the test Redis
touches it once it consumes, which is what its container's health check reads (`docker-compose.yml`)."""
from __future__ import annotations

import redis

from .conftest import _clean_env, _redis_db_url, _services
from .support import Proc, gongji_bin, poll


def test_a_consuming_worker_keeps_its_health_file_fresh(tmp_path):
    """Given `gongji worker` with its temporary directory in the test's own (TMPDIR) and a Redis db of its own
    When it is consuming (its heartbeat in Redis)
    Then `gongji-worker.alive` exists there; and it is not there before the worker started."""
    _, redis_url = _services()
    url = _redis_db_url(redis_url, 10)
    r = redis.Redis.from_url(url)
    r.flushdb()
    alive = tmp_path / "tmp" / "gongji-worker.alive"
    alive.parent.mkdir()
    env = _clean_env()
    env.update(GONGJI_REDIS_URL=url, GONGJI_VAR_DIR=str(tmp_path / "var"), TMPDIR=str(alive.parent))
    assert not alive.exists()
    proc = Proc("worker", [gongji_bin(), "worker", "--processes", "1", "--threads", "1"], cwd=tmp_path, env=env,
                log=tmp_path / "worker.log")
    try:
        poll(lambda: proc.alive() and r.zcard("gongji:__heartbeats__") > 0, timeout=30, what="the worker consuming")
        poll(alive.exists, timeout=15, what="the worker's health file")
    finally:
        proc.stop()
        r.flushdb()
        r.close()
