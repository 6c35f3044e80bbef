"""Faults on the production shape, each on a stack of its own (`production_stack`): Redis down for 30 s,
and a worker killed with SIGKILL in the middle of a delivery. Counted with total accounting: every event
is delivered (or dead), in order per binding, none applied twice by the receiver."""
from __future__ import annotations

import os
import signal
import time

import pytest
import redis
import requests
import sqlalchemy as sa

from .conftest import _redis_db_url, _services, production_stack, wait_worker
from .support import (Proc, free_port, gongji_bin, poll, post_webhook, verification_completed,
                      wait_state)

OUTAGE_S = 30.0


class RedisServer:
    """A redis-server of this test's own, which the test may stop and start again on the same port."""

    def __init__(self, workdir):
        self.workdir, self.port, self.proc = workdir, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = Proc("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.workdir)],
                         cwd=self.workdir, env=dict(os.environ), log=self.workdir / f"redis-{time.time_ns()}.log")
        poll(lambda: self._ping(), timeout=30, interval=0.05, what="redis answering")
        return self

    def _ping(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.proc.stop()


def _national(database_url: str, binding_ids: list[str]) -> list:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            return c.execute(sa.text(
                "select binding_id, binding_version, status, attempts, next_attempt_at, last_error from deliveries "
                "where platform_id = 'national' "
                "and binding_id = any(:ids) order by binding_id, binding_version"), {"ids": binding_ids}).all()
    finally:
        engine.dispose()


def _unprocessed_outbox(database_url: str) -> int:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("select count(*) from outbox where processed_at is null")).scalar()
    finally:
        engine.dispose()


def test_redis_down_for_30_seconds_the_api_answers_and_the_backlog_drains_with_nothing_lost(tmp_path):
    """Given the production shape on a Redis of its own
    When Redis is stopped for 30 s while platforms invite, beneficiaries start face verification and the
    verifier's callbacks arrive, and then Redis is started again
    Then every API call and webhook was answered (201/202) during the outage and /readyz stayed 200
    ("degraded", naming Redis); afterwards every stored
    callback is applied, every outbox row is processed, the lives complete, and the national and Jiangsu
    platforms each receive every version of every binding once, in order."""
    db_url, _ = _services()
    own = RedisServer(tmp_path).start()
    try:
        (tmp_path / "stack").mkdir()
        with production_stack(tmp_path / "stack", db_url, own.url, name="redis_down") as stack:
            api = stack.api()
            own.stop()
            down_at = time.monotonic()
            pending = []
            for _ in range(4):
                grantor, beneficiary = api.person("320100"), api.person("320100", insurance_type="resident")
                b = api.invited(grantor, beneficiary, "spouse")
                vid = api.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
                hook = post_webhook(stack.base, "facecheck", stack.facecheck_secret,
                                    verification_completed(vid, b["id"]))
                assert hook.status_code == 202, hook.text
                pending.append((b["id"], grantor, beneficiary))
            ready = requests.get(f"{stack.base}/readyz", timeout=30)  # still in service: the API answers
            assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
            assert ready.json()["checks"]["redis"].startswith("error"), ready.text
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # hold the outage, decide nothing
            own.start()

            for bid, grantor, beneficiary in pending:
                wait_state(api, bid, "face_verified", timeout=180)
                api.ok(bid, "accept", beneficiary)
                api.ok(bid, "authorization", grantor, amount_fen=10_000)
                api.ok(bid, "unbind", grantor, reason="家庭成员变动")
            ids = [p[0] for p in pending]
            poll(lambda: _unprocessed_outbox(stack.database_url) == 0, timeout=180, what="the outbox drained")
            try:
                poll(lambda: all(r.status == "delivered" for r in _national(stack.database_url, ids))
                     and len(_national(stack.database_url, ids)) == 6 * len(ids), timeout=180,
                     what="every national delivery acknowledged")
            except AssertionError as exc:  # say where it stands
                raise AssertionError(f"{exc}; at {time.strftime('%H:%M:%S')}: "
                                     f"{_national(stack.database_url, ids)}") from None
            for bid in ids:  # and Jiangsu's receiver (both sides are in 南京) the same, in order
                assert stack.national_receiver.versions(bid) == [1, 2, 3, 4, 5, 6], bid
                poll(lambda: stack.province_receiver.versions(bid) == [1, 2, 3, 4, 5, 6], timeout=180,
                     what=f"Jiangsu's receiver having every version of {bid}")
    finally:
        if own.proc.alive():
            own.stop()


def test_a_worker_killed_mid_delivery_is_redelivered_and_the_receiver_drops_the_duplicate(tmp_path):
    """Given the national platform's receiver slow (it has the event but answers only after 60 s)
    When the dramatiq worker is killed with SIGKILL while it waits for that answer, and a new worker starts
    Then once the delivery's lease runs out it is sent again with the same webhook-id: the receiver sees a
    duplicate it drops, the delivery ends `delivered` after two tries, and the receiver holds version 1 once."""
    db_url, redis_url = _services()
    (tmp_path / "stack").mkdir()
    with production_stack(tmp_path / "stack", db_url, _redis_db_url(redis_url, 6), name="killed") as stack:
        receiver = stack.national_receiver
        receiver.set_mode("slow", delay_s=60)
        api = stack.api()
        bid = api.invited(api.person("320100"), api.person("320100", insurance_type="resident"), "spouse")["id"]
        poll(lambda: receiver.versions(bid) == [1], timeout=60, what="the receiver holding version 1")

        worker = next(p for p in stack.procs if p.name == "worker")
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait(30)
        worker.stop()
        stack.procs.remove(worker)
        receiver.set_mode("ok")
        stack.procs.append(Proc("worker-2", [gongji_bin(), "worker", "--processes", "1", "--threads", "4"],
                                cwd=stack.workdir, env=stack.env, log=stack.workdir / "worker-2.log"))
        wait_worker(redis.Redis.from_url(stack.redis_url), stack.procs)

        poll(lambda: [r.status for r in _national(stack.database_url, [bid])] == ["delivered"], timeout=120,
             what="the delivery acknowledged")
        assert receiver.versions(bid) == [1]
        assert receiver.duplicates >= 1
        assert _national(stack.database_url, [bid])[0].attempts >= 2


@pytest.fixture(autouse=True)
def _needs_redis_server():
    import shutil
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make test installs it)")
