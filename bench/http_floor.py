"""The floor for the whole lifecycle over HTTP: the least this stack does for a transition that a platform
asks for over HTTP and hears about by a signed webhook. `bench/webhooks.py` runs it after Gongji's
lifecycle, with the same families at a time, the same gunicorn settings and the same fake platform.

Per transition: one HTTP call to Flask under gunicorn; one statement in autocommit on a connection kept by
the thread, prepared (a CTE: the binding's UPDATE … WHERE state = from, its history row, its outbox row
with the event JSON built by PostgreSQL); then one deliverer process (4 threads, each for its own share of
the bindings, so a binding's events leave in id order) takes up to 100 undelivered rows FOR UPDATE SKIP
LOCKED, POSTs each (urllib3, as Gongji's worker), Standard Webhooks-signed, to the fake national platform
(which verifies it and answers 2xx), and marks them delivered in one UPDATE.
A family: invite, start verification, the provider's result (posted by the driver itself, unsigned, after
the fake provider's latency), then, as Gongji's driver does, it waits for `binding.face_verified` to reach
the fake national platform before it accepts; authorize, unbind: six calls, six transitions (start
verification is invited → invited, as in Gongji).
Nothing else: no API key, no Idempotency-Key, no rules or policy, no person rows, no encryption, no
verification attempt or face session, no retries or attempts recorded, no Redis or dramatiq (the
deliverer polls every 5 ms when idle), no metrics. It says how far from 700 transitions/s this machine
is before Gongji does any of what the issues ask beyond moving the state and telling the platform.

Serve: gunicorn … http_floor:app with FLOOR_DATABASE_URL (libpq form).
Deliver: python http_floor.py deliver DATABASE_URL TARGET_URL WHSEC_SECRET"""
from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import psycopg
from flask import Flask, abort

app = Flask(__name__)
_local = threading.local()
SCHEMA = ("create table if not exists floor_bindings(id text primary key, state text not null,"
          " version int not null)",
          "create table if not exists floor_history(id bigserial primary key, binding_id text not null,"
          " from_state text, to_state text not null, at timestamptz not null default now())",
          "create table if not exists floor_outbox(id bigserial primary key, binding_id text not null,"
          " payload text not null, delivered_at timestamptz)",
          "create index if not exists floor_outbox_pending on floor_outbox(id) where delivered_at is null")
EVENT = ("json_build_object('type', %(type)s::text, 'id', %(evt)s::text, 'data', json_build_object('binding',"
         " json_build_object('id', id, 'state', state, 'version', version)))::text")
INVITE = ("with b as (insert into floor_bindings(id, state, version) values (%(id)s, 'invited', 1)"
          " returning id, state, version),"
          " h as (insert into floor_history(binding_id, to_state) select id, state from b)"
          f" insert into floor_outbox(binding_id, payload) select id, {EVENT} from b returning binding_id")
STEP = ("with b as (update floor_bindings set state = %(to)s, version = version + 1"
        " where id = %(id)s and state = %(from)s returning id, state, version),"
        " h as (insert into floor_history(binding_id, from_state, to_state) select id, %(from)s, state from b)"
        f" insert into floor_outbox(binding_id, payload) select id, {EVENT} from b returning binding_id")
STEPS = {"start_verification": ("invited", "invited", "binding.verification_started"),
         "verification": ("invited", "face_verified", "binding.face_verified"),
         "accept": ("face_verified", "accepted", "binding.accepted"),
         "authorize": ("accepted", "authorized", "binding.authorized"),
         "unbind": ("authorized", "unbound", "binding.unbound")}


def create_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)


def _conn():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
    return conn


@app.post("/bindings")
def invite():
    bid = f"bnd_{uuid.uuid4().hex}"
    _conn().execute(INVITE, {"id": bid, "type": "binding.invited", "evt": f"evt_{uuid.uuid4().hex}"},
                    prepare=True)
    return {"id": bid, "state": "invited"}, 201


@app.post("/bindings/<bid>/<step>")
def step(bid: str, step: str):
    if step not in STEPS:
        abort(404)
    frm, to, event = STEPS[step]
    row = _conn().execute(STEP, {"id": bid, "from": frm, "to": to, "type": event,
                                 "evt": f"evt_{uuid.uuid4().hex}"}, prepare=True).fetchone()
    if row is None:
        return {"code": "illegal_transition"}, 409
    return {"id": bid, "state": to}, 200


@app.get("/")
def ready():
    return {"ok": True}


def deliver_forever(url: str, target: str, secret: str, threads: int = 4) -> None:
    """`threads` threads, thread k taking the bindings whose hashtext(id) mod `threads` is k, so each
    binding's events leave in id order from one thread."""
    def run(k: int) -> None:
        from datetime import datetime, timezone  # noqa: PLC0415 - only the deliverer needs these

        import urllib3  # noqa: PLC0415 - what Gongji's worker sends with (workers/outbound.py)
        from standardwebhooks.webhooks import Webhook  # noqa: PLC0415

        signer, http = Webhook(secret), urllib3.PoolManager(maxsize=2)
        with psycopg.connect(url) as conn:
            while True:
                with conn.transaction():
                    rows = conn.execute(
                        "select id, payload from floor_outbox where delivered_at is null"
                        " and abs(hashtext(binding_id)) %% %s = %s order by id limit 100 for update skip locked",
                        (threads, k), prepare=True).fetchall()
                    done = []
                    for oid, body in rows:
                        msg_id, at = f"msg_{oid}", datetime.now(timezone.utc)
                        answer = http.request("POST", target, body=body.encode(), timeout=10, headers={
                            "webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
                            "webhook-signature": signer.sign(msg_id, at, body),
                            "content-type": "application/json"})
                        if answer.status >= 300:
                            break  # in order: the rest waits for the next pass
                        done.append(oid)
                    if done:
                        conn.execute("update floor_outbox set delivered_at = now() where id = any(%s)", [done],
                                     prepare=True)
                if not rows:
                    time.sleep(0.005)

    workers = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def drive(base: str, families: int, concurrency: int, *, events, latency_s: float) -> tuple[list[float], int]:
    """`families` lifecycles, `concurrency` at a time (a closed loop, as Gongji's driver); each call's
    latency in ms, and the calls that did not answer 2xx. `events` is the fake platform the deliverer sends
    to (its `watch`), `latency_s` the fake face provider's latency in Gongji's run."""
    import queue  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    import requests  # noqa: PLC0415

    latencies: list[float] = []
    failed = [0]
    sessions = threading.local()

    def call(http, url):
        t0 = time.perf_counter()
        answer = http.post(url, timeout=30)
        latencies.append(1000 * (time.perf_counter() - t0))
        if answer.status_code >= 300:
            failed[0] += 1
            raise RuntimeError(f"{url}: {answer.status_code}")
        return answer.json()

    def family(_):
        http = getattr(sessions, "http", None) or requests.Session()
        sessions.http = http
        bid = call(http, f"{base}/bindings")["id"]
        heard = events.watch(bid)
        try:
            call(http, f"{base}/bindings/{bid}/start_verification")
            time.sleep(latency_s)  # the provider takes its time before it calls back
            call(http, f"{base}/bindings/{bid}/verification")
            while heard.get(timeout=30) != "binding.face_verified":  # queue.Empty: the event never came
                pass
        except queue.Empty:
            failed[0] += 1
            raise RuntimeError(f"{bid}: binding.face_verified never reached the platform") from None
        finally:
            events.unwatch(bid)
        for name in ("accept", "authorize", "unbind"):
            call(http, f"{base}/bindings/{bid}/{name}")

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(family, range(families)):
            pass
    return latencies, failed[0]


if __name__ == "__main__" and sys.argv[1:2] == ["deliver"]:
    deliver_forever(*sys.argv[2:5])
