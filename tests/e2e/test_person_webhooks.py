"""Person events from a platform over real HTTP: a signed `person.deceased` webhook ends a live binding by
itself (DESIGN §3), and one webhook-id posted many times at once is stored and applied once (API.md)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from threading import Barrier
from urllib.parse import quote

import sqlalchemy as sa

from .support import Api, child_birth, id_number, poll, post_webhook, wait_state

COPIES = 100


def _guardian_binding(api: Api):
    """A live binding at once: a parent in 南京 invites their child under 16 (guardian path, `accepted`)."""
    parent = api.person("320100")
    child = api.person("320100", birth=child_birth(), insurance_type="resident")
    b = api.invited(parent, child, "child")
    assert b["state"] == "accepted", b
    return b, parent, child


def _deceased(person, at: datetime | None = None) -> dict:
    # `updated_at` is the registry's as-of time; the person was registered moments ago in the same second
    # the webhook may be signed in, so the event states its as-of time to the microsecond
    return {"type": "person.deceased",
            "data": {"id_number": person.id_number, "updated_at": (at or datetime.now(timezone.utc)).isoformat()}}


def test_signed_person_deceased_ends_a_live_binding(embedded, js, dev_keys):
    """Given a live (accepted) binding registered by the Jiangsu platform
    When Jiangsu posts a signed `person.deceased` about the grantor to /webhooks/jiangsu
    Then it is answered 202 once stored, and the worker ends the binding: `unbound` by `unbind` with actor
    kind `system` (`registry:jiangsu`) and reason grantor_deceased; the grantor reads as deceased; no answer
    carries the ID number."""
    b, parent, _child = _guardian_binding(js)

    resp = post_webhook(embedded, "jiangsu", dev_keys["jiangsu"][1], _deceased(parent), seen=js.seen)

    assert resp.status_code == 202, resp.text
    assert resp.json()["duplicate"] is False
    final = wait_state(js, b["id"], "unbound")
    assert final["end_event"] == "unbind"
    last = js.history(b["id"])[-1]
    assert (last["from"], last["to"], last["event"], last["reason"]) == ("accepted", "unbound", "unbind",
                                                                          "grantor_deceased")
    assert last["actor"] == {"kind": "system", "id": "registry:jiangsu"}
    assert js.post("/api/v1/persons/lookup", {"id_number": parent.id_number}).json()["deceased"] is True
    assert not any(parent.id_number in text for text in js.seen)


def test_one_webhook_id_posted_100_times_at_once_is_stored_and_applied_once(production):
    """Given a live binding on the production shape (gunicorn, dramatiq on Redis, PostgreSQL)
    When the same signed `person.deceased` (one webhook-id, one timestamp, one body) is posted 100 times at
    the same moment
    Then exactly one answer is 202 (stored) and 99 are 200 duplicates naming the same stored row; the
    database holds exactly one received row for that webhook-id, processed once with outcome `applied`;
    the binding is unbound exactly once, by the system."""
    api = production.api()
    b, parent, _child = _guardian_binding(api)
    payload, msg_id = _deceased(parent), f"msg_dead_{b['id']}"
    at = datetime.now(timezone.utc)
    barrier = Barrier(COPIES)

    def post(_i: int):
        barrier.wait(timeout=60)
        return post_webhook(production.base, "jiangsu", production.jiangsu_secret, payload, msg_id=msg_id, at=at)

    with ThreadPoolExecutor(COPIES) as pool:
        answers = list(pool.map(post, range(COPIES)))

    assert sorted(r.status_code for r in answers) == [200] * (COPIES - 1) + [202], \
        [(r.status_code, r.text) for r in answers if r.status_code not in (200, 202)]
    bodies = [r.json() for r in answers]
    assert {body["received"] for body in bodies} == {msg_id}  # its webhook-id (never a count of all platforms')
    assert sorted(body["duplicate"] for body in bodies) == [False] + [True] * (COPIES - 1)

    wait_state(api, b["id"], "unbound", timeout=60)
    engine = sa.create_engine(production.database_url, poolclass=sa.pool.NullPool)
    try:
        def processed():
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, outcome, attempts FROM received_webhooks "
                                            "WHERE platform_id = 'jiangsu' AND webhook_id = :w"), {"w": msg_id}).all()
                return rows if rows and all(r.outcome for r in rows) else None
        rows = poll(processed, timeout=60, what="the webhook processed")
        assert [(r.outcome, r.attempts) for r in rows] == [("applied", 1)]
        with engine.connect() as conn:
            queued = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE topic = 'webhook.received' AND "
                                          "payload -> 'data' ->> 'received_webhook_id' = :r"), {"r": str(rows[0].id)})
            assert queued.scalar_one() == 1
    finally:
        engine.dispose()
    history = api.history(b["id"])
    assert [(t["event"], t["actor"]["kind"]) for t in history] == [("invite", "person"), ("unbind", "system")]
    assert history[-1]["reason"] == "grantor_deceased"


def test_a_platform_reads_what_became_of_its_webhook(embedded, js, xj, dev_keys):
    """Given a live binding, and a signed `person.deceased` about a number nobody holds, both sent by Jiangsu
    When Jiangsu reads GET /api/v1/webhooks/{webhook-id} for each until processed
    Then the one about the grantor is processed with outcome `applied` (one run), the unknown person's with
    its refusal code and why (`detail`); the answers carry no ID number; Xinjiang asking for Jiangsu's
    webhook-id and anyone asking for an unknown id get 404."""
    b, parent, _child = _guardian_binding(js)
    stranger = {"type": "person.deceased", "data": {"id_number": id_number()}}  # a valid number nobody holds
    sent = {"dead": f"msg_dead_{b['id']}", "stranger": f"msg/stranger/{b['id']}"}  # any characters: a `/` too
    for name, payload in (("dead", _deceased(parent)), ("stranger", stranger)):
        resp = post_webhook(embedded, "jiangsu", dev_keys["jiangsu"][1], payload, msg_id=sent[name], seen=js.seen)
        assert resp.status_code == 202, resp.text

    def processed(msg_id):
        def probe():
            answer = js.get(f"/api/v1/webhooks/{quote(msg_id, safe='')}")
            assert answer.status_code == 200, answer.text
            js.seen.append(answer.text)
            return answer.json() if answer.json()["status"] == "processed" else None
        return poll(probe, what=f"webhook {msg_id} processed")

    dead, unknown = processed(sent["dead"]), processed(sent["stranger"])

    assert (dead["type"], dead["outcome"], dead["attempts"]) == ("person.deceased", "applied", 1)
    assert dead["webhook_id"] == sent["dead"] and dead["processed_at"] >= dead["received_at"]
    assert unknown["outcome"] == "not_found" and unknown["webhook_id"] == sent["stranger"], unknown
    assert (dead["detail"], unknown["detail"]) == (None, "not_found: no person with that ID number")
    assert xj.get(f"/api/v1/webhooks/{sent['dead']}").status_code == 404
    assert js.get("/api/v1/webhooks/msg_never_sent").status_code == 404
    assert not any(parent.id_number in text for text in js.seen)
