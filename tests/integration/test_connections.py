"""One pooled connection per thread at a time, on the worker's paths.

A thread that checks out a second connection while it holds one can deadlock its process: with every
connection of the pool held by threads each waiting for a second, they all wait until the pool's timeout
(30 s) and fail. `bench/webhooks.py` with a pool of 3 for 8 worker threads found one such path: a delivery
claim read its platform (on a cache miss) while still holding the claim's connection. Here a listener on
the pool records every nested checkout, and the platform cache is emptied before every step, so that each
step takes its slowest path."""
from __future__ import annotations

import threading
import traceback
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from models import seed
from models.types import utcnow
from workers import outbound, relay
from workers.simulator.face import FakeFaceProvider
from workflows import deliveries, face_sessions, platforms, reconcile, timers, verification, webhooks

from .support import drain, fan_out_all, invite, person

HERE = str(Path(__file__).resolve().parents[2]) + "/"  # the repository: frames outside .venv are ours
HERE_VENV = HERE + ".venv/"


@contextmanager
def nested_checkouts(engine):
    """The stacks of checkouts made by a thread that already held a pooled connection of `engine`."""
    held, nested = threading.local(), []

    def checkout(dbapi_connection, record, proxy):
        if getattr(held, "n", 0):  # where, in Gongji's own code
            nested.append(" > ".join(f"{f.filename.rsplit('/', 2)[-2]}/{f.name}:{f.lineno}"
                                     for f in traceback.extract_stack()
                                     if f.filename.startswith(HERE) and not f.filename.startswith(HERE_VENV)))
        held.n = getattr(held, "n", 0) + 1

    def checkin(dbapi_connection, record):
        held.n = max(0, getattr(held, "n", 0) - 1)

    sa.event.listen(engine, "checkout", checkout)
    sa.event.listen(engine, "checkin", checkin)
    try:
        yield nested
    finally:
        sa.event.remove(engine, "checkout", checkout)
        sa.event.remove(engine, "checkin", checkin)


def cold(step):
    """Run `step` after emptying the platform cache (platform reads then go to the database)."""
    platforms.clear_cache()
    return step()


def test_the_worker_paths_never_hold_two_pooled_connections_in_one_thread(pg_db, family, receivers,
                                                                           monkeypatch):
    """Given the fake national and provincial platforms and a fake face provider, registered
    When a binding is invited and verified through the provider, every event is fanned out, claimed, sent and
    acknowledged, a webhook is stored and processed, and the sweeper, relay and reconciliation passes run,
    each step with an empty platform cache
    Then no thread checked out a second pooled connection while it held one."""
    with pg_db.begin() as s:
        face_secret = seed.seed_dev_platforms(s)["facecheck"][1]
    provider = FakeFaceProvider([face_secret], latency_s=0.0, seed=7).start()
    platforms.set_webhook_url(pg_db, "facecheck", provider.url)
    resent: list[int] = []
    monkeypatch.setattr(relay, "enqueue", resent.extend)  # the relay pass's reads and writes, not the broker
    fam = family(pg_db)
    start = utcnow()  # the stored webhook is processed at the wall clock's time
    now = start + timedelta(seconds=5)
    try:
        with nested_checkouts(pg_db.kw["bind"]) as nested:
            bid = cold(lambda: invite(pg_db, fam, now=start))["id"]
            vid = cold(lambda: verification.start_verification(pg_db, bid, person(fam.beneficiary), now=start))
            request = cold(lambda: face_sessions.session_request(pg_db, vid["verification_id"],
                                                                 callback_base="http://127.0.0.1:9"))
            answer = outbound.post_signed(request.url, request.secrets, request.event_id, request.payload)
            assert answer.ok, answer
            cold(lambda: face_sessions.session_opened(pg_db, vid["verification_id"], "sess-1"))
            body = (b'{"type": "verification.completed", "data": {"verification_id": "%s", "binding_id": "%s", '
                    b'"result": "passed"}}' % (vid["verification_id"].encode(), bid.encode()))
            stored, _ = cold(lambda: webhooks.receive(
                pg_db, platform=platforms.get(pg_db, "facecheck"), webhook_id="msg_conn_1", body=body,
                headers={"webhook-id": "msg_conn_1"}, event_type="verification.completed"))
            assert cold(lambda: webhooks.process(pg_db, stored)) == "passed"
            ready = cold(lambda: fan_out_all(pg_db, now))
            assert cold(lambda: drain(pg_db, now, ready)) >= 3  # invited, verification requested, face verified
            cold(lambda: timers.sweep_all(pg_db, now=now + timedelta(days=30)))
            cold(lambda: relay.relay_pass(pg_db, now=now + timedelta(days=30)))
            cold(lambda: reconcile.reconcile(pg_db, now=now + timedelta(days=30)))
            cold(lambda: deliveries.due(pg_db, now=now + timedelta(days=30)))
    finally:
        provider.stop()
    assert nested == [], nested[0]
    assert [e.version for e in receivers["national"].events if e.binding_id == bid][:3] == [1, 2, 3]
