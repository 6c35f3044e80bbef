"""GONGJI_LOG_LEVEL reaches the production processes that hand over to another program's main:
`gongji web` (gunicorn) and `gongji worker` (dramatiq), which before logged at their own fixed INFO.

Each is started at DEBUG, a level neither program uses by itself, and its log must show that program's
own DEBUG lines: gunicorn's configuration dump, dramatiq's worker start-up in the worker process."""
from __future__ import annotations

import redis

from .conftest import _clean_env, _redis_db_url, _services
from .support import Proc, free_port, gongji_bin, poll, wait_http


def _env(tmp_path, **extra) -> dict:
    env = _clean_env()
    env.update(GONGJI_LOG_LEVEL="DEBUG", GONGJI_VAR_DIR=str(tmp_path / "var"), **extra)
    return env


def test_gongji_web_logs_at_the_level_asked(tmp_path):
    """Given GONGJI_LOG_LEVEL=DEBUG (the embedded database: no other setting needed)
    When `gongji web` (gunicorn) starts and answers /healthz
    Then gunicorn logged at DEBUG (its configuration dump), which its default INFO never shows."""
    port = free_port()
    proc = Proc("web", [gongji_bin(), "web", "--port", str(port), "--workers", "1", "--threads", "2"],
                cwd=tmp_path, env=_env(tmp_path), log=tmp_path / "web.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", [proc], timeout=30)
    finally:
        proc.stop()
    log = proc.log.read_text(encoding="utf-8", errors="replace")
    assert "[DEBUG] Current configuration:" in log, log[-3000:]


def test_gongji_worker_logs_at_the_level_asked(tmp_path):
    """Given GONGJI_LOG_LEVEL=DEBUG and a Redis db of the test's own
    When `gongji worker` (dramatiq) starts and its worker process is consuming (a heartbeat in Redis)
    Then the worker process logged dramatiq's DEBUG lines, which its default INFO never shows."""
    _, redis_url = _services()
    url = _redis_db_url(redis_url, 9)
    r = redis.Redis.from_url(url)
    r.flushdb()
    proc = Proc("worker", [gongji_bin(), "worker", "--processes", "1", "--threads", "1"], cwd=tmp_path,
                env=_env(tmp_path, GONGJI_REDIS_URL=url), log=tmp_path / "worker.log")
    try:
        poll(lambda: proc.alive() and r.zcard("gongji:__heartbeats__") > 0, timeout=30, what="the worker consuming")
        poll(lambda: "DEBUG" in proc.log.read_text(encoding="utf-8", errors="replace"), timeout=10,
             what="a DEBUG line in the worker's log")
    finally:
        proc.stop()
        r.flushdb()
        r.close()
    log = proc.log.read_text(encoding="utf-8", errors="replace")
    assert "WorkerProcess(0)" in log and "DEBUG" in log, log[-3000:]
