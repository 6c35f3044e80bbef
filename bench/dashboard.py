"""The operator dashboard's pages over HTTP at a million bindings: overview and list (issue 4's target:
p95 < 200 ms), plus the binding page, the person look-up and the audit log.

usage: python bench/dashboard.py [--bindings 1000000] [--db-name gongji_dashboard] [--no-seed]
                                 [--requests 40] [--web-workers 2] [--threads 4]

Seeds PostgreSQL with `bench/dashboard_seed.py` (history, deliveries, sync rows and ~3,000 stuck bindings
per reason at 1M), starts `gunicorn web.wsgi:app` (the production shape), signs in as an admin and GETs each
page `--requests` times one after another (a warm-up first), then the two target pages again from 4
clients at once. Reported: p50 and p95 per page in ms, as the client sees them (HTML rendered, sent).
The server comes from GONGJI_TEST_DATABASE_URL / GONGJI_TEST_REDIS_URL (scripts/services.sh)."""
from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import database_url, fresh_database  # noqa: E402
from bench.dashboard_seed import a_person, bench_key, bench_keys, seed  # noqa: E402
from bench.webhooks import b64, free_port, log, start, stop, wait_ready  # noqa: E402
from models import db as mdb  # noqa: E402
from models import migrate  # noqa: E402

TARGETS = ("overview", "list")
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class Client:
    """A signed-in admin. The session cookie is `Secure` in production, so it is sent by hand over http."""

    def __init__(self, base: str, password: str):
        self.base, self.http = base, requests.Session()
        page = self.http.get(f"{base}/dashboard/sign-in", timeout=30)
        first = {"Cookie": f"session={page.cookies['session']}"}
        answer = self.http.post(f"{base}/dashboard/sign-in", allow_redirects=False, timeout=30, headers=first, data={
            "csrf_token": TOKEN.search(page.text).group(1), "username": "bench-admin", "password": password})
        assert answer.status_code == 302, answer.text[:300]
        self.cookie = {"Cookie": f"session={answer.cookies['session']}"}

    def get(self, path: str) -> float:
        t0 = time.perf_counter()
        answer = self.http.get(self.base + path, headers=self.cookie, timeout=60)
        assert answer.status_code == 200 and "/dashboard/sign-in" not in answer.url, (path, answer.status_code)
        return (time.perf_counter() - t0) * 1000

    def post(self, path: str, data: dict) -> float:
        page = self.http.get(self.base + "/dashboard/bindings", headers=self.cookie)
        if "session" in page.cookies:  # the CSRF secret was just added to the session
            self.cookie = {"Cookie": f"session={page.cookies['session']}"}
        token = TOKEN.search(page.text).group(1)
        t0 = time.perf_counter()
        answer = self.http.post(self.base + path, headers=self.cookie, data={"csrf_token": token, **data}, timeout=60)
        assert answer.status_code == 200, (path, answer.status_code)
        return (time.perf_counter() - t0) * 1000


def pages(engine, person: str) -> list[tuple[str, str, dict | None]]:
    with engine.connect() as c:
        stuck_one = c.exec_driver_sql("SELECT binding_id FROM deliveries WHERE status = 'dead' LIMIT 1").scalar()
        newest = c.exec_driver_sql("SELECT updated_at, id FROM bindings ORDER BY updated_at DESC, id DESC "
                                   "OFFSET 49 LIMIT 1").one()
    from workflows import sync
    after = sync._cursor(newest[0], newest[1])
    return [
        ("overview", "/dashboard/", None),
        ("list", "/dashboard/bindings", None),
        ("list", f"/dashboard/bindings?after={after}", None),
        ("list", "/dashboard/bindings?state=authorized", None),
        ("list", "/dashboard/bindings?state=invited&region=320100", None),
        ("list", "/dashboard/bindings?region=650100", None),
        ("list", "/dashboard/bindings?stuck=delivery_dead", None),
        ("list", "/dashboard/bindings?stuck=timer_overdue&region=320500", None),
        ("list", "/dashboard/bindings?platform=xinjiang&older_than_s=2592000", None),
        ("person look-up", "/dashboard/find", {"id_number": person}),
        ("binding page", f"/dashboard/bindings/{stuck_one}", None),
        ("audit log", "/dashboard/audit", None),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindings", type=int, default=1_000_000)
    ap.add_argument("--db-name", default="gongji_dashboard")
    ap.add_argument("--no-seed", action="store_true")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    bench_keys()
    server = database_url(None)
    url = (sa.make_url(server).set(drivername="postgresql+psycopg", database=args.db_name)
           .render_as_string(hide_password=False)) if args.no_seed else fresh_database(server, args.db_name)
    engine = mdb.make_engine(url, pool_size=2)
    if not args.no_seed:
        migrate.upgrade(engine)
        t0 = time.perf_counter()
        log(f"seeding {args.bindings:,} bindings")
        seed(engine, args.bindings, now=datetime.now(timezone.utc).replace(microsecond=0), log=lambda *_: None)
        log(f"seeded in {time.perf_counter() - t0:.0f} s")
    person = a_person(engine)
    password = secrets.token_urlsafe(16)
    from workflows import operators
    with engine.begin() as c:
        c.exec_driver_sql("DELETE FROM operators WHERE username = 'bench-admin'")
    operators.add(mdb.make_sessionmaker(engine), "bench-admin", password, "admin")
    logdir = Path(tempfile.mkdtemp(prefix="gongji-dash-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGJI_")}
    env.update(GONGJI_DATABASE_URL=url, GONGJI_REDIS_URL=os.environ["GONGJI_TEST_REDIS_URL"],
               GONGJI_PII_KEYS=f"bench1:{bench_key('pii')}", GONGJI_LOOKUP_KEY=bench_key("lookup"),
               GONGJI_SECRET_KEY=b64(32), GONGJI_METRICS_TOKEN=b64(24), GONGJI_PUBLIC_URL=base,
               GONGJI_LOG_LEVEL="WARNING")
    web = start([sys.executable, "-m", "gunicorn", "-w", str(args.web_workers), "-k", "gthread", "--threads",
                 str(args.threads), "-b", f"127.0.0.1:{port}", "web.wsgi:app"], env, logdir, "web")
    try:
        wait_ready(base + "/healthz")
        client = Client(base, password)
        with engine.connect() as c:
            n = c.exec_driver_sql("SELECT count(*) FROM bindings").scalar()
        times: dict[str, list[float]] = {}
        for name, path, form in pages(engine, person):
            call = (lambda: client.post(path, form)) if form else (lambda: client.get(path))
            call()  # warm-up
            times.setdefault(name, []).extend(call() for _ in range(args.requests))
        clients = [Client(base, password) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda i: [clients[i].get(p) for _ in range(args.requests // 2)
                                                for p in ("/dashboard/", "/dashboard/bindings?state=authorized")],
                                     range(4)))
        print(f"\n### Benchmark — bench/dashboard.py ({datetime.now():%Y-%m-%d}), {n:,} bindings, gunicorn "
              f"-w {args.web_workers} gthread {args.threads}, 2 CPUs")
        print(f"{'page':16} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8}")
        for name, values in times.items():
            print(f"{name:16} {len(values):8d} {statistics.median(values):8.1f} {pct(values, 0.95):8.1f}")
        flat = [v for chunk in together for v in chunk]
        print(f"{'4 clients at once':16} {len(flat):8d} {statistics.median(flat):8.1f} {pct(flat, 0.95):8.1f}"
              "   (overview and state=authorized list, interleaved)")
        worst = max(pct(times[t], 0.95) for t in TARGETS)
        print(f"target p95 < 200 ms for overview and list: {'met' if worst < 200 else 'NOT met'} "
              f"(worst p95 {worst:.1f} ms)")
    finally:
        stop(web)
        engine.dispose()


if __name__ == "__main__":
    main()
