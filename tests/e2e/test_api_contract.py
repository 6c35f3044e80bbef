"""The published contract: the OpenAPI document, masking, Idempotency-Key, webhook de-duplication,
the region policy shape, and the health and metrics endpoints."""
from __future__ import annotations

from datetime import date
import json
import re

import requests
from openapi_spec_validator import validate

from .support import (LIFE_EVENTS, Api, assert_problem, child_birth, full_life, id_number, issued_numbers,
                      life_events, post_webhook, verification_completed, wait_state)

# API.md: every path under Persons, Regions, Bindings and Settlements, plus the inbound webhook (path
# parameters are compared by position, not by name)
CONTRACT = {
    ("post", "/api/v1/persons"), ("post", "/api/v1/persons/lookup"),
    ("get", "/api/v1/persons/{person_id}/bindings"), ("put", "/api/v1/persons/{person_id}/deduction-order"),
    ("get", "/api/v1/regions/{pooling_region_code}"),
    ("post", "/api/v1/bindings"), ("get", "/api/v1/bindings/{id}"), ("get", "/api/v1/bindings/{id}/history"),
    ("post", "/api/v1/bindings/{id}/verification"), ("post", "/api/v1/bindings/{id}/accept"),
    ("post", "/api/v1/bindings/{id}/decline"), ("post", "/api/v1/bindings/{id}/cancel"),
    ("put", "/api/v1/bindings/{id}/authorization"), ("post", "/api/v1/bindings/{id}/unbind"),
    ("post", "/api/v1/settlements"), ("post", "/api/v1/settlements/{id}/reversal"),
    ("post", "/webhooks/{platform}"),
}
NO_BODY = {("post", "/api/v1/settlements/{id}/reversal")}  # API.md gives the reversal no body
REGION_FIELDS = ("code", "name", "province_code", "platform", "commitment_version", "allowed_relationships",
                 "intra_province", "cross_province", "invitation_ttl_s", "verification_timeout_s",
                 "max_verification_attempts", "member_limits", "frequency_limit", "deduction_order_policy")
ID_NUMBER_RE = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_openapi_document_lists_the_contract(embedded):
    """Given a running server
    When anyone (no key needed) fetches /api/v1/openapi.json
    Then it is an OpenAPI 3.1 document listing every operation of API.md's Persons, Regions, Bindings and
    Settlements tables and /webhooks/{platform}, each with responses, the writes with a JSON request body, error answers
    as application/problem+json, and every $ref resolving inside the document; the inbound webhook's body
    per type and every outbound event (the `webhooks` section) with its body."""
    resp = requests.get(f"{embedded}/api/v1/openapi.json", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    validate(doc)  # a valid OpenAPI 3.1 document (openapi-spec-validator): client generators accept it
    assert doc["info"]["title"] and doc["info"]["version"]
    assert isinstance(doc["paths"], dict) and doc["paths"]

    published = {(method, _template(path)) for path, ops in doc["paths"].items() for method in ops}
    missing = {(m, p) for m, p in CONTRACT if (m, _template(p)) not in published}
    assert not missing, f"API.md operations missing from openapi.json: {sorted(missing)}"

    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("responses"), (method, path)
            for name in re.findall(r"\{([^}]+)\}", path):
                assert any(p["in"] == "path" and p["name"] == name for p in op.get("parameters", [])), \
                    (method, path, name)
            if (method, _template(path)) in {(m, _template(p)) for m, p in CONTRACT - NO_BODY} and method in ("post", "put"):
                assert "application/json" in op["requestBody"]["content"], (method, path)
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and "content" in answer:
                    assert "application/problem+json" in answer["content"], (method, path, status)

    schemas = doc["components"]["schemas"]
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc)):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert {"type", "title", "status", "detail", "code"} <= set(schemas["Problem"]["properties"])

    # the webhooks both ways: each inbound type with the schema of its data, each outbound event of API.md
    inbound = doc["paths"]["/webhooks/{platform}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    kinds = {v["properties"]["type"]["const"]: v["properties"]["data"] for v in inbound["oneOf"]}
    assert set(kinds) == {"verification.completed", "person.updated", "person.deceased", "relationship.ended",
                          "binding.unbind_requested"}
    assert all(data.get("properties") or data.get("allOf") for data in kinds.values()), kinds
    assert set(doc["webhooks"]) >= {"binding.invited", "binding.verification_requested", "binding.face_verified",
                                    "binding.accepted", "binding.authorized", "binding.unbound", "binding.declined",
                                    "binding.cancelled", "binding.expired", "binding.verification_failed",
                                    "binding.rejected", "verification.session_requested",
                                    "settlement.completed", "settlement.reversed"}
    for kind, hook in doc["webhooks"].items():
        sent = hook["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert sent["properties"]["type"]["const"] == kind
        expected = {"verification.session_requested": "subject"}.get(
            kind, "settlement" if kind.startswith("settlement.") else "binding")
        assert expected in sent["properties"]["data"]["properties"], kind
    # every success status is documented: a person registered again is 200, a new one 201; the headers too
    assert {"200", "201"} <= set(doc["paths"]["/api/v1/persons"]["post"]["responses"])
    invite = doc["paths"]["/api/v1/bindings"]["post"]["responses"]
    assert "Idempotent-Replayed" in invite["201"]["headers"] and "Retry-After" in invite["429"]["headers"]
    # a platform reads what became of its webhook; every operation documents the refusals any route may give
    assert doc["paths"]["/api/v1/webhooks/{webhook_id}"]["get"]["responses"]["200"]["content"]
    assert all("default" in op["responses"] for path, ops in doc["paths"].items() if path.startswith("/api/v1")
               for op in ops.values())
    # the problem pages are part of the contract (every problem's `type` points there), and a write's
    # Idempotency-Key is 1 to 255 characters, a malformed one 422
    assert "get" in doc["paths"]["/api/v1/problems/{code}"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            keys = [p for p in op.get("parameters", []) if p["name"] == "Idempotency-Key"]
            if path.startswith("/api/v1") and method in ("post", "put"):
                assert keys and keys[0]["schema"]["minLength"] == 1 and "422" in op["responses"], (method, path)


def test_problem_codes_are_documented(embedded):
    """Given the problem types Gongji answers with
    When a client follows a problem's `type` (/api/v1/problems/<code>)
    Then each code of the README is documented there with its status; an unknown code is 404."""
    for code, status in (("malformed", 400), ("unauthorized", 401), ("bad_signature", 401),
                         ("stale_timestamp", 401), ("not_your_binding", 403), ("region_not_served", 403),
                         ("platform_not_allowed", 403),
                         ("not_found", 404), ("illegal_transition", 409), ("conflict", 409),
                         ("invalid_id_number", 422), ("commitment_required", 422), ("too_frequent", 429)):
        doc = requests.get(f"{embedded}/api/v1/problems/{code}", timeout=30)
        assert doc.status_code == 200, (code, doc.text)
        assert doc.json()["code"] == code and doc.json()["status"] == status
    assert_problem(requests.get(f"{embedded}/api/v1/problems/no_such_code", timeout=30), 404, "not_found")
    listed = requests.get(f"{embedded}/api/v1/problems", timeout=30).json()["problems"]  # the whole list
    assert [p["code"] for p in listed] == sorted(p["code"] for p in listed)
    assert {p["code"]: p["status"] for p in listed}["too_frequent"] == 429 and len(listed) >= 30


def test_answers_never_carry_an_unmasked_id_number(embedded, js, dev_keys):
    """Given a lifecycle over HTTP: registrations, a look-up, a face-path binding from invitation to unbinding,
    a guardian-path binding, the family views, and refusals that concern the numbers
    When every answer body is scanned
    Then none contains any of the 18-character ID numbers used (nor anything shaped like one), while the
    masked forms (`320***********1234`) are there."""
    _, history = full_life(js, embedded, "facecheck", dev_keys["facecheck"][1])
    assert life_events(history) == LIFE_EVENTS
    parent = js.person("320100")
    child = js.person("320100", birth=child_birth(), insurance_type="resident")
    b = js.invited(parent, child, "child")
    js.family(parent), js.family(child), js.binding(b["id"]), js.history(b["id"])
    js.post("/api/v1/persons/lookup", {"id_number": parent.id_number})
    js.post("/api/v1/persons/lookup", {"id_number": " " + child.id_number.lower() + " "})
    js.invite(parent, child, "child")                                   # duplicate_binding
    js.invite(parent, parent, "child")                                  # self_binding
    js.invite(parent, child, "child", "JS-1999-01")                     # commitment_required
    js.invite(parent, child, "child", beneficiary_name="某某")           # name_mismatch
    js.post("/api/v1/persons/lookup", {"id_number": id_number()})        # not_found
    js.command(b["id"], "accept", parent)                               # not_your_binding
    js.post("/api/v1/persons", {"id_number": parent.id_number, "name": "x", "insurance_type": "bogus",
                                "insurance_status": "active", "region_code": "320100"})  # validation_failed
    js.ok(b["id"], "unbind", child)

    used = issued_numbers()  # every number this test process generated, these among them
    assert {parent.id_number, child.id_number} <= used
    seen = "\n".join(js.seen)
    assert len(js.seen) > 25
    assert "***********" in seen
    for number in used:
        assert number not in seen and number.lower() not in seen, number
    leaked = ID_NUMBER_RE.findall(seen)
    assert not leaked, f"answers carry ID-number-shaped values: {leaked}"


def test_idempotency_key_replays_and_refuses_reuse(js, dev_keys):
    """Given an eligible couple
    When the same invitation is posted twice with the same Idempotency-Key, then with that key and another body
    Then the second answer repeats the first (status, body) with `Idempotent-Replayed: true`, exactly one binding
    exists, and the third is 422 idempotency_key_reused, still with one binding."""
    grantor = js.person("320100")
    spouse = js.person("320100", insurance_type="resident")
    parent = js.person("320100", birth=date(1940, 2, 2), insurance_type="resident")  # born before any grantor
    key = {"Idempotency-Key": f"e2e-{id_number()}"}

    first = js.invite(grantor, spouse, "spouse", headers=key)
    second = js.invite(grantor, spouse, "spouse", headers=key)

    assert first.status_code == 201, first.text
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.headers.get("Idempotent-Replayed") is None
    assert [b["id"] for b in js.family(grantor)["as_grantor"]] == [first.json()["id"]]

    reused = js.invite(grantor, parent, "parent", headers=key)
    assert_problem(reused, 422, "idempotency_key_reused")
    assert [b["id"] for b in js.family(grantor)["as_grantor"]] == [first.json()["id"]]
    assert js.family(parent)["as_beneficiary"] == []
    # a key belongs to its platform: the same key from another platform is a different request
    other = Api(js.base, dev_keys["national"][0]).invite(grantor, parent, "parent", headers=key)
    assert other.status_code == 201, other.text


def test_an_idempotency_key_retry_written_differently_is_the_same_request(js):
    """Given an invitation posted with an Idempotency-Key
    When its retry carries the same JSON written another way (keys in another order, other spacing, a
    character escaped), and then a body differing in one value
    Then the retry is replayed (one binding), and the other body is 422 idempotency_key_reused: the key
    guards what was asked, not how a client library happened to write it."""
    grantor, spouse = js.person("320100"), js.person("320100", insurance_type="resident")
    key = {"Idempotency-Key": f"e2e-{id_number()}"}
    body = js.invite_body(grantor, spouse, "spouse")
    first = js.post("/api/v1/bindings", body, headers=key)
    assert first.status_code == 201, first.text
    rewritten = "{\n  " + ",\n  ".join(json.dumps(k) + " : " + json.dumps(v, ensure_ascii=True)
                                        for k, v in reversed(list(body.items()))) + "\n}"
    again = js.request("POST", "/api/v1/bindings", data=rewritten, headers=key)
    assert (again.status_code, again.json()) == (201, first.json()) and again.headers["Idempotent-Replayed"] == "true"
    changed = js.post("/api/v1/bindings", {**body, "channel": "counter"}, headers=key)
    assert_problem(changed, 422, "idempotency_key_reused")
    assert [b["id"] for b in js.family(grantor)["as_grantor"]] == [first.json()["id"]]


def test_idempotency_key_replays_a_refusal_and_a_command(js):
    """Given an invitation refused for its commitment version, sent with an Idempotency-Key
    When it is sent again with that key
    Then the same refusal is replayed as it was (problem+json; nothing is re-run), and a command (cancel)
    replays the same way
    without a second transition."""
    grantor = js.person("320100")
    spouse = js.person("320100", insurance_type="resident")
    key = {"Idempotency-Key": f"e2e-refused-{id_number()}"}
    first = js.invite(grantor, spouse, "spouse", "JS-1999-01", headers=key)
    again = js.invite(grantor, spouse, "spouse", "JS-1999-01", headers=key)
    assert_problem(first, 422, "commitment_required")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"] == "application/problem+json"

    b = js.invited(grantor, spouse)
    key = {"Idempotency-Key": f"e2e-cancel-{b['id']}"}
    one = js.post(f"/api/v1/bindings/{b['id']}/cancel", grantor.actor(), headers=key)
    two = js.post(f"/api/v1/bindings/{b['id']}/cancel", grantor.actor(), headers=key)
    assert one.status_code == 200 and one.json()["state"] == "cancelled", one.text
    assert (two.status_code, two.json()) == (200, one.json())
    assert [t["event"] for t in js.history(b["id"])] == ["invite", "cancel"]


def test_duplicate_webhook_id_changes_nothing(embedded, js, dev_keys):
    """Given a binding made face-verified by a signed `verification.completed`
    When the same webhook-id arrives again (validly signed, even with a `failed` result in its body)
    Then the answer is 200 with duplicate true and the first delivery's id, and the binding's state, version
    and history are unchanged."""
    secret = dev_keys["facecheck"][1]
    grantor = js.person("320100")
    beneficiary = js.person("320100", insurance_type="resident")
    b = js.invited(grantor, beneficiary)
    vid = js.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
    msg_id = f"msg_dup_{b['id']}"
    first = post_webhook(embedded, "facecheck", secret, verification_completed(vid, b["id"]), msg_id=msg_id)
    assert first.status_code == 202 and first.json()["duplicate"] is False, first.text
    verified = wait_state(js, b["id"], "face_verified")
    before = js.binding(b["id"]), js.history(b["id"])

    for result in ("passed", "failed"):
        again = post_webhook(embedded, "facecheck", secret, verification_completed(vid, b["id"], result),
                             msg_id=msg_id)
        assert again.status_code == 200, again.text
        assert again.json() == {"received": first.json()["received"], "duplicate": True}
    assert (js.binding(b["id"]), js.history(b["id"])) == before
    assert verified["version"] == 3


def test_region_policy_has_every_field(js):
    """Given the seeded regions
    When a platform reads 320100 (南京) and 650100 (乌鲁木齐)
    Then each answer has every field API.md lists, with the seeded policy values; 999999 is 404."""
    nj = js.get("/api/v1/regions/320100")
    assert nj.status_code == 200, nj.text
    region = nj.json()
    assert set(REGION_FIELDS) <= set(region), set(REGION_FIELDS) - set(region)
    assert (region["code"], region["province_code"], region["platform"]) == ("320100", "32", "jiangsu")
    assert "南京" in region["name"]
    assert region["commitment_version"] == "JS-2024-01"
    assert set(region["allowed_relationships"]) == {"spouse", "parent", "child", "sibling", "grandparent",
                                                    "grandchild"}
    assert region["intra_province"] is True and region["cross_province"] is True
    assert (region["invitation_ttl_s"], region["verification_timeout_s"], region["max_verification_attempts"]) == \
        (7 * 86400, 600, 3)
    assert region["member_limits"] == {"beneficiaries_per_grantor": 10, "grantors_per_beneficiary": 3}
    assert region["frequency_limit"] == {"max_changes": 10, "window_s": 86400}
    assert region["deduction_order_policy"] in ("user_order", "latest_bound_first", "single_grantor")

    xj = js.get("/api/v1/regions/650100").json()
    assert set(REGION_FIELDS) <= set(xj)
    assert (xj["commitment_version"], xj["cross_province"], xj["platform"]) == ("XJ-2023-02", False, "xinjiang")
    assert set(xj["allowed_relationships"]) == {"spouse", "parent", "child"}
    assert xj["member_limits"]["beneficiaries_per_grantor"] == 6 and xj["frequency_limit"]["max_changes"] == 6
    assert "阿克苏" in js.get("/api/v1/regions/652900").json()["name"]
    assert "苏州" in js.get("/api/v1/regions/320500").json()["name"]
    assert_problem(js.get("/api/v1/regions/999999"), 404, "not_found")


def test_health_readiness_and_metrics(embedded, js):
    """Given a running server that has answered some API requests
    When /healthz, /readyz and /metrics are fetched without a key
    Then /healthz and /readyz are 200 with status ok (the database checked), and /metrics is Prometheus text
    counting the API requests."""
    js.get("/api/v1/regions/320100")
    health = requests.get(f"{embedded}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = requests.get(f"{embedded}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok" and ready.json()["checks"]["database"] == "ok"
    metrics = requests.get(f"{embedded}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert "gongji_http_requests_total" in metrics.text
    assert re.search(r'gongji_http_requests_total\{[^}]*endpoint="/api/v1/regions/<code>"[^}]*\} [1-9]',
                     metrics.text), metrics.text[:2000]


def test_serve_without_the_simulator_has_no_development_platforms(tmp_path_factory, dev_keys):
    """Given `gongji serve --no-simulator` on a fresh working directory (nothing registered)
    When the development keys of the seeded platforms are used
    Then they are refused (401): only platforms registered with `gongji platform add` exist (API.md), while
    the regions are seeded."""
    from .conftest import _serve

    server = _serve(tmp_path_factory, "no-simulator", ["--no-simulator"])
    base = next(server)
    try:
        for pid in ("national", "jiangsu"):
            answer = requests.get(f"{base}/api/v1/regions/320100", timeout=30,
                                  headers={"Authorization": f"Bearer {dev_keys[pid][0]}"})
            assert_problem(answer, 401, "unauthorized")
    finally:
        next(server, None)
