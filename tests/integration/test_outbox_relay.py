"""The outbox on PostgreSQL + Redis: a row written before a crash is relayed after restart, and a stored
webhook is applied by a real dramatiq worker on Redis."""
from __future__ import annotations

import os
import threading
from datetime import timedelta

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker

from models import OutboxMessage
from models.settings import Settings
from models.types import utcnow
from workflows import outbox, persons, verification, webhooks
from workflows.idnumbers import with_check_digit
from workflows.invite import invite
from workflows.platforms import PlatformInfo

from .support import wait_until

pytestmark = pytest.mark.pg


@pytest.fixture
def redis_worker(pg_db):
    url = os.environ.get("GONGJI_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("GONGJI_TEST_REDIS_URL is not set (make test starts Redis)")
        pytest.skip("GONGJI_TEST_REDIS_URL is not set")
    from workers import relay, runtime

    broker = RedisBroker(url=url, namespace="gongji-it")
    broker.client.flushdb()
    dramatiq.set_broker(broker)
    from workers import actors

    for actor in (actors.process_outbox, actors.process_outbox_many):
        actor.broker = broker
        broker.declare_actor(actor)
    runtime.configure(Settings.from_env(), pg_db)
    worker = Worker(broker, worker_threads=2, worker_timeout=100)
    yield relay, worker
    worker.stop()
    outbox.clear_listeners()
    broker.client.flushdb()
    broker.close()


_wait = wait_until


def _pending(db) -> int:
    with db() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.processed_at.is_(None)))


def _family(db, n: int):
    g = with_check_digit(f"32010219700101{n:03d}")
    b = with_check_digit(f"32010219720202{n:03d}")
    persons.upsert(db, dict(id_number=g, name="王五", insurance_type="employee", insurance_status="active",
                            region_code="320100", real_name_verified=True, balance_fen=1000), platform=None)
    persons.upsert(db, dict(id_number=b, name="赵六", insurance_type="resident", insurance_status="active",
                            region_code="320100", real_name_verified=True), platform=None)
    return g, b


def test_row_written_before_a_crash_is_relayed_after_restart(pg_db, redis_worker):
    """Given commands that committed outbox rows while no relay listener ran (the process died after
    commit, before enqueueing), when a restarted process runs the periodic relay pass with a Redis worker,
    then every row is processed exactly once and none is left behind."""
    relay, worker = redis_worker
    outbox.clear_listeners()  # the "crashed" process: nothing is enqueued after commit
    g, b = _family(pg_db, 1)
    invite(pg_db, grantor_id_number=g, beneficiary_id_number=b, beneficiary_name="赵六", relationship="spouse",
           commitment_version="JS-2024-01")
    assert _pending(pg_db) == 1

    worker.start()  # the restart
    sent = relay.relay_pass(pg_db, now=utcnow() + timedelta(seconds=relay.GRACE_S + 1))

    assert sent == 1
    assert _wait(lambda: _pending(pg_db) == 0), "the relayed outbox row was not processed"
    with pg_db() as s:
        row = s.scalars(sa.select(OutboxMessage)).one()
        # a binding event is fanned out and marked processed in one transaction (no run_once bookkeeping)
        assert row.topic == "binding.invited" and row.fanned_out_at is not None and row.processed_at is not None
    # a second pass finds nothing to re-send
    assert relay.relay_pass(pg_db, now=utcnow() + timedelta(seconds=relay.GRACE_S + relay.RESEND_S + 1)) == 0


def test_webhook_stored_then_applied_by_the_redis_worker(pg_db, redis_worker):
    """Given an invited binding with an open verification attempt and the relay listening, when the
    verifier's verification.completed webhook is stored, then the Redis worker applies it: the binding
    becomes face_verified, and storing the same webhook-id again changes nothing."""
    relay, worker = redis_worker
    relay.install()
    worker.start()
    g, b = _family(pg_db, 2)
    bound = invite(pg_db, grantor_id_number=g, beneficiary_id_number=b, beneficiary_name="赵六",
                   relationship="spouse", commitment_version="JS-2024-01")
    started = verification.start_verification(pg_db, bound["id"], {"kind": "person", "id_number": b})
    verifier = PlatformInfo(id="facecheck", kind="verifier", provinces=(), webhook_secret="", webhook_url=None)
    body = ('{"type": "verification.completed", "data": {"verification_id": "%s", "binding_id": "%s", '
            '"result": "passed"}}' % (started["verification_id"], bound["id"])).encode()

    first = webhooks.receive(pg_db, platform=verifier, webhook_id="msg_it_1", body=body, headers={},
                             event_type="verification.completed")
    again = webhooks.receive(pg_db, platform=verifier, webhook_id="msg_it_1", body=body, headers={},
                             event_type="verification.completed")

    assert first[1] is False and again == (first[0], True)
    from workflows.queries import binding
    assert _wait(lambda: binding(pg_db, bound["id"])["state"] == "face_verified")
    assert _wait(lambda: _pending(pg_db) == 0)
    assert binding(pg_db, bound["id"])["version"] == 3


def test_coalesced_ids_are_all_processed_through_redis(pg_db, redis_worker):
    """Given the web processes' coalescing publisher as the relay listener and a Redis worker, when six
    families are invited from six threads at once, then every outbox row is processed, none is left."""
    relay, worker = redis_worker
    relay.install(coalesce=True)
    worker.start()
    families = [_family(pg_db, 10 + i) for i in range(6)]

    def invite_one(fam):
        invite(pg_db, grantor_id_number=fam[0], beneficiary_id_number=fam[1], beneficiary_name="赵六",
               relationship="spouse", commitment_version="JS-2024-01")
    threads = [threading.Thread(target=invite_one, args=(fam,)) for fam in families]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert relay.flush(10), "the publisher did not hand its ids to the broker"
    assert _wait(lambda: _pending(pg_db) == 0)
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.fanned_out_at.is_not(None))) == 6


def test_a_batch_hands_on_only_long_jobs_and_failures(pg_db, redis_worker, monkeypatch):
    """Given two binding events, a stored webhook and a batch job's row, with the first event's fan-out
    failing once, when one batch message carries all four, then the second event is fanned out and the
    webhook applied within the batch, and the failed event and the batch job go on alone as
    `process_outbox` messages (with that actor's retries)."""
    from workers import actors
    from workflows import batches
    relay, worker = redis_worker
    outbox.clear_listeners()
    for i in range(2):
        g, b = _family(pg_db, 20 + i)
        invite(pg_db, grantor_id_number=g, beneficiary_id_number=b, beneficiary_name="赵六",
               relationship="spouse", commitment_version="JS-2024-01")
    verifier = PlatformInfo(id="facecheck", kind="verifier", provinces=(), webhook_secret="", webhook_url=None)
    body = b'{"type": "verification.completed", "data": {"verification_id": "ver_x", "binding_id": "bnd_x", ' \
           b'"result": "passed"}}'
    webhooks.receive(pg_db, platform=verifier, webhook_id="msg_batch_1", body=body, headers={},
                     event_type="verification.completed")
    with pg_db.begin() as s:
        outbox.write(s, batches.TOPIC, utcnow(), {"batch_id": "bat_none"})
    with pg_db() as s:
        first, second, hook, job = s.scalars(sa.select(OutboxMessage.id).order_by(OutboxMessage.id)).all()
    real, failed = actors.routing.fan_out, []

    def fan_out(db, outbox_id, **kw):
        if outbox_id == first and not failed:
            failed.append(outbox_id)
            raise RuntimeError("the database went away")
        return real(db, outbox_id, **kw)
    monkeypatch.setattr(actors.routing, "fan_out", fan_out)
    handed_on = []
    monkeypatch.setattr(actors.process_outbox, "send", lambda i: handed_on.append(i))

    actors.process_outbox_many.fn([first, hook, second, job])

    assert failed == [first] and handed_on == [first, job]
    with pg_db() as s:
        done = {r.id: r for r in s.scalars(sa.select(OutboxMessage))}
    assert done[second].processed_at is not None and done[hook].attempts == 1
    assert done[first].processed_at is None and done[job].processed_at is None and done[job].attempts == 0
