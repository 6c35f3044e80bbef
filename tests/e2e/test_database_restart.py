"""A PostgreSQL restart under the production shape (web, worker, scheduler), on a PostgreSQL of the test's
own: while it is down every call is answered 503 `unavailable` with a Retry-After (a platform retries
that), and once it is back every process carries on by itself (none is restarted), the calls retried with
their Idempotency-Keys are answered, and every event reaches the platforms once, in order per binding."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import requests
import sqlalchemy as sa

from .conftest import _redis_db_url, _services, production_stack
from .support import (PROBLEM_JSON, assert_problem, free_port, poll, post_webhook, verification_completed,
                      wait_state)
from .test_faults import _national, _unprocessed_outbox

PGBIN = "/usr/lib/postgresql/15/bin"
OUTAGE_S = 8.0


class PostgresServer:
    """A PostgreSQL cluster of this test's own (initdb in a temporary directory, the `postgres` user when the
    tests run as root, as `make test` does), which the test may stop and start again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gongji-pg-restart-")
        self.data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, f"{PGBIN}/{tool}", *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}\n{done.stderr}"

    def start(self) -> "PostgresServer":
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "postgres.log"), "-w", "-t", "60",
                  "start", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                                 "-c max_connections=100")
        return self

    def stop(self) -> None:
        """A fast shutdown: open sessions are terminated, as in a restart or a failover."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except AssertionError:  # already stopped
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _keyed(api, method: str, path: str, body: dict, key: str) -> requests.Response:
    return api.request(method, path, json_body=body, headers={"Idempotency-Key": key})


def _assert_unavailable(resp: requests.Response) -> None:
    body = assert_problem(resp, 503, "unavailable")
    assert int(resp.headers["Retry-After"]) >= 1, resp.headers
    assert body["retry_after_s"] == int(resp.headers["Retry-After"]), body


def _scheduler_roles(database_url: str) -> list[str]:
    """The roles of the scheduler rows written in the last 30 s (`process_beats`: active, standby, stopped)."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(
                "select role from process_beats where kind = 'scheduler' "
                "and seen_at > now() - interval '30 seconds'")).scalars())
    finally:
        engine.dispose()


def test_a_postgresql_restart_is_answered_503_and_everything_carries_on_after_it(tmp_path):
    """Given the production shape on a PostgreSQL of its own, and three families each mid-way (invited,
    face verification started)
    When PostgreSQL is stopped (its sessions terminated) for about 8 s while the platforms call: a person
    upsert, the verifier's callbacks, reads, /readyz, and PostgreSQL is started again
    Then during the outage each call was 503 `unavailable` problem+json with a Retry-After, /readyz 503 and
    /healthz 200; afterwards, with no process restarted, the same calls retried with their
    Idempotency-Keys and webhook-ids are answered 2xx, a scheduler is active again, the lives complete,
    every outbox row is processed, and the national and Jiangsu platforms each receive every version of
    every binding once, in order."""
    _, redis_url = _services()
    pg = PostgresServer().start()
    try:
        (tmp_path / "stack").mkdir()
        with production_stack(tmp_path / "stack", pg.url, _redis_db_url(redis_url, 8), name="pg_restart") as stack:
            api = stack.api()
            families = []
            for _ in range(3):
                grantor, beneficiary = api.person("320100"), api.person("320100", insurance_type="resident")
                b = api.invited(grantor, beneficiary, "spouse")
                vid = api.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
                families.append((b["id"], vid, grantor, beneficiary))
            newcomer = api.person("320100")  # upserted again during the outage, with a key
            upsert = {"id_number": newcomer.id_number, "name": newcomer.name, "insurance_type": "employee",
                      "insurance_status": "active", "region_code": "320100", "real_name_verified": True}
            key = f"restart-{uuid.uuid4().hex}"
            hook_ids = {vid: f"msg_{uuid.uuid4().hex}" for _, vid, _, _ in families}

            pg.stop()
            down_at = time.monotonic()
            _assert_unavailable(_keyed(api, "POST", "/api/v1/persons", upsert, key))
            _assert_unavailable(api.get(f"/api/v1/bindings/{families[0][0]}"))
            for bid, vid, _, _ in families:
                hook = post_webhook(stack.base, "facecheck", stack.facecheck_secret,
                                    verification_completed(vid, bid), msg_id=hook_ids[vid])
                _assert_unavailable(hook)
            ready = requests.get(f"{stack.base}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error"), ready.text
            assert requests.get(f"{stack.base}/healthz", timeout=30).status_code == 200
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # hold the outage, decide nothing
            pg.start()

            retried = poll(lambda: _answered(_keyed(api, "POST", "/api/v1/persons", upsert, key)), timeout=60,
                           what="the upsert answered after the restart")
            assert retried.status_code in (200, 201), retried.text
            again = _keyed(api, "POST", "/api/v1/persons", upsert, key)  # the key now replays that answer
            assert again.status_code == retried.status_code and again.headers.get("Idempotent-Replayed") == "true"
            for bid, vid, _, _ in families:  # the verifier sends the same webhooks again, as it would
                hook = post_webhook(stack.base, "facecheck", stack.facecheck_secret,
                                    verification_completed(vid, bid), msg_id=hook_ids[vid])
                assert hook.status_code == 202, hook.text
            for bid, _, grantor, beneficiary in families:
                wait_state(api, bid, "face_verified", timeout=120)
                api.ok(bid, "accept", beneficiary)
                api.ok(bid, "authorization", grantor, amount_fen=10_000)
                api.ok(bid, "unbind", grantor, reason="家庭成员变动")
            poll(lambda: "active" in _scheduler_roles(stack.database_url), timeout=60,
                 what="a scheduler active again")
            ids = [f[0] for f in families]
            poll(lambda: _unprocessed_outbox(stack.database_url) == 0, timeout=180, what="the outbox drained")
            poll(lambda: all(r.status == "delivered" for r in _national(stack.database_url, ids))
                 and len(_national(stack.database_url, ids)) == 6 * len(ids), timeout=180,
                 what="every national delivery acknowledged")
            for bid in ids:
                assert stack.national_receiver.versions(bid) == [1, 2, 3, 4, 5, 6], bid
                poll(lambda: stack.province_receiver.versions(bid) == [1, 2, 3, 4, 5, 6], timeout=180,
                     what=f"Jiangsu's receiver having every version of {bid}")
            assert all(p.alive() for p in stack.procs), [(p.name, p.popen.returncode) for p in stack.procs]
            assert not any(resp.status_code == 500 for _, _, resp in api.answers), \
                [(m, p, r.status_code) for m, p, r in api.answers if r.status_code == 500]
    finally:
        pg.remove()


def _answered(resp: requests.Response) -> requests.Response | None:
    """The answer once the database is back (None while it is still 503: PostgreSQL may take a moment)."""
    if resp.status_code == 503 and resp.headers.get("Content-Type", "").startswith(PROBLEM_JSON):
        return None
    return resp
