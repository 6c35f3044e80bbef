"""Every answer a platform gets matches the published OpenAPI document: the status is one the operation
lists, and the body validates against the schema given for it. Client generators and validating proxies
at the provincial platforms work from that document; an answer it does not allow (a status, a field, an
enum value) breaks them even when the answer itself is right."""
from __future__ import annotations

import re
import uuid

import requests
from jsonschema import Draft202012Validator

from .support import Api, child_birth, full_life, id_number, poll, post_webhook, verification_completed


def _operations(doc: dict) -> list[tuple[str, re.Pattern, dict]]:
    """(method, path pattern, operation) for every documented operation; literal paths before templated."""
    ops = []
    for path, by_method in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method, op in by_method.items():
            ops.append((method.upper(), pattern, op, path.count("{")))
    return [(m, p, op) for m, p, op, _ in sorted(ops, key=lambda x: x[3])]


def _violations(doc: dict, schema: dict, body, label: str) -> list[str]:
    """What of `body` the document's `schema` (its $refs resolved in the document) does not allow."""
    found = Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(body)
    return [f"{label} at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}" for e in found]


def _mismatches(doc: dict, answers: list[tuple[str, str, requests.Response]]) -> list[str]:
    ops, problems = _operations(doc), []
    for method, path, resp in answers:
        bare = path.split("?", 1)[0]
        op = next((op for m, pattern, op in ops if m == method and pattern.match(bare)), None)
        if op is None:
            problems.append(f"{method} {bare}: not in the document")
            continue
        # `default` stands for the refusals any route may give (problem+json), never for a success
        declared = op["responses"].get(str(resp.status_code)) or \
            (op["responses"].get("default") if resp.status_code >= 400 else None)
        if declared is None:
            problems.append(f"{method} {bare}: {resp.status_code} is not a documented answer "
                            f"({sorted(op['responses'])})")
            continue
        media = resp.headers.get("Content-Type", "").split(";")[0]
        content = (declared.get("content") or {}).get(media)
        if content is None:
            if resp.content:
                problems.append(f"{method} {bare} {resp.status_code}: {media} is not documented")
            continue
        problems += _violations(doc, content["schema"], resp.json(), f"{method} {bare} {resp.status_code}")
    return problems


def test_every_answer_matches_the_openapi_document(embedded, js: Api, xj: Api, dev_keys):
    """Given the published /api/v1/openapi.json
    When a platform registers persons, looks them up, takes a face-path binding through its whole life and
    a guardian-path one to a settlement and its reversal, reads histories, families, the webhook it sent,
    its sync status and feed, and meets refusals (unknown ids, rules, a wrong actor, a bad body, another
    province's binding, a wrong key)
    Then every answer's status is one its operation lists and every JSON body validates against the schema
    the document gives for that status (problem+json included)."""
    doc = requests.get(f"{embedded}/api/v1/openapi.json", timeout=30).json()
    verifier = Api(embedded, dev_keys["facecheck"][0])
    nobody = Api(embedded, "gk_not_a_key")

    final, _ = full_life(js, embedded, "facecheck", dev_keys["facecheck"][1])
    parent = js.person("320100", balance_fen=200_000)
    child = js.person("320100", birth=child_birth(), insurance_type="resident", balance_fen=1_000)
    b = js.invited(parent, child, "child")
    js.ok(b["id"], "authorization", parent, amount_fen=30_000)
    js.binding(b["id"]), js.history(b["id"]), js.family(parent), js.family(child)
    js.post("/api/v1/persons/lookup", {"id_number": parent.id_number})
    js.get("/api/v1/regions/320100")
    js.put(f"/api/v1/persons/{child.id}/deduction-order", {"binding_ids": [b["id"]]})
    settled = js.post("/api/v1/settlements", {
        "reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": child.id_number, "amount_fen": 5_000,
        "category": "outpatient", "institution_code": "H32010000001"})
    assert settled.status_code == 201, settled.text
    js.get(f"/api/v1/settlements/{settled.json()['id']}")
    js.post(f"/api/v1/settlements/{settled.json()['id']}/reversal")
    js.get("/api/v1/sync/status"), js.get("/api/v1/sync/bindings?limit=5")

    # a second face-path invitation whose verification is started, then the webhook the provider sent read back
    other = js.person("320100", insurance_type="resident")
    pending = js.invited(parent, other, "spouse")
    vid = js.command(pending["id"], "verification", other).json()["verification_id"]
    msg = f"msg_{uuid.uuid4().hex}"
    post_webhook(embedded, "facecheck", dev_keys["facecheck"][1], verification_completed(vid, pending["id"]),
                 msg_id=msg)
    verifier.get(f"/api/v1/webhooks/{msg}")
    js.binding(pending["id"])

    # Xinjiang's service hall checks a relative's documents in person (verification_method in_person)
    hall = xj.invited(xj.person("650100"), xj.person("650100", insurance_type="resident"), "spouse", "XJ-2023-02")
    checked = xj.post(f"/api/v1/bindings/{hall['id']}/verification/in-person",
                      {"staff_id": "0042", "reason": "身份证原件核验"})
    assert checked.json()["verification_method"] == "in_person", checked.text
    xj.get("/api/v1/regions/650100"), xj.history(hall["id"])

    js.get("/api/v1/bindings/bnd_nope")                                  # not_found
    js.invite(parent, child, "child")                                   # duplicate_binding
    js.command(b["id"], "accept", parent)                               # not_your_binding
    js.command(final["id"], "unbind", js.person("320100"))              # not_your_binding (a stranger)
    js.post("/api/v1/persons", {"id_number": id_number(), "name": "x", "insurance_type": "bogus",
                                "insurance_status": "active", "region_code": "320100"})  # validation_failed
    js.request("POST", "/api/v1/bindings", data="{not json")            # malformed
    xj.get(f"/api/v1/bindings/{b['id']}")                               # another province's: not_found
    nobody.get(f"/api/v1/bindings/{b['id']}")                           # unauthorized

    answers = js.answers + xj.answers + verifier.answers + nobody.answers
    assert len(answers) >= 35
    problems = _mismatches(doc, answers)
    assert not problems, "answers the OpenAPI document does not allow:\n" + "\n".join(problems)


def test_every_event_delivered_matches_the_openapi_document(production):
    """Given the production shape (gunicorn, dramatiq worker, scheduler, PostgreSQL, Redis) with fake national
    and Jiangsu platforms registered for webhooks
    When a face-path binding lives its whole life and a guardian-path one is settled against and the
    settlement reversed
    Then the platforms receive every event of both bindings and both settlement events, and each body
    validates against the schema of its type in the document's `webhooks` section."""
    doc = requests.get(f"{production.base}/api/v1/openapi.json", timeout=30).json()
    api = Api(production.base, production.jiangsu_key)
    final, _ = full_life(api, production.base, "facecheck", production.facecheck_secret, poll_timeout=60)
    parent = api.person("320100", balance_fen=200_000)
    child = api.person("320100", birth=child_birth(), insurance_type="resident", balance_fen=1_000)
    b = api.invited(parent, child, "child")
    api.ok(b["id"], "authorization", parent, amount_fen=30_000)
    settled = api.post("/api/v1/settlements", {
        "reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": child.id_number, "amount_fen": 5_000,
        "category": "outpatient", "institution_code": "H32010000001"})
    assert settled.status_code == 201, settled.text
    sid = settled.json()["id"]
    assert api.post(f"/api/v1/settlements/{sid}/reversal").status_code == 200

    national, province = production.national_receiver, production.province_receiver

    def ours(receiver) -> list:
        return [e for e in list(receiver.events) if e.binding_id in (final["id"], b["id"])
                or (e.payload.get("data") or {}).get("settlement", {}).get("id") == sid]

    # every version of both bindings (the guardian one's after its authorization: `b` is the invitation's
    # answer, one version short, which let the wait end before the last event came), and the two settlement events
    wanted = final["version"] + api.binding(b["id"])["version"] + 2
    poll(lambda: len(ours(national)) >= wanted and len(ours(province)) >= wanted, timeout=120,
         what="every event at both platforms")
    received = ours(national) + ours(province)
    assert {"binding.invited", "binding.face_verified", "binding.unbound", "binding.accepted",
            "settlement.completed", "settlement.reversed"} <= {e.type for e in received}
    problems = []
    for event in received:
        hook = doc["webhooks"].get(event.type)
        if hook is None:
            problems.append(f"{event.type}: not in the document's webhooks")
            continue
        problems += _violations(doc, hook["post"]["requestBody"]["content"]["application/json"]["schema"],
                                event.payload, event.type)
    assert not problems, "events the OpenAPI document does not allow:\n" + "\n".join(sorted(set(problems)))
