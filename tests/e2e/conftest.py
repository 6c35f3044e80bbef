"""Fixtures for the e2e tier: real server processes spoken to over real HTTP.

- `embedded`: `gongji serve` (SQLite under a fresh tmp dir, in-process worker and sweeper, seeded platforms
  with their development credentials); yields the base URL.
- `production`: a fresh PostgreSQL database and a Redis db of their own, `gongji db upgrade`,
  `gongji platform add`, then `gongji web` (gunicorn), `gongji worker` (dramatiq) and `gongji scheduler`;
  yields a `Production` (base URL, keys, secrets).

A failing test gets the tail of the server logs attached to its report."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.seed import dev_credentials

from .support import ROOT, Api, Proc, free_port, gongji_bin, poll, wait_http

SHORT_SCHEDULE = (0.2, 0.5, 1, 1, 2, 2, 2, 2, 2, 2)  # outbound retries (s) of the production shape

START_TIMEOUT_S = 30.0
_RUNNING: dict[str, list[Proc]] = {}


def _clean_env() -> dict:
    """The test runner's environment without any GONGJI_ or PROMETHEUS_ setting (each fixture adds its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GONGJI_", "PROMETHEUS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["GONGJI_LOG_LEVEL"] = "INFO"
    env["GONGJI_PROBLEM_CODES"] = "strict"  # an undeclared problem code is a 500 (web/api/codes.py)
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name, procs in _RUNNING.items():
        if name in getattr(item, "fixturenames", ()):
            for proc in procs:
                report.sections.append((f"{name}: {proc.name} log (tail)", proc.tail(120)))


def _stop_all(name: str, procs: list[Proc]) -> None:
    """Terminate; a process that had died on its own during the session is an error worth seeing."""
    died = [p for p in procs if not p.alive()]
    for p in reversed(procs):
        p.stop()
    _RUNNING.pop(name, None)
    if died:
        logs = "\n".join(f"--- {p.name} (exit {p.popen.returncode}) ---\n{p.tail()}" for p in died)
        pytest.fail(f"{name}: process(es) exited during the session:\n{logs}")


# --- embedded ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """`gongji serve --no-simulator` on a free port with cwd = a fresh tmp dir (its SQLite lives in <tmp>/var):
    the tests play the platforms and the face provider themselves, registered first with `gongji platform
    add` under the development credentials (`--no-simulator` seeds no platform)."""
    yield from _serve(tmp_path_factory, "embedded", ["--no-simulator"], register=True)


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """`gongji serve` as `make run` starts it: the simulator's fake platforms and face provider on."""
    yield from _serve(tmp_path_factory, "simulated", [])


def _serve(tmp_path_factory, name: str, args: list[str], *, register: bool = False):
    workdir = tmp_path_factory.mktemp(name)
    if register:
        for p in json.loads((ROOT / "models" / "seed" / "regions.json").read_text(encoding="utf-8"))["platforms"]:
            key, secret = dev_credentials(p["id"])
            _run([gongji_bin(), "platform", "add", p["id"], "--kind", p["kind"], "--api-key", key,
                  "--webhook-secret", secret, *(["--regions", ",".join(p["provinces"])] if p["provinces"] else [])],
                 env=_clean_env(), cwd=workdir)
    port = free_port()
    proc = Proc("serve", [gongji_bin(), "serve", "--port", str(port), *args], cwd=workdir, env=_clean_env(),
                log=workdir / "serve.log")
    _RUNNING[name] = [proc]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", [proc], timeout=START_TIMEOUT_S)
    except BaseException:
        proc.stop()
        _RUNNING.pop(name, None)
        raise
    yield base
    _stop_all(name, [proc])


@pytest.fixture(scope="session")
def dev_keys() -> dict[str, tuple[str, str]]:
    """{platform id: (api key, webhook secret)} of the embedded default's seeded platforms."""
    return {p: dev_credentials(p) for p in ("national", "jiangsu", "xinjiang", "facecheck")}


@pytest.fixture
def js(embedded, dev_keys) -> Api:
    """The Jiangsu platform (江苏医保云) on the embedded server."""
    return Api(embedded, dev_keys["jiangsu"][0])


@pytest.fixture
def xj(embedded, dev_keys) -> Api:
    """The Xinjiang platform (新疆医保服务平台) on the embedded server."""
    return Api(embedded, dev_keys["xinjiang"][0])


@pytest.fixture
def nat(embedded, dev_keys) -> Api:
    """The national platform on the embedded server."""
    return Api(embedded, dev_keys["national"][0])


# --- production --------------------------------------------------------------------------------------

@dataclass
class Production:
    base: str
    jiangsu_key: str
    jiangsu_secret: str
    national_key: str
    national_secret: str
    facecheck_key: str
    facecheck_secret: str
    database_url: str
    redis_url: str
    national_receiver: object = None  # the simulator's FakePlatform registered as the national webhook URL
    province_receiver: object = None  # and the one registered as Jiangsu's (both sides of a 南京 binding)
    procs: list = None  # web, worker, scheduler (`Proc`)
    env: dict = None  # their environment
    workdir: Path = None

    def api(self, key: str | None = None) -> Api:
        return Api(self.base, key or self.jiangsu_key)


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def _redis_db_url(url: str, db: int) -> str:
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _run(args: list[str], *, env: dict, cwd: Path) -> None:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args[:4])} … failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def production(tmp_path_factory):
    """PostgreSQL + Redis + gunicorn + dramatiq worker + scheduler, each a real process (shared by the tier)."""
    db_url, redis_url = _services()
    with production_stack(tmp_path_factory.mktemp("production"), db_url, _redis_db_url(redis_url, 5),
                          name="production") as stack:
        yield stack


def _services() -> tuple[str, str]:
    db_url = os.environ.get("GONGJI_TEST_DATABASE_URL")
    redis_url = os.environ.get("GONGJI_TEST_REDIS_URL")
    if not db_url or not redis_url:
        message = "GONGJI_TEST_DATABASE_URL and GONGJI_TEST_REDIS_URL are not set (make test sets them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; under CI they must be")
        pytest.skip(message)
    return db_url, redis_url


@contextlib.contextmanager
def production_stack(workdir: Path, db_url: str, our_redis: str, *, name: str):
    """A database of its own on `db_url`'s server, `gongji db upgrade` and `platform add`, then `gongji web`,
    `gongji worker` and `gongji scheduler` on `our_redis` (flushed); the national platform's webhook URL is
    a fake receiver in this process, and so is Jiangsu's. Yields a `Production`; everything is stopped and dropped after."""
    import redis
    import sqlalchemy as sa

    db_name = f"gongji_e2e_{secrets.token_hex(6)}"
    admin_url = sa.make_url(db_url).set(database="postgres")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
    our_db = sa.make_url(db_url).set(database=db_name).render_as_string(hide_password=False)
    r = redis.Redis.from_url(our_redis)
    r.flushdb()

    port = free_port()
    env = _clean_env()
    env.update(GONGJI_DATABASE_URL=our_db, GONGJI_REDIS_URL=our_redis, GONGJI_PII_KEYS=f"k1:{_b64(32)}",
               GONGJI_LOOKUP_KEY=_b64(32), GONGJI_SECRET_KEY=secrets.token_urlsafe(32),
               GONGJI_METRICS_TOKEN=secrets.token_urlsafe(24), GONGJI_PUBLIC_URL=f"http://127.0.0.1:{port}",
               GONGJI_SWEEP_INTERVAL_S="0.5",
               # where gunicorn's processes keep their request counts (web/metrics.py): known to the tests
               PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
               # a short outbound retry schedule and lease, so fault tests see retries within seconds
               GONGJI_DELIVERY_SCHEDULE_S=",".join(map(str, SHORT_SCHEDULE)), GONGJI_DELIVERY_LEASE_S="5")
    js_key, js_secret = dev_credentials("jiangsu")        # so the README walk runs unchanged
    fc_key, fc_secret = dev_credentials("facecheck")
    nat_key, nat_secret = f"gk_{secrets.token_urlsafe(24)}", f"whsec_{_b64(32)}"
    from workers.simulator.platform import FakePlatform
    receiver = FakePlatform([nat_secret]).start()
    province = FakePlatform([js_secret]).start()
    procs: list[Proc] = []
    try:
        gongji = gongji_bin()
        _run([gongji, "db", "upgrade"], env=env, cwd=workdir)
        for pid, kind, key, secret, regions in (("jiangsu", "province", js_key, js_secret, "32"),
                                                ("national", "national", nat_key, nat_secret, ""),
                                                ("facecheck", "verifier", fc_key, fc_secret, "")):
            args = [gongji, "platform", "add", pid, "--kind", kind, "--api-key", key, "--webhook-secret", secret]
            if pid in ("national", "jiangsu"):
                args += ["--webhook-url", (receiver if pid == "national" else province).url]
            _run(args + (["--regions", regions] if regions else []), env=env, cwd=workdir)

        _RUNNING[name] = procs
        for pname, args in (("web", ["web", "--port", str(port), "--workers", "2", "--threads", "4"]),
                            ("worker", ["worker", "--processes", "1", "--threads", "4"]),
                            ("scheduler", ["scheduler"])):
            procs.append(Proc(pname, [gongji, *args], cwd=workdir, env=env, log=workdir / f"{pname}.log"))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/readyz", procs, timeout=START_TIMEOUT_S)
        wait_worker(r, procs)
        yield Production(base=base, jiangsu_key=js_key, jiangsu_secret=js_secret, national_key=nat_key,
                         national_secret=nat_secret, facecheck_key=fc_key, facecheck_secret=fc_secret,
                         database_url=our_db, redis_url=our_redis, national_receiver=receiver,
                         province_receiver=province, procs=procs,
                         env=env, workdir=workdir)
    finally:
        try:
            _stop_all(name, procs)
            receiver.stop()
            province.stop()
        finally:
            try:
                r.flushdb()
                r.close()
            except redis.RedisError:  # a test may have stopped its own Redis
                pass
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
                admin.dispose()


def wait_worker(r, procs: list[Proc]) -> None:
    """The dramatiq worker is consuming once it has sent a heartbeat to its namespace in this Redis db."""
    def worker_consuming():
        for p in procs:
            assert p.alive(), f"{p.name} exited:\n{p.tail()}"
        return r.zcard("gongji:__heartbeats__") > 0
    poll(worker_consuming, timeout=START_TIMEOUT_S, interval=0.1, what="the dramatiq worker consuming")
