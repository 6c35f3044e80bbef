"""Gongji performance benchmark: lifecycle throughput against its peers, and the timer sweeper at scale.

usage: python bench/transitions.py [DATABASE_URL] [--bindings 2000] [--threads 8] [--repeat 3]
                                   [--big 1000000] [--due 10000] [--sweep-repeat 2] [--db-name gongji_bench]
                                   [--skip-lifecycle] [--skip-peers] [--skip-dbos] [--skip-sweep] [--profile K]
quick run: python bench/transitions.py --bindings 300 --repeat 1 --big 100000 --sweep-repeat 1

The URL comes from argv[1], else GONGJI_BENCH_DATABASE_URL, else GONGJI_TEST_DATABASE_URL (what
`scripts/services.sh` exports). It only names the server: a fresh database (`--db-name`, default
`gongji_bench`) is dropped and created next to it, so tests running against the same server are untouched.

1. Lifecycle: N families, T threads, in-process (the workflows layer, no HTTP). Per binding the six commands
   invite → start_verification → record_verification_result(passed) → accept → authorize → unbind,
   each one transaction. Persons are upserted first (not timed). Reported: transitions/s counting all six,
   "main-line" transitions/s counting the five the peers also do (invite, face_verified, accepted,
   authorized, unbound) over the same wall time, and per-command p50/p99 latency.
2. Peers on the same database in the same run, interleaved with the Gongji repeats:
   /work/shared/bench/peers/plain_sql_lifecycle.py (and dbos_lifecycle.py only if `import dbos` works).
3. Sweeper: `--due` due `expire` timers among exactly that many bindings, then among `--big` bindings
   (bulk-seeded with SQL: mostly terminal rows, some live ones with future or no deadline), VACUUM ANALYZE,
   then `workflows.timers.sweep_all(db, batch=500)`; the count of `expired` rows is checked. Each size is
   swept `--sweep-repeat` times (the fired timers are re-armed in between).
4. A summary block for the README (medians over the repeats). Client CPU per transition and SQL statements
   per binding/timer are printed too: the Gongji process is bound by its own CPU (one core, the GIL).
   So is PostgreSQL's CPU per transition (postmaster and backends, from /proc, when the server runs on this
   machine): client and server share the two cores, and the peers are measured the same way.
The lifecycle's warm-up (`WARM_UP` families, not reported) is followed by ANALYZE, as a live database
has statistics of a table of some size. Prepared statements keep the plan made from the statistics of
their time: after a 50-family warm-up the binding reads ran a plan made for a 50-row table through the
whole first run (858 µs and 4,188 buffers a read instead of 15 µs and 9, pg_stat_statements; that run
reached 1,300 main-line/s against 2,200-2,400 for the next ones, whose VACUUM (ANALYZE) saw the bigger
table). Without statistics at all the invitation's counts query scans the whole table.
Every timed run, Gongji's and each peer's, starts after a VACUUM (ANALYZE) and a CHECKPOINT (`settle`).
`--profile K` profiles K lifecycles on one thread by CPU time (not waits on the server).
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import io
import os
import platform as pyplatform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

# This file is named like the `transitions` library the state machine imports: take the script's own
# directory off the import path before anything imports `transitions`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import sqlalchemy as sa  # noqa: E402

from models import crypto  # noqa: E402
from models import db as mdb  # noqa: E402
from models import migrate, seed  # noqa: E402
from models.settings import Settings  # noqa: E402
from workflows import commands, persons, policy, timers, verification  # noqa: E402
from workflows import invite as invite_mod  # noqa: E402
from workflows.idnumbers import with_check_digit  # noqa: E402

sys.path.append(_HERE)  # `transitions` (the library) is loaded by now: this directory cannot shadow it any more
from common import ServerCPU, WalMeter, database_url, fresh_database  # noqa: E402

PEERS = "/work/shared/bench/peers"
COMMANDS = ("invite", "start_verification", "record_verification_result", "accept", "authorize", "unbind")
MAIN_LINE = 5  # invite, face_verified, accepted, authorized, unbound — the peer's five
ALL = len(COMMANDS)
WARM_UP = 500  # families before the statistics are taken (see the module docstring)
REGION, COMMITMENT = "320100", "JS-2024-01"


def settle(engine) -> None:
    """Before every timed run, Gongji's and the peers' alike: VACUUM (ANALYZE) what the runs before left
    (dead row versions, unanalyzed inserts), so that autovacuum does not start on it during this run and
    take CPU from whichever side happens to run next (second runs were 10-20 % slower without it); then a
    CHECKPOINT, so that every run starts just after one and pays the same full-page WAL writes on the
    first change of each page (else only the first run starts right after one, `CREATE DATABASE`'s)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM (ANALYZE)")
        try:
            c.exec_driver_sql("CHECKPOINT")
        except sa.exc.DBAPIError:  # neither superuser nor pg_checkpoint: runs are then less comparable
            log("CHECKPOINT refused (needs superuser or pg_checkpoint); runs start without one")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- set-up


def bench_settings(url: str) -> Settings:
    """Fixed benchmark keys (this database only); crypto is configured by `from_settings`."""
    def key(label: str) -> str:
        return base64.b64encode(hashlib.sha256(b"gongji-bench:" + label.encode()).digest()).decode()
    return Settings(database_url=url, redis_url=None, pii_keys={"bench1": key("pii")}, pii_active_key="bench1",
                    lookup_key=key("lookup"), secret_key=key("secret"))


class StatementCounter:
    """Counts the SQL statements an engine sends (cursor executes: not BEGIN/COMMIT or the pool's ping) while
    it listens. The lifecycle's statements are counted in the warm-up, not in the timed runs: the listener
    is a Python call per statement (~2.5 % of Gongji's client CPU, py-spy) that the peers, in their own
    processes, do not pay."""

    def __init__(self, engine):
        self.n, self.engine = 0, engine

    def listen(self, on: bool) -> None:
        (sa.event.listen if on else sa.event.remove)(self.engine, "before_cursor_execute", self._count)

    def _count(self, *_args) -> None:
        self.n += 1  # a lost increment under threads would only undercount by a hair


def code_revision() -> str:
    """The revision of the code this process imported, which need not be the checkout the script sits in: an
    editable install serves its own checkout to every script (run another checkout's code with
    PYTHONPATH=<that checkout>)."""
    import workflows
    repo = os.path.dirname(os.path.dirname(os.path.abspath(workflows.__file__)))
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "models", "workflows"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" + uncommitted changes in models/ or workflows/" if dirty else "")


def server_facts(engine) -> dict:
    with engine.connect() as c:
        names = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "server_version")
        return {n: c.exec_driver_sql(f"show {n}").scalar() for n in names}


# ---------------------------------------------------------------------------------------- lifecycle


def id_number(role: str, k: int) -> str:
    """Distinct valid adult ID numbers: region 320102, grantors born from 1960, beneficiaries from 1975."""
    base = date(1960, 1, 1) if role == "g" else date(1975, 1, 1)
    born = base + timedelta(days=k // 1000)
    assert born.year <= 1990
    return with_check_digit(f"320102{born:%Y%m%d}{k % 1000:03d}")


def make_families(offset: int, n: int) -> list[tuple[str, str]]:
    return [(id_number("g", offset + i), id_number("b", offset + i)) for i in range(n)]


def upsert_persons(db, families, threads: int) -> None:
    def one(fam):
        g, b = fam
        persons.upsert(db, dict(id_number=g, name="张三", insurance_type="employee", insurance_status="active",
                                region_code=REGION, real_name_verified=True, balance_fen=100_000), platform=None)
        persons.upsert(db, dict(id_number=b, name="李四", insurance_type="resident", insurance_status="active",
                                region_code=REGION, real_name_verified=True, balance_fen=0), platform=None)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, families))


def lifecycle_one(db, g: str, b: str, lat: dict[str, list[float]]) -> None:
    pc = time.perf_counter
    ga, ba = {"kind": "person", "id_number": g}, {"kind": "person", "id_number": b}
    t0 = pc()
    bd = invite_mod.invite(db, grantor_id_number=g, beneficiary_id_number=b, beneficiary_name="李四",
                           relationship="spouse", commitment_version=COMMITMENT, channel="app")
    t1 = pc()
    bid = bd["id"]
    v = verification.start_verification(db, bid, ba)
    t2 = pc()
    res = verification.record_verification_result(db, verification_id=v["verification_id"], binding_id=bid,
                                                  result="passed", verifier_id="facecheck")
    t3 = pc()
    commands.accept(db, bid, ba)
    t4 = pc()
    commands.authorize(db, bid, ga, 5000)
    t5 = pc()
    out = commands.unbind(db, bid, ga)
    t6 = pc()
    if res != "passed" or out["state"] != "unbound":
        raise AssertionError(f"{bid}: verification {res}, final state {out['state']}")
    for name, dt in zip(COMMANDS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
        lat[name].append(dt)


SERVER: ServerCPU | None = None  # set in main()
WAL: WalMeter | None = None  # set in main()


def wal_before():
    return WAL.read() if WAL is not None else None


def wal_since(before):
    return WAL.since(before) if WAL is not None else None


def server_seconds() -> float | None:
    return SERVER.seconds() if SERVER is not None else None


def run_lifecycle(db, families, threads: int, counter: StatementCounter | None = None) -> dict:
    lat: dict[str, list[float]] = {c: [] for c in COMMANDS}
    errors: list[BaseException] = []

    def one(fam):
        try:
            lifecycle_one(db, fam[0], fam[1], lat)
        except BaseException as exc:  # keep going, report at the end
            errors.append(exc)

    stmts0 = counter.n if counter else 0
    cpu0, sys0, server0, wal0 = time.process_time(), os.times().system, server_seconds(), wal_before()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, families))
    wall = time.perf_counter() - t0
    cpu, system, server1 = time.process_time() - cpu0, os.times().system - sys0, server_seconds()
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(families)} lifecycles failed; first: {errors[0]!r}") from errors[0]
    n = len(families)
    return {"n": n, "wall": wall, "cpu": cpu, "system": system, "server": None if server0 is None else server1 - server0,
            "all_tps": ALL * n / wall, "main_tps": MAIN_LINE * n / wall,
            "stmts": ((counter.n - stmts0) / n) if counter else None, "wal": wal_since(wal0),
            "lat": {c: (pct(v, 50), pct(v, 99)) for c, v in lat.items()}}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))  # nearest rank
    return s[k]


def profile_lifecycle(db, families, out_path: str | None) -> None:
    """cProfile one thread over a few lifecycles (cProfile sees only the calling thread)."""
    lat = {c: [] for c in COMMANDS}
    prof = cProfile.Profile(time.process_time)  # CPU, not waits on the server
    prof.enable()
    for g, b in families:
        lifecycle_one(db, g, b, lat)
    prof.disable()
    if out_path:
        prof.dump_stats(out_path)
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(30)
        print(f"--- cProfile, {len(families)} lifecycles on 1 thread, by {key} ---")
        print("\n".join(buf.getvalue().splitlines()[:60]))


# --------------------------------------------------------------------------------------------- peers


def run_peer(script: str, url: str, n: int, threads: int, extra: tuple[str, ...] = ()) -> dict:
    ru0, server0, wal0 = resource.getrusage(resource.RUSAGE_CHILDREN), server_seconds(), wal_before()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, script, url, str(n), str(threads), *extra],
                          capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    ru1, server1 = resource.getrusage(resource.RUSAGE_CHILDREN), server_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"=\s*([0-9.]+)\s*transitions/s", proc.stdout)
    if not m:
        raise RuntimeError(f"no '= X transitions/s' in the output of {script}:\n{proc.stdout}")
    return {"tps": float(m.group(1)), "line": proc.stdout.strip().splitlines()[-1], "wall": wall,
            "cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "server": None if server0 is None else server1 - server0, "wal": wal_since(wal0)}


def dbos_available() -> bool:
    return subprocess.run([sys.executable, "-c", "import dbos"], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------------------- sweeper


def reset_binding_tables(engine) -> None:
    with engine.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS plain_bindings, plain_history, peer_bindings, peer_history")
        c.exec_driver_sql("TRUNCATE binding_transitions, verification_attempts, outbox, bindings, persons "
                          "RESTART IDENTITY CASCADE")


def seed_bulk(engine, total: int, due: int) -> dict:
    """`total` bindings, `due` of them with an `expire` timer in the past; the rest: 5 % invited with a
    future deadline, 15 % authorized (live, no timer), the remainder unbound (terminal, no timer).
    Persons: total/8 grantors and as many beneficiaries; every (grantor, beneficiary) pair is distinct.
    Filler persons share one ciphertext per encrypted column (it decrypts; only the hashes differ)."""
    assert due <= total
    reset_binding_tables(engine)
    g = max(-(-total // 8), 64)  # grantors = beneficiaries; pairs distinct while total < g*g
    assert total < g * g
    step = max(total // due, 1)
    id_ct = crypto.encrypt("320102198001011234", "persons.id_number")
    name_ct = crypto.encrypt("王五", "persons.name")
    t0 = time.perf_counter()
    with engine.begin() as c:
        policy_id = c.execute(sa.text("SELECT id FROM region_policies WHERE region_code = :r ORDER BY version DESC "
                                      "LIMIT 1"), {"r": REGION}).scalar_one()
        c.execute(sa.text("""
            INSERT INTO persons (id, id_number, id_number_hash, id_number_masked, name, name_masked, insurance_type,
                                 insurance_status, region_code, real_name_verified, balance_fen, commitment_version,
                                 deceased, source_platform, created_at, updated_at)
            SELECT 'psn_bulk' || lpad(i::text, 12, '0'), :idct, encode(sha256(('bulk-' || i)::bytea), 'hex'),
                   '320***********' || lpad((i % 10000)::text, 4, '0'), :namect, '王*',
                   CASE WHEN i < :g THEN 'employee' ELSE 'resident' END, 'active', :region, true, 100000,
                   :commitment, false, NULL, now() - interval '400 days', now() - interval '400 days'
            FROM generate_series(0, :np - 1) AS i"""),
                  {"idct": id_ct, "namect": name_ct, "g": g, "np": 2 * g, "region": REGION,
                   "commitment": COMMITMENT})
        t_persons = time.perf_counter() - t0
        c.execute(sa.text("""
            INSERT INTO bindings (id, grantor_id, beneficiary_id, relationship, state, verification_method, channel,
                                  platform_id, authorized_amount_fen, version, province_code, grantor_region,
                                  beneficiary_region, policy_id, deduction_rank, failed_verifications, expires_at,
                                  deadline_at, deadline_event, created_at, updated_at, ended_at, end_event)
            SELECT 'bnd_bulk' || lpad(i::text, 12, '0'),
                   'psn_bulk' || lpad((i % :g)::text, 12, '0'),
                   'psn_bulk' || lpad((:g + (i + i / :g) % :g)::text, 12, '0'),
                   'spouse',
                   CASE kind WHEN 'due' THEN 'invited' WHEN 'pending' THEN 'invited' ELSE kind END,
                   'face', 'app', NULL,
                   CASE WHEN kind IN ('authorized', 'unbound') THEN 5000 END,
                   CASE kind WHEN 'authorized' THEN 4 WHEN 'unbound' THEN 5 ELSE 1 END,
                   '32', :region, :region, :policy, NULL, 0,
                   CASE WHEN kind IN ('due', 'pending') THEN dl END,
                   CASE WHEN kind IN ('due', 'pending') THEN dl END,
                   CASE WHEN kind IN ('due', 'pending') THEN 'expire' END,
                   created, created,
                   CASE WHEN kind = 'unbound' THEN created + interval '30 days' END,
                   CASE WHEN kind = 'unbound' THEN 'unbind' END
            FROM (SELECT i, kind,
                         CASE kind WHEN 'due' THEN now() - make_interval(secs => 1 + i % 86400)
                                   ELSE now() + make_interval(secs => 3600 + i % 600000) END AS dl,
                         CASE kind WHEN 'due' THEN now() - make_interval(secs => 1 + i % 86400) - interval '7 days'
                                   WHEN 'pending' THEN now() - make_interval(secs => i % 500000)
                                   ELSE now() - make_interval(days => 40 + i % 700) END AS created
                  FROM (SELECT i, CASE WHEN i % :step = 0 AND i / :step < :due THEN 'due'
                                       WHEN i % 20 = 1 THEN 'pending'
                                       WHEN i % 20 IN (2, 3, 4) THEN 'authorized'
                                       ELSE 'unbound' END AS kind
                        FROM generate_series(0, :n - 1) AS i) AS k) AS r"""),
                  {"g": g, "n": total, "step": step, "due": due, "region": REGION, "policy": policy_id})
    t_insert = time.perf_counter() - t0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM (ANALYZE) persons, bindings, binding_transitions, outbox")
        counts = dict(c.exec_driver_sql(
            "SELECT CASE WHEN deadline_at <= now() THEN 'due' ELSE state END, count(*) FROM bindings GROUP BY 1").all())
        size = c.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('bindings'))").scalar()
    if counts.get("due") != due:
        raise AssertionError(f"seeded {counts.get('due')} due timers, wanted {due}")
    return {"seconds": time.perf_counter() - t0, "insert_s": t_insert, "persons_s": t_persons, "counts": counts,
            "size": size, "persons": 2 * g}


def rearm_timers(engine) -> None:
    """Put the fired rows back as they were seeded (due `expire` timers), drop their history, vacuum."""
    with engine.begin() as c:
        c.exec_driver_sql("""
            UPDATE bindings SET state = 'invited', version = 1, ended_at = NULL, end_event = NULL,
                   updated_at = created_at, deadline_at = expires_at, deadline_event = 'expire'
            WHERE state = 'expired'""")
        c.exec_driver_sql("TRUNCATE binding_transitions, delivery_attempts, deliveries, outbox RESTART IDENTITY")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM (ANALYZE) bindings, binding_transitions, outbox")


def run_sweep(engine, db, due: int, counter: StatementCounter) -> dict:
    counter.listen(True)
    stmts0 = counter.n
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    fired = timers.sweep_all(db, batch=500)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stmts = (counter.n - stmts0) / due
    counter.listen(False)
    with engine.connect() as c:
        expired = c.exec_driver_sql("SELECT count(*) FROM bindings WHERE state = 'expired'").scalar()
        left = c.exec_driver_sql("SELECT count(*) FROM bindings WHERE deadline_at <= now()").scalar()
        history = c.exec_driver_sql("SELECT count(*) FROM binding_transitions WHERE event = 'expire'").scalar()
    if expired != due or fired != due or left != 0 or history != due:
        raise AssertionError(f"sweep: fired {fired}, expired {expired}, still due {left}, history {history}; "
                             f"wanted {due}")
    return {"seconds": dt, "cpu": cpu, "tps": due / dt, "fired": fired, "stmts": stmts}


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="PostgreSQL URL (its server hosts the fresh bench database)")
    ap.add_argument("--bindings", type=int, default=2000, help="families in the lifecycle run (default 2000)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="lifecycle and peer runs; medians are reported")
    ap.add_argument("--big", type=int, default=1_000_000, help="bindings in the large sweeper run")
    ap.add_argument("--due", type=int, default=10_000, help="due timers in each sweeper run")
    ap.add_argument("--sweep-repeat", type=int, default=2,
                    help="sweeps per size (timers re-armed in between); the median is reported")
    ap.add_argument("--db-name", default="gongji_bench")
    ap.add_argument("--skip-lifecycle", action="store_true")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-dbos", action="store_true", help="run the plain-SQL peer only (DBOS takes ~60 s a run)")
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="also cProfile K lifecycles on one thread and print the top functions")
    ap.add_argument("--profile-out", help="write the cProfile stats there")
    args = ap.parse_args()

    started = time.perf_counter()
    load0 = os.getloadavg()
    url = fresh_database(database_url(args.url), args.db_name)
    settings = bench_settings(url)
    engine, db = mdb.from_settings(settings, pool_size=args.threads + 2)
    migrate.upgrade(engine)
    with db.begin() as s:
        seed.seed_regions(s)
        seed.seed_dev_platforms(s)
    policy.clear_cache()
    counter = StatementCounter(engine)
    global SERVER, WAL
    SERVER = ServerCPU(engine)
    WAL = WalMeter(engine)
    revision = code_revision()
    facts = server_facts(engine)
    durable = facts["fsync"] == "on" and facts["synchronous_commit"] == "on"
    log(f"database {sa.make_url(url).render_as_string()} — PostgreSQL {facts['server_version']}, "
        f"fsync={facts['fsync']} synchronous_commit={facts['synchronous_commit']} "
        f"shared_buffers={facts['shared_buffers']}; {os.cpu_count()} CPUs; Python {pyplatform.python_version()}")

    n, threads = args.bindings, args.threads
    gongji_runs, plain_runs, dbos_runs = [], [], []
    dbos_note = None
    peer_script = os.path.join(PEERS, "plain_sql_lifecycle.py")
    dbos_script = os.path.join(PEERS, "dbos_lifecycle.py")
    if not args.skip_lifecycle:
        offset = 0
        warm = make_families(offset, min(WARM_UP, n))
        offset += len(warm)
        upsert_persons(db, warm, threads)
        counter.listen(True)  # statements a binding, counted here only (see StatementCounter)
        stmts = run_lifecycle(db, warm, threads, counter)["stmts"]  # warm caches (compiled SQL, policy
        counter.listen(False)  # cache, pool); not reported
        with engine.connect() as c:  # planner statistics, as a live database has (autovacuum analyzes after
            c.exec_driver_sql("ANALYZE")  # a minute, longer than a run: without them the invitation's counts
            c.commit()  # query gets a generic plan that scans the whole table, ~290 µs a call)
        use_dbos = False
        if not args.skip_peers:
            use_dbos = not args.skip_dbos and dbos_available() and os.path.exists(dbos_script)
            if args.skip_dbos:
                dbos_note = "skipped (--skip-dbos)"
            elif not use_dbos:
                dbos_note = "skipped: `import dbos` fails in this interpreter (not a Gongji dependency)"
        for r in range(args.repeat):
            fams = make_families(offset, n)
            offset += n
            t0 = time.perf_counter()
            upsert_persons(db, fams, threads)
            log(f"run {r + 1}/{args.repeat}: {2 * n} persons upserted in {time.perf_counter() - t0:.1f} s (not timed)")
            settle(engine)
            res = {**run_lifecycle(db, fams, threads), "stmts": stmts}
            gongji_runs.append(res)
            log(f"run {r + 1}/{args.repeat}: gongji {n} lifecycles in {res['wall']:.2f} s = {res['all_tps']:.0f} "
                f"transitions/s (6 per binding), {res['main_tps']:.0f} main-line transitions/s (5); "
                f"client CPU {1e3 * res['cpu'] / (ALL * n):.2f} ms/transition "
                f"({1e3 * res['system'] / (ALL * n):.2f} in the kernel), "
                f"{res['stmts']:.1f} SQL statements/binding")
            if not args.skip_peers:
                settle(engine)
                p = run_peer(peer_script, url, n, threads)
                plain_runs.append(p)
                log(f"run {r + 1}/{args.repeat}: {p['line']}; client CPU {1e3 * p['cpu'] / (5 * n):.2f} "
                    "ms/transition")
                if use_dbos:
                    settle(engine)
                    d = run_peer(dbos_script, url, n, threads)
                    dbos_runs.append(d)
                    log(f"run {r + 1}/{args.repeat}: {d['line']}")
        if args.profile:
            fams = make_families(offset, args.profile)
            offset += args.profile
            upsert_persons(db, fams, threads)
            profile_lifecycle(db, fams, args.profile_out)

    sweeps = {}
    if not args.skip_sweep:
        for total in (args.due, args.big):
            log(f"sweeper: seeding {total:,} bindings ({args.due:,} due) with bulk SQL …")
            sd = seed_bulk(engine, total, args.due)
            log(f"sweeper: seeded in {sd['seconds']:.1f} s (persons {sd['persons_s']:.1f} s, insert "
                f"{sd['insert_s']:.1f} s, vacuum analyze the rest); bindings table {sd['size']}; {sd['counts']}")
            runs = []
            for r in range(args.sweep_repeat):
                if r:
                    rearm_timers(engine)
                sw = run_sweep(engine, db, args.due, counter)
                runs.append(sw)
                log(f"sweeper {r + 1}/{args.sweep_repeat}: {args.due:,} timers fired among {total:,} bindings in "
                    f"{sw['seconds']:.2f} s = {sw['tps']:.0f} timers/s (client CPU {sw['cpu']:.2f} s, "
                    f"{sw['stmts']:.1f} SQL statements/timer)")
            secs = statistics.median(r["seconds"] for r in runs)
            sweeps[total] = {"seconds": secs, "tps": args.due / secs, "cpu": statistics.median(r["cpu"] for r in runs),
                             "stmts": statistics.median(r["stmts"] for r in runs), "runs": len(runs)}

    # ------------------------------------------------------------------------------------ summary
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    durability = "durable: fsync=on, synchronous_commit=on" if durable else \
        f"fast: fsync={facts['fsync']}, synchronous_commit={facts['synchronous_commit']}"
    lines = [f"### Benchmark — bench/transitions.py ({datetime.now(timezone.utc):%Y-%m-%d})",
             "",
             f"PostgreSQL {facts['server_version'].split()[0]} "
             f"({durability}), "
             f"Python {pyplatform.python_version()}, {os.cpu_count()} CPUs, database and client on one machine; "
             f"code {revision}.",
             ""]
    if gongji_runs:
        k = len(gongji_runs)
        main_tps = med(gongji_runs, "main_tps")
        lines += [f"Lifecycle: {n:,} bindings × 6 commands, {threads} threads in-process, median of {k}:",
                  "```",
                  f"gongji          {med(gongji_runs, 'all_tps'):7.0f} transitions/s (all 6 commands)",
                  f"gongji          {main_tps:7.0f} main-line transitions/s (the peer's 5)"]
        if plain_runs:
            plain_tps = med(plain_runs, "tps")
            lines.append(f"plain SQL peer  {plain_tps:7.0f} transitions/s")
            ratio = main_tps / plain_tps
            lines.append(f"ratio gongji main-line / plain SQL = {ratio:.2f} (target ≥ 0.75: "
                         f"{'met' if ratio >= 0.75 else 'NOT met'})")
            # each Gongji run against the peer's run right after it: the spread says what a difference
            # between two benchmark runs can mean (identical code spans 0.51-0.66 here, 2026-11-25)
            paired = [g["main_tps"] / p["tps"] for g, p in zip(gongji_runs, plain_runs)]
            lines.append("ratio per run   " + ", ".join(f"{x:.2f}" for x in paired)
                         + f" (spread {max(paired) - min(paired):.2f})")
        if dbos_runs:
            lines.append(f"DBOS peer       {med(dbos_runs, 'tps'):7.0f} transitions/s")
        elif dbos_note:
            lines.append(f"DBOS peer       {dbos_note}")
        lines.append(f"client CPU      gongji {1e3 * med(gongji_runs, 'cpu') / (ALL * n):.2f} ms/transition"
                     + (f", plain SQL {1e3 * med(plain_runs, 'cpu') / (5 * n):.2f} ms/transition"
                        if plain_runs else ""))
        if gongji_runs[0]["server"] is not None:
            lines.append(f"server CPU      gongji {1e3 * med(gongji_runs, 'server') / (ALL * n):.2f} ms/transition"
                         + (f", plain SQL {1e3 * med(plain_runs, 'server') / (5 * n):.2f} ms/transition"
                            if plain_runs else "") + " (PostgreSQL: postmaster and backends)")
        if gongji_runs[0]["wal"] is not None:
            def per_binding(runs, n_):
                recs, fpi, size = (statistics.median(r["wal"][i] for r in runs) / n_ for i in range(3))
                return f"{size / 1024:.1f} KiB ({recs:.0f} records, {fpi:.2f} full pages)"
            lines.append(f"WAL per binding gongji {per_binding(gongji_runs, n)}"
                         + (f", plain SQL {per_binding(plain_runs, n)}" if plain_runs and plain_runs[0]["wal"] else ""))
        lines.append(f"SQL statements  gongji {med(gongji_runs, 'stmts'):.1f} per binding (6 transactions), "
                     "plain SQL 14 per binding (5 transactions)")
        lines.append("")
        lines.append("latency (ms)                 p50      p99")
        for c in COMMANDS:
            p50 = statistics.median(r["lat"][c][0] for r in gongji_runs) * 1e3
            p99 = statistics.median(r["lat"][c][1] for r in gongji_runs) * 1e3
            lines.append(f"{c:26s} {p50:7.2f}  {p99:7.2f}")
        lines.append("```")
        lines.append("")
    if sweeps:
        small, big = sweeps.get(args.due), sweeps.get(args.big)
        lines += [f"Timer sweeper: sweep_all(batch=500) firing {args.due:,} due `expire` timers, "
                  f"median of {args.sweep_repeat}:", "```"]
        for total, sw in sweeps.items():
            lines.append(f"among {total:>9,} bindings  {sw['seconds']:6.2f} s  {sw['tps']:6.0f} timers/s  "
                         f"(client CPU {1e3 * sw['cpu'] / args.due:.2f} ms/timer, "
                         f"{sw['stmts']:.1f} SQL statements/timer)")
        if small and big:
            lines.append(f"time ratio {args.big:,} / {args.due:,} bindings = {big['seconds'] / small['seconds']:.2f} "
                         "(flat = 1.00)")
        lines.append("```")
    load = os.getloadavg()
    lines.append(f"(total benchmark run time {time.perf_counter() - started:.0f} s; load average at the start "
                 f"{load0[0]:.1f}, at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f})")
    print("\n" + "=" * 100 + "\n" + "\n".join(lines) + "\n" + "=" * 100, flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
