"""Gongji over HTTP on the production shape (gunicorn `gongji web`, dramatiq `gongji worker`, `gongji
scheduler`, PostgreSQL, Redis) with the simulator's fake face provider and fake national platform.

usage: python bench/webhooks.py [--families 400] [--concurrency 24] [--seconds 10] [--rounds 3]
                                [--connections 32] [--web-workers 2] [--threads 8]
                                [--worker-processes 2] [--worker-threads 8] [--poll]

1. Lifecycle: `--families` families driven by `gongji simulate`'s driver over HTTP (invite, start
   verification → the fake provider calls back → accept, authorize, unbind; 1 in 10 declines, 1 in 20 is
   cancelled), `--concurrency` at a time (a closed loop: once the machine is saturated, more families only
   queue, and the p99 grows with them). Their persons are registered first, not timed: persons exist long
   before an invitation (bench/transitions.py does the same). The driver learns a verification's result as
   a platform does in production, from the event Gongji delivers to the fake national platform; `--poll`
   polls `GET /bindings/{id}` instead (runs before 2026-11-24 polled, and registered persons in the timed run).
   Reported: transitions/s (history rows written / wall time), the same until every outbound event is
   delivered (the work the families do not wait for), p50/p99 per API call. CPU per transition per process
   tree (web, worker, scheduler, PostgreSQL, Redis, and this process: the load generator with the fake
   provider and platform), from /proc, until every event is delivered. `face_verified` in the table is a
   wait, not a call: the provider's latency (0.1 s here) and the event's delivery (or the polling).
   `--rounds 0` runs this part only. Then the same families at a time through the lifecycle floor
   (`bench/http_floor.py`: one statement and one signed webhook a transition, nothing else; to the same fake
   national platform), timed the same way: how far from the target this machine is at all.
2. Webhook ingest: wrk POSTs pre-signed `verification.completed` webhooks (every webhook-id unique) at
   `gongji web` and, in the same run, interleaved round by round, under the same gunicorn settings, at a
   bare Flask handler (`bench/bare_flask.py`: read the body, answer) and at the durable floor
   (`bench/durable_flask.py`: verify the signature, one prepared INSERT in autocommit, answer; the least a
   handler that commits each request can do), and at the same floor with group commit (`durable_flask:group_app`,
   Gongji's `GroupCommit`: the least for a handler that shares commits). Ingest = verify the signature, store (encrypted) with its outbox
   row (concurrent requests of a web process share one statement: group commit), answer 202, publish to
   Redis; the worker is stopped during this part. Reported: median requests/s, median p99, the ratio to
   bare Flask (the issue's) and the floor's;
   CPU per request of each process tree over all rounds of each side (wrk: this process, idle meanwhile,
   and its reaped children);
   webhooks stored per statement. Needs wrk (`make bench` installs it).
The server comes from GONGJI_TEST_DATABASE_URL / GONGJI_TEST_REDIS_URL (scripts/services.sh)."""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import redis
import requests
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench import http_floor  # noqa: E402
from bench.common import ServerCPU, database_url, fresh_database, tree_cpu_seconds  # noqa: E402
from workers.outbound import sign_headers  # noqa: E402
from workers.simulator.face import FakeFaceProvider  # noqa: E402
from workers.simulator.families import Driver  # noqa: E402
from workers.simulator.platform import FakePlatform  # noqa: E402

GONGJI = str(Path(sys.executable).parent / "gongji")
FACE_LATENCY_S = 0.1  # the fake provider's, and the lifecycle floor's driver's wait before the result


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer")


def start(args: list[str], env: dict, logdir: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=open(logdir / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=logdir)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def signed_file(path: Path, secret: str, n: int) -> None:
    """n requests for wrk: id, timestamp, signature, body (tab-separated), every webhook-id unique."""
    at = datetime.now(timezone.utc)
    with open(path, "w") as f:
        for i in range(n):
            body = json.dumps({"type": "verification.completed", "data": {
                "verification_id": f"ver_bench{i}", "binding_id": "bnd_bench", "result": "passed"}})
            h = sign_headers([secret], f"msg_{uuid.uuid4().hex}", body, at)
            f.write(f"{h['webhook-id']}\t{h['webhook-timestamp']}\t{h['webhook-signature']}\t{body}\n")


def wrk(url: str, requests_file: Path, seconds: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                          str(HERE / "signed.lua"), url, "--", str(requests_file), "2"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p99_ms": p99_ms, "non_2xx": int(bad.group(1)) if bad else 0,
            "total": int(re.search(r"(\d+) requests in", out).group(1))}


def run_http_floor(args, gunicorn: list[str], env: dict, logdir: Path, national: FakePlatform, secret: str,
                   pg_pid: int | None) -> dict:
    """The same families at a time through `bench/http_floor.py` (its docstring: what it leaves out),
    delivering to the same fake national platform; timed until every event is delivered too."""
    url, port = env["FLOOR_DATABASE_URL"], free_port()
    base = f"http://127.0.0.1:{port}"
    http_floor.create_schema(url)
    web = start(gunicorn + ["-b", f"127.0.0.1:{port}", "--chdir", str(HERE), "http_floor:app"], env, logdir,
                "floor-web")
    deliverer = start([sys.executable, str(HERE / "http_floor.py"), "deliver", url, national.url, secret], env,
                      logdir, "floor-deliverer")
    try:
        wait_ready(base + "/")
        trees = {"web": web.pid, "deliverer": deliverer.pid, "PostgreSQL": pg_pid, "load + fake": 0}
        trees = {k: v for k, v in trees.items() if v is not None}
        before = tree_cpu_seconds(trees)
        started = time.monotonic()
        calls, failed = http_floor.drive(base, args.families, args.concurrency, events=national,
                                         latency_s=FACE_LATENCY_S)
        wall = time.monotonic() - started
        with sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)).connect() as c:
            while c.execute(sa.text("select count(*) from floor_outbox where delivered_at is null")).scalar():
                time.sleep(0.05)
                c.rollback()
            drained = time.monotonic() - started
            transitions = c.execute(sa.text("select count(*) from floor_history")).scalar()
        after = tree_cpu_seconds(trees)
    finally:
        stop(web)
        stop(deliverer)
    cpu = {k: after[k] - before[k] for k in trees}
    result = {"transitions": transitions, "wall": wall, "tps": transitions / wall, "failed": failed,
              "drain": drained, "tps_drained": transitions / drained, "p50": statistics.median(calls),
              "p99": statistics.quantiles(calls, n=100)[98], "cpu": cpu}
    log(f"HTTP floor: {transitions} transitions in {wall:.1f} s = {result['tps']:.0f} transitions/s, all delivered "
        f"after {drained:.1f} s = {result['tps_drained']:.0f}/s; p50 {result['p50']:.1f} ms, p99 "
        f"{result['p99']:.1f} ms; CPU per transition " + ", ".join(
            f"{k} {1000 * v / transitions:.2f} ms" for k, v in cpu.items()))
    return result


OPEN_WORK = sa.text("select (select count(*) from outbox where processed_at is null) as outbox, "
                    "(select count(*) from deliveries where status <> 'delivered') as deliveries")


def drain(engine: sa.Engine, timeout_s: float = 300) -> float:
    """When every outbox row is processed and every delivery delivered (monotonic time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as c:
            left = c.execute(OPEN_WORK).one()
        if not left.outbox and not left.deliveries:
            return time.monotonic()
        time.sleep(0.05)
    sys.exit(f"the backlog did not drain in {timeout_s:.0f} s: {left}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--worker-processes", type=int, default=2)
    ap.add_argument("--worker-threads", type=int, default=8)
    ap.add_argument("--poll", action="store_true", help="the driver polls the binding for the verification result "
                    "instead of waiting for the event Gongji delivers to the fake national platform")
    args = ap.parse_args()

    db = fresh_database(database_url(None), "gongji_bench_http")
    redis_url = os.environ["GONGJI_TEST_REDIS_URL"].rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(redis_url).flushdb()
    port, bare_port, floor_port, group_port = free_port(), free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGJI_")}
    env.update(GONGJI_DATABASE_URL=db, GONGJI_REDIS_URL=redis_url, GONGJI_PII_KEYS=f"b1:{b64(32)}",
               GONGJI_LOOKUP_KEY=b64(32), GONGJI_SECRET_KEY=b64(32), GONGJI_METRICS_TOKEN=b64(24), GONGJI_PUBLIC_URL=base,
               GONGJI_LOG_LEVEL="WARNING", GONGJI_SWEEP_INTERVAL_S="0.5",
               # as `gongji web` runs gunicorn: the processes' request counts in files (web/metrics.py)
               PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="gongji-bench-metrics-"))
    fc_secret, nat_secret, js_key = f"whsec_{b64(32)}", f"whsec_{b64(32)}", f"gk_{secrets.token_urlsafe(16)}"
    face = FakeFaceProvider([fc_secret], latency_s=FACE_LATENCY_S).start()
    national = FakePlatform([nat_secret]).start()
    logdir = Path(tempfile.mkdtemp(prefix="gongji-bench-http-"))
    subprocess.run([GONGJI, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=logdir)
    for pid, kind, key, secret, extra in (
            ("jiangsu", "province", js_key, f"whsec_{b64(32)}", ["--regions", "32"]),
            ("national", "national", f"gk_{b64(16)}", nat_secret, ["--webhook-url", national.url]),
            ("facecheck", "verifier", f"gk_{b64(16)}", fc_secret, ["--webhook-url", face.url])):
        subprocess.run([GONGJI, "platform", "add", pid, "--kind", kind, "--api-key", key, "--webhook-secret", secret,
                        *extra], env=env, check=True, capture_output=True, cwd=logdir)
    floor_db = fresh_database(db, "gongji_bench_floor")
    floor_env = dict(env, FLOOR_SECRET=fc_secret, FLOOR_DATABASE_URL=sa.make_url(floor_db).set(
        drivername="postgresql").render_as_string(hide_password=False))
    subprocess.run([sys.executable, "-c", "import durable_flask; durable_flask.create_table()"], env=floor_env,
                   cwd=HERE, check=True)
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", str(args.web_workers), "-k", "gthread", "--threads",
                str(args.threads), "--log-level", "warning"]
    procs = {"web": start(gunicorn + ["-b", f"127.0.0.1:{port}", "web.wsgi:app"], env, logdir, "web"),
             "bare": start(gunicorn + ["-b", f"127.0.0.1:{bare_port}", "--chdir", str(HERE), "bare_flask:app"],
                           env, logdir, "bare"),
             "floor": start(gunicorn + ["-b", f"127.0.0.1:{floor_port}", "--chdir", str(HERE), "durable_flask:app"],
                            floor_env, logdir, "floor"),
             "grouped": start(gunicorn + ["-b", f"127.0.0.1:{group_port}", "--chdir", str(HERE),
                                          "durable_flask:group_app"], floor_env, logdir, "grouped"),
             "worker": start([GONGJI, "worker", "--processes", str(args.worker_processes), "--threads",
                              str(args.worker_threads)], env, logdir, "worker"),
             "scheduler": start([GONGJI, "scheduler"], env, logdir, "scheduler")}
    try:
        wait_ready(base + "/healthz")
        wait_ready(f"http://127.0.0.1:{bare_port}/")
        wait_ready(f"http://127.0.0.1:{floor_port}/")
        wait_ready(f"http://127.0.0.1:{group_port}/")
        log(f"lifecycle over HTTP: {args.families} families, {args.concurrency} at a time (logs in {logdir})")
        driver = Driver(base, js_key, seed=1, events=None if args.poll else national, settle=False)
        began = time.monotonic()
        driver.prepare(args.families, args.concurrency)
        log(f"persons: {2 * args.families} registered in {time.monotonic() - began:.1f} s (not timed: they exist "
            f"before anyone invites); {'polling' if args.poll else 'waiting for the national platform’s events'}")
        driver.latencies.clear()
        engine = sa.create_engine(db)
        trees = {"web": procs["web"].pid, "worker": procs["worker"].pid, "scheduler": procs["scheduler"].pid,
                 "PostgreSQL": ServerCPU(engine).pid,
                 "Redis": redis.Redis.from_url(redis_url).info("server")["process_id"],
                 "load + fakes": 0}
        cpu_before = tree_cpu_seconds({k: v for k, v in trees.items() if v is not None})
        started = time.monotonic()
        driver.run(args.families, args.concurrency)
        wall = time.monotonic() - started
        with engine.connect() as c:
            transitions = c.execute(sa.text("select count(*) from binding_transitions")).scalar()
            backlog = c.execute(OPEN_WORK).one()
        drained = drain(engine)  # the work the families did not wait for: every event delivered
        cpu_after = tree_cpu_seconds({k: v for k, v in trees.items() if v is not None})
        cpu = {k: v - cpu_before[k] for k, v in cpu_after.items()}
        print(driver.summary())
        if face.callback_failures:  # the fake provider retries; a failure here is worth reading
            log(f"face provider callbacks without a 2xx answer (then retried): {len(face.callback_failures)}; "
                f"first: {face.callback_failures[:3]}")
        calls = [ms for step, values in driver.latencies.items() if step != "face_verified" for ms in values]
        life = {"transitions": transitions, "wall": wall, "tps": transitions / wall,
                "errors": sum(driver.errors.values()),
                "drain": drained - started, "tps_drained": transitions / (drained - started),
                "p50": statistics.median(calls), "p99": statistics.quantiles(calls, n=100)[98]}
        log(f"lifecycle: {transitions} transitions in {wall:.1f} s = {life['tps']:.0f} transitions/s; left then: "
            f"{backlog.outbox} outbox rows, {backlog.deliveries} deliveries; all delivered after {life['drain']:.1f} s "
            f"= {life['tps_drained']:.0f} transitions/s")
        log("CPU per transition until drained: "
            + ", ".join(f"{k} {1000 * v / transitions:.2f} ms" for k, v in cpu.items())
            + f"; total {1000 * sum(cpu.values()) / transitions:.2f} ms")
        for name in ("worker", "scheduler"):
            stop(procs.pop(name))
        floor = run_http_floor(args, gunicorn, floor_env, logdir, national, nat_secret, trees["PostgreSQL"])

        rounds = {"gongji": [], "floor": [], "grouped": [], "bare": []}
        ingest_trees = {"web": procs["web"].pid, "bare": procs["bare"].pid, "floor": procs["floor"].pid,
                        "grouped": procs["grouped"].pid,
                        "PostgreSQL": trees["PostgreSQL"],
                        "Redis": trees["Redis"], "wrk": 0}
        ingest_trees = {k: v for k, v in ingest_trees.items() if v is not None}
        ingest_cpu = {"gongji": {}, "floor": {}, "grouped": {}, "bare": {}}  # CPU seconds per tree over each side's rounds
        with engine.connect() as c:
            first_ingest = c.execute(sa.text("select coalesce(max(id), 0) from outbox")).scalar()
        for r in range(args.rounds):
            for name, url in (("gongji", f"{base}/webhooks/facecheck"),
                              ("floor", f"http://127.0.0.1:{floor_port}/webhooks/facecheck"),
                              ("grouped", f"http://127.0.0.1:{group_port}/webhooks/facecheck"),
                              ("bare", f"http://127.0.0.1:{bare_port}/webhooks/facecheck")):
                path = logdir / f"requests-{name}-{r}.tsv"
                signed_file(path, fc_secret, 8000 * args.seconds)
                before = tree_cpu_seconds(ingest_trees)
                result = wrk(url, path, args.seconds, args.connections)
                after = tree_cpu_seconds(ingest_trees)
                for k in ingest_trees:
                    ingest_cpu[name][k] = ingest_cpu[name].get(k, 0.0) + after[k] - before[k]
                rounds[name].append(result)
                log(f"ingest round {r + 1}/{args.rounds} {name:<7}: {result['rps']:.0f} req/s, p99 "
                    f"{result['p99_ms']:.1f} ms, {result['non_2xx']} non-2xx of {result['total']}")
        with engine.connect() as c:
            stored = c.execute(sa.text("select count(*) from received_webhooks")).scalar()
            groups = c.execute(sa.text(  # a group's outbox rows share its created_at
                "select count(*), count(distinct created_at) from outbox where topic = 'webhook.received' "
                "and id > :first"), {"first": first_ingest}).one()
        med = {k: (statistics.median(x["rps"] for x in v), statistics.median(x["p99_ms"] for x in v))
               if v else (float("nan"), float("nan")) for k, v in rounds.items()}
        print("=" * 100)
        print(f"### Benchmark — bench/webhooks.py ({datetime.now():%Y-%m-%d}), 2 CPUs, gunicorn -w "
              f"{args.web_workers} --threads {args.threads}, wrk -t2 -c{args.connections} {args.seconds} s × "
              f"{args.rounds}\n```")
        print(f"lifecycle over HTTP   {life['tps']:.0f} transitions/s ({life['transitions']} in {life['wall']:.1f} s, "
              f"{life['errors']} failed families); {life['tps_drained']:.0f}/s until every event was delivered "
              f"({life['drain']:.1f} s); every API call p50 {life['p50']:.1f} ms, p99 {life['p99']:.1f} ms "
              f"(per step in the table above; face_verified is a wait, not a call)")
        print("CPU per transition    "
              + ", ".join(f"{k} {1000 * v / life['transitions']:.2f} ms" for k, v in cpu.items())
              + f" = {1000 * sum(cpu.values()) / life['transitions']:.2f} ms of 2 cores' {2000 / life['tps']:.2f} ms")
        print(f"lifecycle floor       {floor['tps']:.0f} transitions/s over HTTP ({floor['tps_drained']:.0f}/s until "
              f"delivered; p50 {floor['p50']:.1f} ms, p99 {floor['p99']:.1f} ms; bench/http_floor.py: one statement "
              f"and one signed webhook a transition, nothing else); gongji / floor {life['tps'] / floor['tps']:.2f}; "
              f"CPU per transition " + ", ".join(f"{k} {1000 * v / floor['transitions']:.2f} ms"
                                                  for k, v in floor["cpu"].items())
              + f" = {1000 * sum(floor['cpu'].values()) / floor['transitions']:.2f} ms")
        print(f"webhook ingest        gongji {med['gongji'][0]:.0f} req/s (p99 {med['gongji'][1]:.1f} ms), "
              f"bare Flask {med['bare'][0]:.0f} req/s (p99 {med['bare'][1]:.1f} ms), "
              f"ratio {med['gongji'][0] / med['bare'][0]:.2f} (target ≥ 0.5)")
        print(f"ingest floor          durable Flask {med['floor'][0]:.0f} req/s (p99 {med['floor'][1]:.1f} ms): "
              f"signature, one prepared INSERT in autocommit a request, nothing else (bench/durable_flask.py); "
              f"floor / bare {med['floor'][0] / med['bare'][0]:.2f}, gongji / floor "
              f"{med['gongji'][0] / med['floor'][0]:.2f}")
        print(f"grouped floor         {med['grouped'][0]:.0f} req/s (p99 {med['grouped'][1]:.1f} ms): the same with "
              f"group commit as Gongji's (`durable_flask:group_app`); grouped / bare "
              f"{med['grouped'][0] / med['bare'][0]:.2f}, gongji / grouped {med['gongji'][0] / med['grouped'][0]:.2f}")
        for name, wanted in (("gongji", ("web", "PostgreSQL", "Redis", "wrk")), ("floor", ("floor", "PostgreSQL", "wrk")),
                             ("grouped", ("grouped", "PostgreSQL", "wrk")),
                             ("bare", ("bare", "wrk"))):
            served = sum(x["total"] for x in rounds[name]) or 1
            print(f"CPU per request       {name:<7} " + ", ".join(
                f"{k} {1000 * ingest_cpu[name][k] / served:.3f} ms" for k in wanted if k in ingest_cpu[name]))
        print(f"stored webhooks       {stored} (every 2xx answer is a stored row: "
              f"{sum(x['total'] - x['non_2xx'] for x in rounds['gongji'])} answered 2xx); "
              f"{groups[0] / max(groups[1], 1):.1f} webhooks stored per statement (group commit)\n```")
    finally:
        for proc in procs.values():
            stop(proc)
        face.stop()
        national.stop()


if __name__ == "__main__":
    main()
