"""A million bindings for the operator dashboard's read side, seeded server-side, then every dashboard query
EXPLAIN ANALYZEd and timed (stuck.counts, overview.overview, finder.find for each filter an operator uses).

usage: python bench/dashboard_seed.py [DATABASE_URL] [--bindings 1000000] [--db-name gongji_dashboard]
                                      [--repeat 5] [--no-seed] [--plans]

The URL names the server only (argv[1], else GONGJI_BENCH_DATABASE_URL, else GONGJI_TEST_DATABASE_URL, which
`scripts/services.sh` exports): a fresh database `--db-name` is dropped and created next to it.

What `seed(engine, n)` writes (INSERT … SELECT over generate_series, no row crosses the wire):
- n/2 grantors and n beneficiaries in 320100/320500 (province 32) and 650100/652900 (65), 40/30/20/10 %;
  one binding in 20 crosses to the other region of its province. ID numbers and names are placeholder
  ciphertext (the dashboard never decrypts); the masked forms are realistic (`320***********123X`, `张*`).
- bindings created over two years in a realistic mix: authorized 35 %, unbound 25 %, expired 13 %,
  accepted 10 %, cancelled 5 %, declined 4 %, rejected 4 %, verification_failed 3 %, invited 0.8 %,
  face_verified 0.2 % (pending ones younger than their 7-day TTL, with their timer); each with its history
  (1–5 transitions), a face-verification attempt where its path had one, its latest event in the outbox,
  delivered to the national platform and its province's (two deliveries, two platform_sync rows).
- 3 in 1000 bindings stuck for each reason (3000 each at 1M): an overdue timer, a pending binding with no
  timer for weeks, a provider request failed or stale, a dead delivery (16 failed tries), a failing
  delivery (3–8 tries), a province that never got the latest version, an outbox event a worker failed on.
Only the failed delivery tries are seeded (the successful ones would add rows no dashboard query reads).

Measured at 1M on 2 shared cores (PostgreSQL 15, shared_buffers 256MB, warm OS cache; seeding took 2 min):
every list page 5–12 ms (stuck=sync_behind 47 ms), the live overview 24 ms with its snapshot taken, the
snapshot itself (region × state over every binding 118 ms, sync_behind over 30k changed in 7 days 146 ms)
once a minute per process; stuck.counts fresh 150 ms, of which sync_behind 140 ms."""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

_HERE = os.path.dirname(os.path.abspath(__file__))  # bench/transitions.py would shadow the library
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import sqlalchemy as sa  # noqa: E402

from models import crypto, migrate, seed as model_seed  # noqa: E402
from models import db as mdb  # noqa: E402

sys.path.append(_HERE)
STUCK_PER_1000 = 3  # bindings per thousand stuck for each of the 7 reasons
HOOKS = "http://127.0.0.1:9/hooks/"  # push platforms need a URL (sync_behind); nothing is sent

_STATE = """CASE WHEN k.stuck = 0 OR k.stuck = 2 THEN 'invited'
     WHEN k.stuck = 1 THEN CASE WHEN k.j % 2 = 0 THEN 'invited' ELSE 'face_verified' END
     WHEN k.stuck BETWEEN 3 AND 5 THEN 'authorized'
     WHEN k.b < 350 THEN 'authorized' WHEN k.b < 450 THEN 'accepted' WHEN k.b < 700 THEN 'unbound'
     WHEN k.b < 830 THEN 'expired' WHEN k.b < 838 THEN 'invited' WHEN k.b < 840 THEN 'face_verified'
     WHEN k.b < 880 THEN 'declined' WHEN k.b < 930 THEN 'cancelled' WHEN k.b < 960 THEN 'verification_failed'
     ELSE 'rejected' END"""

# one row per binding: its kind, times, version and regions (the other tables are derived from it)
_PLAN = f"""
CREATE TEMP TABLE seed_b AS
SELECT j, state, stuck, g, region, bregion, guardian, created, updated,
       CASE WHEN state = 'invited' THEN CASE WHEN stuck = 2 THEN 2 ELSE 1 END
            WHEN state = 'face_verified' THEN 3 WHEN state = 'accepted' AND guardian THEN 1
            WHEN state = 'accepted' THEN 4 WHEN state IN ('authorized', 'unbound') THEN 5
            WHEN state = 'verification_failed' THEN 3 ELSE 2 END AS version
FROM (SELECT k.j, k.stuck, k.g, {_STATE} AS state, k.guardian,
             CASE k.g % 10 WHEN 0 THEN '320100' WHEN 1 THEN '320100' WHEN 2 THEN '320100' WHEN 3 THEN '320100'
                           WHEN 4 THEN '320500' WHEN 5 THEN '320500' WHEN 6 THEN '320500'
                           WHEN 7 THEN '650100' WHEN 8 THEN '650100' ELSE '652900' END AS region,
             k.h1, k.h2
      FROM (SELECT j, j / 2 AS g, mod(abs(hashint8(j)::bigint), 1000) AS b,
                   CASE WHEN j % 1000 < 7 * {STUCK_PER_1000} THEN (j % 1000) / {STUCK_PER_1000} END AS stuck,
                   mod(abs(hashint8(j + 7777777)::bigint), 10) = 0 AS guardian,
                   mod(abs(hashint8(j + 1234567)::bigint), 1000000) / 1000000.0 AS h1,
                   mod(abs(hashint8(j + 7654321)::bigint), 1000000) / 1000000.0 AS h2
            FROM generate_series(0, :n - 1) AS j) AS k) AS s
CROSS JOIN LATERAL (SELECT
    CASE WHEN j % 20 = 7 THEN CASE region WHEN '320100' THEN '320500' WHEN '320500' THEN '320100'
                                          WHEN '650100' THEN '652900' ELSE '650100' END
         ELSE region END AS bregion,
    CASE WHEN stuck = 0 THEN :now - make_interval(days => 7, secs => 3600 + h1 * 80000)
         WHEN stuck = 1 THEN :now - make_interval(days => 8 + (h1 * 20)::int)
         WHEN stuck = 2 THEN :now - make_interval(days => 2, secs => h1 * 86400)
         WHEN stuck = 3 THEN :now - make_interval(days => 4 + (h1 * 20)::int)
         WHEN stuck = 4 THEN :now - make_interval(days => 1, secs => h1 * 86400)
         WHEN stuck = 5 THEN :now - make_interval(days => 3, secs => h1 * 86400)
         WHEN state IN ('invited', 'face_verified') THEN :now - make_interval(secs => 600 + h1 * 590000)
         ELSE :now - make_interval(days => 7, secs => h1 * 730 * 86400) END AS created) AS c
CROSS JOIN LATERAL (SELECT
    CASE WHEN stuck = 0 THEN created + interval '1 hour'
         WHEN stuck = 1 THEN created
         WHEN stuck = 2 THEN :now - make_interval(secs => 60 + h2 * 480)
         WHEN stuck = 3 THEN created + interval '1 day'
         WHEN stuck = 4 THEN :now - make_interval(secs => 3600 + h2 * 60000)
         WHEN stuck = 5 THEN :now - make_interval(days => 1, secs => h2 * 86400)
         WHEN state IN ('invited', 'face_verified') THEN LEAST(created + make_interval(secs => h2 * 3600),
                                                               :now - interval '1 minute')
         ELSE created + (:now - interval '1 minute' - created) * (h2 * h2 * h2 * h2) END
    AS updated) AS u;
ALTER TABLE seed_b ADD PRIMARY KEY (j);
"""

_PERSONS = """
INSERT INTO persons (id, id_number, id_number_hash, id_number_masked, name, name_masked, insurance_type,
                     insurance_status, region_code, real_name_verified, balance_fen, commitment_version,
                     deceased, created_at, updated_at)
SELECT 'psn_seed' || lpad(p.i::text, 10, '0'), 'seed:id:' || p.i, encode(sha256(('seed-' || p.i)::bytea), 'hex'),
       substr(p.region, 1, 3) || '***********' || lpad((p.i % 1000)::text, 3, '0')
           || CASE WHEN p.i % 11 = 10 THEN 'X' ELSE (p.i % 10)::text END,
       'seed:name:' || p.i,
       substr('赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张', p.i % 24 + 1, 1)
           || CASE WHEN p.i % 3 = 0 THEN '*' ELSE '**' END,
       p.kind, 'active', p.region, true, 100000 + p.i % 900000,
       CASE WHEN p.region LIKE '32%' THEN 'JS-2024-01' ELSE 'XJ-2023-02' END, false,
       :now - interval '800 days', :now - interval '800 days'
FROM (SELECT g AS i, region, 'employee' AS kind FROM seed_b WHERE j % 2 = 0
      UNION ALL
      SELECT :grantors + j, bregion, 'resident' FROM seed_b) AS p
"""

_BINDINGS = """
INSERT INTO bindings (id, grantor_id, beneficiary_id, relationship, state, verification_method, channel,
                      platform_id, authorized_amount_fen, version, province_code, grantor_region, beneficiary_region,
                      policy_id, deduction_rank, failed_verifications, expires_at, deadline_at, deadline_event,
                      created_at, updated_at, ended_at, end_event)
SELECT 'bnd_seed' || lpad(j::text, 10, '0'), 'psn_seed' || lpad(g::text, 10, '0'),
       'psn_seed' || lpad((:grantors + j)::text, 10, '0'),
       (ARRAY['spouse', 'child', 'parent', 'spouse', 'child'])[1 + j % 5], state,
       CASE WHEN guardian AND state = 'accepted' THEN 'guardian' ELSE 'face' END,
       CASE WHEN j % 4 = 0 THEN 'counter' ELSE 'app' END,
       CASE WHEN j % 3 = 0 THEN 'national' WHEN region LIKE '32%' THEN 'jiangsu' ELSE 'xinjiang' END,
       CASE WHEN state = 'authorized' AND j % 2 = 0 THEN 50000 END, version, substr(region, 1, 2), region, bregion,
       (SELECT id FROM region_policies WHERE region_code = region ORDER BY version DESC LIMIT 1), NULL,
       CASE WHEN state = 'verification_failed' THEN 3 ELSE 0 END,
       CASE WHEN state IN ('invited', 'face_verified') AND stuck IS DISTINCT FROM 1
            THEN created + interval '7 days' END,
       CASE WHEN stuck = 2 THEN updated + interval '10 minutes'
            WHEN state IN ('invited', 'face_verified') AND stuck IS DISTINCT FROM 1
            THEN created + interval '7 days' END,
       CASE WHEN stuck = 2 THEN 'verification_timeout'
            WHEN state IN ('invited', 'face_verified') AND stuck IS DISTINCT FROM 1 THEN 'expire' END,
       created, updated,
       CASE WHEN state NOT IN ('invited', 'face_verified', 'accepted', 'authorized') THEN updated END,
       CASE state WHEN 'unbound' THEN 'unbind' WHEN 'expired' THEN 'expire' WHEN 'declined' THEN 'decline'
                  WHEN 'cancelled' THEN 'cancel' WHEN 'rejected' THEN 'reject'
                  WHEN 'verification_failed' THEN 'verification_failed' END
FROM seed_b
"""

# the path of events behind each seeded state: (path, seq, event, from, to)
_PATHS = [
    ("invited", ["invite", "start_verification"], [None, "invited"], ["invited", "invited"]),
    ("face_verified", ["invite", "start_verification", "verification_passed"]),
    ("accepted", ["invite", "start_verification", "verification_passed", "accept"]),
    ("accepted_g", ["invite"], [None], ["accepted"]),
    ("authorized", ["invite", "start_verification", "verification_passed", "accept", "authorize"]),
    ("unbound", ["invite", "start_verification", "verification_passed", "accept", "unbind"]),
    ("expired", ["invite", "expire"]), ("declined", ["invite", "decline"]), ("cancelled", ["invite", "cancel"]),
    ("rejected", ["invite", "reject"]),
    ("verification_failed", ["invite", "start_verification", "verification_failed"]),
]
_AFTER = {"invite": "invited", "start_verification": "invited", "verification_passed": "face_verified",
          "accept": "accepted", "authorize": "authorized", "unbind": "unbound", "expire": "expired",
          "decline": "declined", "cancel": "cancelled", "reject": "rejected",
          "verification_failed": "verification_failed"}


def _path_values() -> str:
    out = []
    for path, events, *fixed in _PATHS:
        before = None
        for seq, event in enumerate(events, start=1):
            after = fixed[1][seq - 1] if fixed else _AFTER[event]
            frm = fixed[0][seq - 1] if fixed else before
            out.append(f"('{path}', {seq}, '{event}', {repr(frm) if frm else 'NULL'}, '{after}')")
            before = after
    return ", ".join(out).replace('"', "'")


_HISTORY = f"""
INSERT INTO binding_transitions (binding_id, seq, from_state, to_state, event, actor_kind, actor_id, channel, at)
SELECT 'bnd_seed' || lpad(b.j::text, 10, '0'), p.seq, p.from_state, p.to_state, p.event,
       CASE WHEN p.event IN ('expire', 'reject') THEN 'system' WHEN p.event LIKE 'verification_%' THEN 'verifier'
            ELSE 'person' END, NULL, 'app',
       CASE WHEN b.version = 1 THEN b.updated
            ELSE b.created + (b.updated - b.created) * (p.seq - 1) / (b.version - 1) END
FROM seed_b b
JOIN (VALUES {_path_values()}) AS p(path, seq, event, from_state, to_state)
  ON p.path = CASE WHEN b.state = 'accepted' AND b.guardian THEN 'accepted_g' ELSE b.state END
 AND p.seq <= b.version
"""

_ATTEMPTS = """
INSERT INTO verification_attempts (id, binding_id, attempt_no, status, opened_at, deadline_at, completed_at,
                                   reason, verifier_id, provider_status, provider_session_id, provider_requests,
                                   provider_error)
SELECT 'ver_seed' || lpad(j::text, 10, '0'), 'bnd_seed' || lpad(j::text, 10, '0'), 1,
       CASE WHEN stuck = 2 THEN 'pending' WHEN state = 'verification_failed' THEN 'failed' ELSE 'passed' END,
       opened, opened + interval '10 minutes',
       CASE WHEN stuck = 2 THEN NULL ELSE opened + interval '40 seconds' END,
       CASE WHEN state = 'verification_failed' THEN 'face_mismatch' END,
       CASE WHEN stuck = 2 THEN NULL ELSE 'facecheck' END,
       CASE WHEN stuck = 2 AND j % 2 = 0 THEN 'error' WHEN stuck = 2 THEN 'requested' ELSE 'opened' END,
       CASE WHEN stuck = 2 THEN NULL ELSE 'sess_' || j END, CASE WHEN stuck = 2 THEN 1 + j % 4 ELSE 1 END,
       CASE WHEN stuck = 2 AND j % 2 = 0 THEN 'HTTP 503 from the provider' END
FROM (SELECT *, CASE WHEN stuck = 2 THEN updated
                     ELSE created + (updated - created) / GREATEST(version - 1, 1) END AS opened
      FROM seed_b WHERE stuck = 2 OR (version >= 3 AND NOT (state = 'accepted' AND guardian))) AS s
"""

# the latest event of each binding (id = j + 1), processed; worker_error bindings get one more, failed
_OUTBOX = """
INSERT INTO outbox (id, topic, binding_id, binding_version, payload, created_at, relayed_at, processed_at,
                    fanned_out_at, attempts, last_error)
SELECT j + 1, 'binding.' || state, 'bnd_seed' || lpad(j::text, 10, '0'), version, '{}'::json, updated, updated,
       updated, updated, 1, NULL FROM seed_b
UNION ALL
SELECT :n + j + 1, 'binding.verification_requested', 'bnd_seed' || lpad(j::text, 10, '0'), version, '{}'::json,
       :now - interval '2 hours', :now - interval '2 hours', NULL, NULL, 3,
       'OperationalError: could not connect to server 1.2.3.4 while handling 320102198001011234'
FROM seed_b WHERE stuck = 6;
SELECT setval(pg_get_serial_sequence('outbox', 'id'), 2 * :n + 1);
"""

# national and the grantor's province: delivered, except the stuck ones' province delivery
_DELIVERIES = """
INSERT INTO deliveries (outbox_id, platform_id, event_id, topic, binding_id, binding_version, status, attempts,
                        next_attempt_at, last_status_code, last_error, created_at, delivered_at, dead_at)
SELECT j + 1, p.id, 'evt_seed' || j, 'binding.' || state, 'bnd_seed' || lpad(j::text, 10, '0'), version,
       CASE WHEN p.id = 'national' THEN 'delivered' WHEN stuck = 3 THEN 'dead' WHEN stuck = 4 THEN 'failing'
            ELSE 'delivered' END,
       CASE WHEN p.id = 'national' THEN 1 WHEN stuck = 3 THEN 16 WHEN stuck = 4 THEN 3 + j % 6 ELSE 1 END,
       CASE WHEN p.id <> 'national' AND stuck = 4 THEN :now + interval '10 minutes' END,
       CASE WHEN p.id <> 'national' AND stuck IN (3, 4) THEN 503 ELSE 200 END,
       CASE WHEN p.id <> 'national' AND stuck IN (3, 4) THEN 'HTTP 503' END,
       updated,
       CASE WHEN p.id = 'national' OR stuck IS NULL OR stuck NOT IN (3, 4) THEN updated + interval '1 second' END,
       CASE WHEN p.id <> 'national' AND stuck = 3 THEN updated + interval '3 days' END
FROM seed_b CROSS JOIN LATERAL (VALUES ('national'), (CASE WHEN region LIKE '32%' THEN 'jiangsu' ELSE 'xinjiang' END))
     AS p(id)
WHERE stuck IS DISTINCT FROM 5 OR p.id = 'national'
"""

_SYNC = """
INSERT INTO platform_sync (platform_id, binding_id, acked_version, acked_at)
SELECT p.id, 'bnd_seed' || lpad(j::text, 10, '0'),
       CASE WHEN p.id <> 'national' AND stuck IN (3, 4, 5) THEN version - 1 ELSE version END, updated
FROM seed_b CROSS JOIN LATERAL (VALUES ('national'), (CASE WHEN region LIKE '32%' THEN 'jiangsu' ELSE 'xinjiang' END))
     AS p(id)
WHERE version > 1 OR p.id = 'national' OR stuck IS NULL OR stuck NOT IN (3, 4, 5)
"""

# failed tries of the dead and failing deliveries, spread from the change to now (or the dead letter)
_TRIES = """
INSERT INTO delivery_attempts (delivery_id, attempt_no, at, status_code, error, duration_ms)
SELECT d.id, n, d.created_at + (COALESCE(d.dead_at, :now) - d.created_at) * n / (d.attempts + 1), 503, 'HTTP 503', 40
FROM deliveries d CROSS JOIN LATERAL generate_series(1, d.attempts) AS n
WHERE d.status IN ('dead', 'failing')
"""


def seed(engine: sa.Engine, n: int = 1_000_000, *, now: datetime | None = None, log=print) -> dict:
    """Migrate, seed regions and platforms, then fill `n` bindings (see the module docstring); seconds per step."""
    now = now or datetime.now(timezone.utc)
    migrate.upgrade(engine)
    db = mdb.make_sessionmaker(engine)
    with db.begin() as s:
        model_seed.seed_regions(s)
        model_seed.seed_dev_platforms(s)
    with engine.begin() as c:
        c.exec_driver_sql(f"UPDATE platforms SET webhook_url = '{HOOKS}' || id WHERE kind <> 'verifier'")
    params = {"n": n, "now": now, "grantors": (n + 1) // 2}
    steps = {}
    with engine.begin() as c:
        c.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        c.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        for name, sql in (("plan", _PLAN), ("persons", _PERSONS), ("bindings", _BINDINGS), ("history", _HISTORY),
                          ("attempts", _ATTEMPTS), ("outbox", _OUTBOX), ("deliveries", _DELIVERIES),
                          ("sync", _SYNC), ("tries", _TRIES)):
            t0 = time.perf_counter()
            for statement in filter(str.strip, sql.split(";\n")):
                c.execute(sa.text(statement), params)
            steps[name] = round(time.perf_counter() - t0, 1)
            log(f"  {name}: {steps[name]} s")
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM (ANALYZE)")
    steps["vacuum"] = round(time.perf_counter() - t0, 1)
    return steps


# ------------------------------------------------------------------------------------------- measuring

class Capture:
    """The SQL statements (with their parameters) an engine sends while `on`."""

    def __init__(self, engine):
        self.on, self.statements = False, []
        sa.event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, parameters, context, executemany):
        if self.on:
            self.statements.append((statement, parameters))

    def run(self, fn):
        self.statements, self.on = [], True
        try:
            fn()
        finally:
            self.on = False
        return list(self.statements)


def explain(engine, statement: str, parameters) -> tuple[float, float, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of one captured statement: planning ms, execution ms, the plan."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET LOCAL jit = off")  # as the dashboard's reads do (stuck.tune)
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = [r[0] for r in cur.fetchall()]
        raw.rollback()
    finally:
        raw.close()
    ms = {k: float(re.search(rf"{k} Time: ([0-9.]+)", "\n".join(plan)).group(1)) for k in ("Planning", "Execution")}
    return ms["Planning"], ms["Execution"], plan


def scenarios(db, now: datetime, person_number: str, engine) -> list[tuple[str, object]]:
    from workflows import finder, overview, stuck

    first = finder.find(db, now=now)["next"]
    authorized = finder.find(db, state="authorized", now=now)["next"]
    with engine.connect() as c:
        dead = c.exec_driver_sql("SELECT binding_id FROM deliveries WHERE status = 'dead' LIMIT 1").scalar()
    found = finder.find(db, id_number=person_number, now=now)["items"]
    assert found and person_number not in str(found), found  # two bindings at 1M
    cases = [("stuck.counts (all 7, fresh)", lambda: stuck.counts(db, now)),
             ("overview, everything fresh (explicit now)", lambda: overview.overview(db, now)),
             ("overview, live (snapshot taken)", lambda: overview.overview(db)),
             ("overview snapshot refresh (region x state, sync_behind)",
              lambda: (overview._cells(db, now), overview._behind(db, now))),
             ("find: no filter", lambda: finder.find(db, now=now)),
             ("find: no filter, page 2", lambda: finder.find(db, after=first, now=now)),
             ("find: state=authorized", lambda: finder.find(db, state="authorized", now=now)),
             ("find: state=authorized, page 2", lambda: finder.find(db, state="authorized", after=authorized, now=now)),
             ("find: state=face_verified", lambda: finder.find(db, state="face_verified", now=now)),
             ("find: region=652900", lambda: finder.find(db, region="652900", now=now)),
             ("find: state=invited region=650100", lambda: finder.find(db, state="invited", region="650100", now=now)),
             ("find: platform=xinjiang", lambda: finder.find(db, platform="xinjiang", now=now)),
             ("find: platform=jiangsu state=accepted", lambda: finder.find(db, platform="jiangsu", state="accepted",
                                                                           now=now)),
             ("find: older_than 30 d", lambda: finder.find(db, older_than_s=30 * 86400, now=now)),
             ("find: region=320500 older_than 30 d", lambda: finder.find(db, region="320500", older_than_s=2592000,
                                                                         now=now)),
             ("find: id_number", lambda: finder.find(db, id_number=person_number, now=now))]
    cases += [(f"find: stuck={r}", (lambda r=r: finder.find(db, stuck=r, now=now))) for r in stuck.REASONS]
    cases += [("find: stuck=delivery_dead state=authorized region=320100",
               lambda: finder.find(db, stuck="delivery_dead", state="authorized", region="320100", now=now)),
              ("count: state=authorized", lambda: finder.count(db, state="authorized", now=now)),
              ("count: region=320100", lambda: finder.count(db, region="320100", now=now)),
              ("count: stuck=sync_behind", lambda: finder.count(db, stuck="sync_behind", now=now)),
              ("stuck.of_binding (dead delivery)", lambda: _of_binding(db, dead, now))]
    return cases


def _of_binding(db, binding_id, now):
    from workflows import stuck
    with db() as s:
        return stuck.of_binding(s, binding_id, now)


def a_person(engine) -> str:
    """Give one seeded person the look-up hash of a real ID number (the seed's hashes are placeholders): at 1M
    one with two bindings, in a smaller seed (tests/e2e/test_benchmarks_run.py) the first binding's
    beneficiary."""
    from workflows.idnumbers import with_check_digit
    number = with_check_digit("32010219600101" + "777")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE persons SET id_number_hash = :h WHERE id = coalesce("
                          "(SELECT id FROM persons WHERE id = 'psn_seed0000006172'),"
                          " (SELECT beneficiary_id FROM bindings ORDER BY id LIMIT 1))"),
                  {"h": crypto.lookup_hash(number)})
    return number


def measure(engine, now: datetime, *, repeat: int = 5, plans: bool = False) -> None:
    db = mdb.make_sessionmaker(engine)
    capture = Capture(engine)
    with engine.connect() as c:
        facts = c.exec_driver_sql("SELECT count(*), count(*) FILTER (WHERE updated_at >= now() - interval '7 days'),"
                                  " pg_size_pretty(pg_total_relation_size('bindings')) FROM bindings").one()
    print(f"bindings: {facts[0]:,} ({facts[1]:,} changed in the last 7 days), bindings table + indexes {facts[2]}")
    print(f"{'call':58} {'wall ms':>8} {'stmts':>5} {'plan ms':>8} {'exec ms':>8} {'slowest':>8}")
    for name, fn in scenarios(db, now, a_person(engine), engine):
        fn()  # warm the caches (platforms, compiled statements, buffers)
        walls = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            walls.append((time.perf_counter() - t0) * 1000)
        explained = [explain(engine, st, params) for st, params in capture.run(fn) if not st.startswith("SET ")]
        plan_ms = sum(e[0] for e in explained)
        exec_ms = [e[1] for e in explained]
        print(f"{name:58} {statistics.median(walls):8.1f} {len(explained):5d} {plan_ms:8.1f} {sum(exec_ms):8.1f} "
              f"{max(exec_ms, default=0):8.1f}", flush=True)
        if plans:
            for _, _, plan in explained:
                print("    " + "\n    ".join(plan))


def bench_key(label: str) -> str:
    """A fixed base64 key per label, so a server started for the benchmark uses the seed's keys."""
    return base64.b64encode(hashlib.sha256(b"gongji-dashboard-bench:" + label.encode()).digest()).decode()


def bench_keys() -> None:
    crypto.configure({"bench1": bench_key("pii")}, "bench1", bench_key("lookup"))


def main() -> None:
    from common import database_url, fresh_database

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?")
    ap.add_argument("--bindings", type=int, default=1_000_000)
    ap.add_argument("--db-name", default="gongji_dashboard")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each query (median reported)")
    ap.add_argument("--no-seed", action="store_true", help="measure the database seeded by an earlier run")
    ap.add_argument("--plans", action="store_true", help="print every EXPLAIN ANALYZE plan")
    args = ap.parse_args()
    bench_keys()
    server = database_url(args.url)
    if args.no_seed:
        url = sa.make_url(server).set(drivername="postgresql+psycopg", database=args.db_name)
    else:
        url = fresh_database(server, args.db_name)
    engine = mdb.make_engine(url, pool_size=4)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if not args.no_seed:
        t0 = time.perf_counter()
        print(f"seeding {args.bindings:,} bindings into {args.db_name}")
        steps = seed(engine, args.bindings, now=now)
        print(f"seeded in {time.perf_counter() - t0:.0f} s: {steps}")
    else:
        with engine.connect() as c:
            now = c.exec_driver_sql("SELECT max(updated_at) FROM bindings").scalar() + timedelta(minutes=1)
    measure(engine, now, repeat=args.repeat, plans=args.plans)
    engine.dispose()


if __name__ == "__main__":
    main()
