"""The production shape end to end: gunicorn (`gongji web`), a dramatiq worker on Redis (`gongji worker`) and
the scheduler (`gongji scheduler`) on a PostgreSQL database of their own."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import requests

from .support import (LIFE_EVENTS, Api, assert_problem, child_birth, full_life, life_events, poll, post_webhook,
                      verification_completed, wait_state)

FAMILIES = 20


def test_ready_with_database_and_redis(production):
    """Given the three production processes
    When /readyz is read
    Then both the database and Redis are reported ok."""
    ready = requests.get(f"{production.base}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_one_binding_lives_through_web_worker_and_redis(production):
    """Given an eligible couple registered by the Jiangsu platform
    When the grantor invites, the beneficiary starts face verification, the verifier's signed callback arrives
    (answered 202 once stored) and the binding is polled until face_verified — which only the dramatiq worker,
    fed through Redis, can bring about — and then the beneficiary accepts and the grantor authorizes and unbinds
    Then the binding ends unbound with the six transitions of the main line, in order, with sequence numbers
    1..6, the verifier recorded as the actor of verification_passed."""
    api = production.api()
    final, history = full_life(api, production.base, "facecheck", production.facecheck_secret, amount_fen=12_345)

    assert final["state"] == "unbound" and final["end_event"] == "unbind"
    assert final["version"] == 6 and final["deadline_at"] is None
    assert life_events(history) == LIFE_EVENTS
    assert [t["seq"] for t in history] == [1, 2, 3, 4, 5, 6]
    assert history[2]["actor"] == {"kind": "verifier", "id": "facecheck"}
    assert history[4]["reason"] == "amount_fen=12345"
    assert final["verifications"][0]["status"] == "passed"
    # the national platform sees every binding
    national = Api(production.base, production.national_key)
    assert national.binding(final["id"])["state"] == "unbound"


def test_twenty_families_concurrently(production):
    """Given 20 families, each driven by its own thread through the whole life at the same time
    When every family runs invite → verification → signed callback → face_verified → accept → authorize
    → unbind
    Then all 20 end unbound, each with exactly the six main-line history rows."""
    barrier = Barrier(FAMILIES)

    def family(i: int):
        api = production.api()
        barrier.wait(timeout=60)
        return full_life(api, production.base, "facecheck", production.facecheck_secret, amount_fen=1_000 + i,
                         poll_timeout=60)

    with ThreadPoolExecutor(FAMILIES) as pool:
        results = list(pool.map(family, range(FAMILIES)))

    assert len({final["id"] for final, _ in results}) == FAMILIES
    for final, history in results:
        assert final["state"] == "unbound", final
        assert life_events(history) == LIFE_EVENTS, history
        assert [t["seq"] for t in history] == [1, 2, 3, 4, 5, 6]


def test_racing_commands_on_postgresql_one_wins(production):
    """Given an authorized guardian-path binding on PostgreSQL
    When 8 requests unbind it at the same moment across the gunicorn workers
    Then exactly one answers 200 and the others 409 (illegal_transition or conflict); one unbind in the history."""
    api = production.api()
    parent = api.person("320100")
    child = api.person("320100", birth=child_birth(), insurance_type="resident")
    b = api.invited(parent, child, "child")
    api.ok(b["id"], "authorization", parent, amount_fen=100)
    barrier = Barrier(8)

    def unbind(i: int):
        mine = production.api()
        barrier.wait(timeout=30)
        return mine.command(b["id"], "unbind", (parent, child)[i % 2], reason=f"race {i}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(unbind, range(8)))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 7, [(r.status_code, r.text) for r in answers]
    assert all(r.json()["code"] in ("illegal_transition", "conflict") for r in answers if r.status_code == 409)
    assert [t["event"] for t in api.history(b["id"])] == ["invite", "authorize", "unbind"]


def test_failed_verifications_end_the_invitation(production):
    """Given an invited binding (Jiangsu: 3 verification attempts)
    When three attempts are opened and the verifier reports each as failed
    Then after the first two the binding is still invited with 1 and 2 failed verifications, and after the
    third it is verification_failed (terminal): a fourth attempt is 409 illegal_transition."""
    api = production.api()
    grantor = api.person("320100")
    beneficiary = api.person("320100", insurance_type="resident")
    b = api.invited(grantor, beneficiary)
    for attempt in (1, 2, 3):
        started = api.ok(b["id"], "verification", beneficiary, status=202)
        assert started["attempt"]["attempt_no"] == attempt
        hook = post_webhook(production.base, "facecheck", production.facecheck_secret,
                            verification_completed(started["verification_id"], b["id"], "failed"))
        assert hook.status_code == 202, hook.text
        if attempt < 3:
            def failed_n(n=attempt):
                now = api.binding(b["id"])
                return now if now["failed_verifications"] == n else None
            now = poll(failed_n, what=f"{attempt} failed verification(s) applied")
            assert now["state"] == "invited"
    final = wait_state(api, b["id"], "verification_failed")
    assert final["failed_verifications"] == 3 and final["deadline_at"] is None
    assert [v["status"] for v in final["verifications"]] == ["failed"] * 3
    assert_problem(api.command(b["id"], "verification", beneficiary), 409, "illegal_transition")
