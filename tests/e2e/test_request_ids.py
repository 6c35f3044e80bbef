"""Request ids over real HTTP on the production stack (gunicorn, dramatiq, PostgreSQL, Redis): every answer
names its request in `X-Request-Id`, a problem says it in its body, the history row a request wrote and
the event every platform receives name it, and an id that could carry a person's number is never kept."""
from __future__ import annotations

import re
import uuid

from .support import Person, assert_problem, chinese_name, id_number, poll, post_webhook, verification_completed

MADE = re.compile(r"req_[0-9a-z]{26}")


def test_a_callers_request_id_is_answered_recorded_and_sent_with_the_event(production):
    """Given a platform that sends its own X-Request-Id and an Idempotency-Key with an invitation
    When the invitation is answered and its event delivered
    Then the answer echoes the id, the history row of `invite` records it, and the national platform's
    binding.invited event carries {id, idempotency_key} in `transition.request`."""
    api = production.api()
    grantor, beneficiary = api.person(), api.person(insurance_type="resident")
    trace, key = f"js-trace-{uuid.uuid4().hex[:12]}", f"inv-{uuid.uuid4().hex}"
    resp = api.invite(grantor, beneficiary, headers={"X-Request-Id": trace, "Idempotency-Key": key})
    assert resp.status_code == 201, resp.text
    assert resp.headers["X-Request-Id"] == trace
    binding = resp.json()

    assert [t["request_id"] for t in api.history(binding["id"])] == [trace]
    received = poll(lambda: [e for e in list(production.national_receiver.events)
                             if e.binding_id == binding["id"]], timeout=60, what="binding.invited at the national platform")
    assert received[0].type == "binding.invited"
    assert received[0].payload["data"]["transition"]["request"] == {"id": trace, "idempotency_key": key}


def test_without_an_id_gongji_makes_one_and_a_problem_quotes_it(production):
    """Given requests that send no X-Request-Id
    When one succeeds and one is refused
    Then each answer carries a fresh id of Gongji's making, and the refusal's problem+json body quotes the
    same id as its header (what a platform gives the bureau to find the log lines)."""
    api = production.api()
    ok = api.get("/api/v1/regions/320100")
    refused = api.get("/api/v1/bindings/bnd_doesnotexist")
    problem = assert_problem(refused, 404, "not_found")
    assert MADE.fullmatch(ok.headers["X-Request-Id"]) and MADE.fullmatch(refused.headers["X-Request-Id"])
    assert ok.headers["X-Request-Id"] != refused.headers["X-Request-Id"]
    assert problem["request_id"] == refused.headers["X-Request-Id"]
    unauthorized = production.api(key="gk_wrong").get("/api/v1/regions/320100")  # refused before any view ran
    assert assert_problem(unauthorized, 401, "unauthorized")["request_id"] == unauthorized.headers["X-Request-Id"]


def test_an_id_that_could_carry_a_persons_number_is_replaced(production):
    """Given X-Request-Ids holding an ID number, a mobile number, a space, or 65 characters
    When they are sent
    Then none is answered back or kept: each request gets an id of Gongji's making."""
    api = production.api()
    for sent in (id_number(), f"trace-{id_number()}", "13812345678", "trace 1", "a" * 65):
        resp = api.get("/api/v1/regions/320100", headers={"X-Request-Id": sent})
        assert resp.status_code == 200
        assert MADE.fullmatch(resp.headers["X-Request-Id"]), (sent, resp.headers["X-Request-Id"])


def test_a_webhooks_transitions_name_it(production):
    """Given an invitation whose face check was opened through the API
    When the verifier's verification.completed webhook is processed by the worker
    Then the face_verified transition's history row names `webhook:<its webhook-id>`, and its event says so."""
    api = production.api()
    grantor = api.person()
    beneficiary = api.upsert(Person(id_number(), chinese_name(), "320100"), insurance_type="resident")
    binding = api.invited(grantor, beneficiary)
    vid = api.ok(binding["id"], "verification", beneficiary, status=202)["verification_id"]
    msg_id = f"msg_{uuid.uuid4().hex}"
    sent = post_webhook(production.base, "facecheck", production.facecheck_secret,
                        verification_completed(vid, binding["id"]), msg_id=msg_id)
    assert sent.status_code == 202 and sent.headers["X-Request-Id"]

    def verified():
        rows = [t for t in api.history(binding["id"]) if t["to"] == "face_verified"]
        return rows[0] if rows else None
    row = poll(verified, timeout=60, what="face_verified")
    assert row["request_id"] == f"webhook:{msg_id}"
    event = poll(lambda: [e for e in list(production.national_receiver.events)
                          if e.binding_id == binding["id"] and e.type == "binding.face_verified"],
                 timeout=60, what="binding.face_verified at the national platform")[0]
    assert event.payload["data"]["transition"]["request"] == {"id": f"webhook:{msg_id}", "idempotency_key": None}
