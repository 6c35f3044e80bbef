"""Every error code over HTTP: status, stable `code`, `application/problem+json`, and a refused command
writes nothing (the family views, and for transitions the binding's version and history, are unchanged)."""
from __future__ import annotations

import base64
import json
import secrets
from datetime import date, datetime, timedelta, timezone

import pytest
import requests

from .support import (Api, Person, assert_problem, chinese_name, child_birth, id_number, post_webhook,
                      signed_headers, verification_completed, wait_state)

FACECHECK = "facecheck"


# --- helpers -----------------------------------------------------------------------------------------

def families(api: Api, *people: Person) -> list[dict]:
    return [api.family(p) for p in people]


PROVIDER_FIELDS = ("provider_status", "provider_session_id", "provider_requests", "provider_error")


def snapshot(api: Api, binding_id: str) -> tuple[dict, list[dict]]:
    """The binding (with its version) and its history; without the provider-session bookkeeping of its
    attempts, which a worker writes asynchronously and which is no part of the binding's state."""
    b = api.binding(binding_id)
    b["verifications"] = [{k: v for k, v in a.items() if k not in PROVIDER_FIELDS} for a in b["verifications"]]
    return b, api.history(binding_id)


def couple(api: Api, region: str = "320100") -> tuple[Person, Person]:
    return api.person(region), api.person(region, insurance_type="resident")


def face_verified(api: Api, base: str, secret: str) -> tuple[dict, Person, Person]:
    grantor, beneficiary = couple(api)
    b = api.invited(grantor, beneficiary)
    vid = api.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
    assert post_webhook(base, FACECHECK, secret, verification_completed(vid, b["id"])).status_code == 202
    return wait_state(api, b["id"], "face_verified"), grantor, beneficiary


def guardian_binding(api: Api) -> tuple[dict, Person, Person]:
    """A binding that is `accepted` at once (a child under 16, invited by a parent)."""
    parent = api.person("320100")
    child = api.person("320100", birth=child_birth(), insurance_type="resident")
    b = api.invited(parent, child, "child")
    assert b["state"] == "accepted"
    return b, parent, child


@pytest.fixture
def facecheck_secret(dev_keys) -> str:
    return dev_keys[FACECHECK][1]


# --- 400 malformed -----------------------------------------------------------------------------------

def test_malformed_json_is_400_and_writes_nothing(js):
    """Given a registered couple and an accepted binding
    When bodies arrive that are not JSON, are a JSON array, a JSON string, empty, or nested 100,000 deep
    Then each is 400 malformed (never a 500), and nothing changed."""
    grantor, beneficiary = couple(js)
    b, parent, child = guardian_binding(js)
    before = families(js, grantor, beneficiary, parent), snapshot(js, b["id"])

    for path in ("/api/v1/persons", "/api/v1/bindings", f"/api/v1/bindings/{b['id']}/unbind"):
        for raw in ('{"grantor_id_number": ', "[1, 2, 3]", "[]", '"a string"', "", "\xff\xfe", "[" * 100_000):
            resp = js.request("POST", path, data=raw.encode("latin-1"))
            assert_problem(resp, 400, "malformed")
    resp = js.request("PUT", f"/api/v1/bindings/{b['id']}/authorization", data="[{\"amount_fen\": 1}]")
    assert_problem(resp, 400, "malformed")

    assert (families(js, grantor, beneficiary, parent), snapshot(js, b["id"])) == before


# --- 401 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer gk_not_a_key",
                                           "Basic Z2tfZGV2X2ppYW5nc3U6", "gk_dev_jiangsu"])
def test_missing_or_unknown_bearer_is_401(embedded, authorization):
    """Given no key, an empty or unknown bearer key, or another scheme
    When a platform reads a region, registers a person or invites
    Then each answer is 401 unauthorized, naming the Bearer scheme."""
    api = Api(embedded, None)
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_problem(api.get("/api/v1/regions/320100", headers=headers), 401, "unauthorized")
    body = {"id_number": id_number(), "name": "王五", "insurance_type": "employee", "insurance_status": "active",
            "region_code": "320100", "real_name_verified": True}
    assert_problem(api.post("/api/v1/persons", body, headers=headers), 401, "unauthorized")
    answer = api.post("/api/v1/bindings", {}, headers=headers)
    assert_problem(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")  # the scheme it wants (RFC 9110)


def test_webhook_signature_and_timestamp_refusals_store_nothing(embedded, js, facecheck_secret):
    """Given an invited binding with an open face-verification attempt
    When its `verification.completed` arrives signed with a wrong secret, with a tampered body, with malformed
    or missing signature headers, or with a timestamp 10 minutes old or 10 minutes in the future
    Then each is 401 (bad_signature or stale_timestamp), the binding is unchanged, and nothing was stored:
    the same webhook-id, properly signed, is then accepted as new (202, not a duplicate) and applied."""
    grantor, beneficiary = couple(js)
    b = js.invited(grantor, beneficiary)
    vid = js.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
    before = snapshot(js, b["id"])
    msg_id = f"msg_{secrets.token_hex(8)}"
    good = json.dumps(verification_completed(vid, b["id"]))
    url = f"{embedded}/webhooks/{FACECHECK}"

    def send(body: str, headers: dict) -> requests.Response:
        return requests.post(url, data=body.encode(), headers=headers, timeout=30)

    wrong_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    assert_problem(send(good, signed_headers(wrong_secret, good, msg_id=msg_id)), 401, "bad_signature")
    tampered = good.replace('"passed"', '"failed"')
    assert tampered != good
    assert_problem(send(tampered, signed_headers(facecheck_secret, good, msg_id=msg_id)), 401, "bad_signature")
    valid = signed_headers(facecheck_secret, good, msg_id=msg_id)
    sig = valid["webhook-signature"]
    flipped = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]  # same shape, other bytes
    for signature in ("garbage", "v1", "v1,", "v1,!!!not-base64!!!", "v2," + sig[3:], flipped):
        assert_problem(send(good, {**valid, "webhook-signature": signature}), 401, "bad_signature")
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: v for k, v in valid.items() if k != missing}
        assert_problem(send(good, headers), 401, "bad_signature")
    assert_problem(send(good, {**valid, "webhook-timestamp": "yesterday"}), 401, "bad_signature")
    # another message's id under this signature does not verify either
    assert_problem(send(good, {**valid, "webhook-id": msg_id + "x"}), 401, "bad_signature")
    now = datetime.now(timezone.utc)
    for at in (now - timedelta(minutes=10), now + timedelta(minutes=10)):
        resp = send(good, signed_headers(facecheck_secret, good, msg_id=msg_id, at=at))
        assert_problem(resp, 401, "stale_timestamp")

    assert snapshot(js, b["id"]) == before
    first = post_webhook(embedded, FACECHECK, facecheck_secret, good, msg_id=msg_id)
    assert first.status_code == 202, first.text
    assert first.json()["duplicate"] is False
    assert wait_state(js, b["id"], "face_verified")["version"] == before[0]["version"] + 1


def test_a_province_may_not_send_verification_results(embedded, js, dev_keys):
    """Given an invited binding with an open attempt
    When the Jiangsu platform (a province, not a verifier) sends a correctly signed `verification.completed`
    Then 403 platform_not_allowed and the binding is unchanged."""
    grantor, beneficiary = couple(js)
    b = js.invited(grantor, beneficiary)
    vid = js.ok(b["id"], "verification", beneficiary, status=202)["verification_id"]
    before = snapshot(js, b["id"])
    resp = post_webhook(embedded, "jiangsu", dev_keys["jiangsu"][1], verification_completed(vid, b["id"]))
    assert_problem(resp, 403, "platform_not_allowed")
    assert snapshot(js, b["id"]) == before


# --- 403 ---------------------------------------------------------------------------------------------

def test_not_your_binding(embedded, js, facecheck_secret):
    """Given a face-verified binding and a stranger registered in the same region
    When the stranger accepts, the grantor accepts, an unregistered person accepts, the beneficiary
    authorizes, the grantor declines and the stranger unbinds
    Then each is 403 not_your_binding, the version and history are unchanged, and the beneficiary can
    still accept."""
    b, grantor, beneficiary = face_verified(js, embedded, facecheck_secret)
    stranger = js.person("320100")
    unregistered = Person(id_number(), chinese_name(), "320100")
    before = snapshot(js, b["id"]), families(js, grantor, beneficiary, stranger)

    for command, actor, extra in (("accept", stranger, {}), ("accept", grantor, {}), ("accept", unregistered, {}),
                                  ("authorization", beneficiary, {"amount_fen": 100}), ("decline", grantor, {}),
                                  ("cancel", beneficiary, {}), ("unbind", stranger, {}),
                                  ("verification", grantor, {})):
        assert_problem(js.command(b["id"], command, actor, **extra), 403, "not_your_binding")

    assert (snapshot(js, b["id"]), families(js, grantor, beneficiary, stranger)) == before
    assert js.ok(b["id"], "accept", beneficiary)["state"] == "accepted"


def test_a_command_made_from_an_old_view_is_a_conflict(embedded, js, facecheck_secret):
    """Given a face-verified binding at version v
    When the beneficiary's accept is sent with version v-1 (the app showed an older binding), and each other
    command the same way, Then 409 conflict and nothing changes; with version v, or without one, it is done:
    a platform can make a command conditional on what its user saw."""
    b, grantor, beneficiary = face_verified(js, embedded, facecheck_secret)
    v = js.binding(b["id"])["version"]
    before = snapshot(js, b["id"])
    for command, actor, extra in (("accept", beneficiary, {}), ("decline", beneficiary, {}),
                                  ("cancel", grantor, {}), ("verification", beneficiary, {})):
        problem = assert_problem(js.command(b["id"], command, actor, version=v - 1, **extra), 409, "conflict")
        assert f"version {v}" in problem["detail"]
    assert snapshot(js, b["id"]) == before
    accepted = js.ok(b["id"], "accept", beneficiary, version=v)
    assert accepted["state"] == "accepted" and accepted["version"] == v + 1
    assert_problem(js.command(b["id"], "authorization", grantor, amount_fen=100, version=v), 409, "conflict")
    assert js.ok(b["id"], "authorization", grantor, amount_fen=100)["state"] == "authorized"
    assert_problem(js.command(b["id"], "unbind", grantor, version=v + 1), 409, "conflict")
    assert_problem(js.command(b["id"], "accept", beneficiary, version=0), 422, "validation_failed")


def test_actor_named_by_opaque_id(embedded, js, facecheck_secret):
    """Given a face-verified binding and a stranger, both known by their opaque person ids
    When a command names its actor by id (`{"kind": "person", "id": "psn_…"}`, as the OpenAPI schema offers)
    Then the stranger accepting is 403 not_your_binding and the beneficiary accepting is 200 accepted."""
    b, grantor, beneficiary = face_verified(js, embedded, facecheck_secret)
    stranger = js.person("320100")
    resp = js.post(f"/api/v1/bindings/{b['id']}/accept", {"actor": {"kind": "person", "id": stranger.id}})
    assert_problem(resp, 403, "not_your_binding")
    resp = js.post(f"/api/v1/bindings/{b['id']}/accept", {"actor": {"kind": "person", "id": beneficiary.id}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "accepted"


def test_region_not_served(js, xj):
    """Given the Xinjiang platform's key
    When it registers a person insured in 南京 (320100), or invites on behalf of a Jiangsu grantor (also
    with a wrong beneficiary name, or a grantor who is not eligible)
    Then the registration is 403 region_not_served, and each invitation is answered exactly as for an ID
    number nobody holds (it learns nothing of the Jiangsu persons: whether they exist, their eligibility,
    their names); the person was not created and nothing was written."""
    number = id_number()
    body = {"id_number": number, "name": "赵六", "insurance_type": "employee", "insurance_status": "active",
            "region_code": "320100", "real_name_verified": True}
    assert_problem(xj.post("/api/v1/persons", body), 403, "region_not_served")
    assert_problem(js.post("/api/v1/persons/lookup", {"id_number": number}), 404, "not_found")

    grantor, beneficiary = couple(js)
    before = families(js, grantor, beneficiary)
    nobody = Person(id_number(), "无此人", "320100")
    unknown = xj.invite(nobody, beneficiary)
    assert_problem(unknown, 422, "grantor_not_eligible")
    resident = js.person("320100", insurance_type="resident")
    for answer in (xj.invite(grantor, beneficiary), xj.invite(grantor, beneficiary, beneficiary_name="不是这个名字"),
                   xj.invite(resident, beneficiary)):
        assert (answer.status_code, answer.json()["code"], answer.json()["detail"]) == \
            (unknown.status_code, unknown.json()["code"], unknown.json()["detail"])
    assert_problem(js.invite(grantor, beneficiary, beneficiary_name="不是这个名字"), 422, "name_mismatch")
    assert_problem(js.invite(resident, beneficiary), 422, "grantor_not_eligible")
    assert families(js, grantor, beneficiary) == before


# --- 404 ---------------------------------------------------------------------------------------------

def test_not_found(embedded, js, xj, nat, facecheck_secret):
    """Given a Jiangsu binding
    When a platform asks for an unknown binding, person, region or route, fires a command on an unknown binding,
    looks up an unregistered ID number, posts to /webhooks/nope, or (as Xinjiang) reads the Jiangsu binding or
    looks up its grantor
    Then each is 404 not_found (the national platform finds the grantor)."""
    grantor, beneficiary = couple(js)
    b = js.invited(grantor, beneficiary)
    before = snapshot(js, b["id"])

    for path in ("/api/v1/bindings/bnd_nope", "/api/v1/bindings/bnd_nope/history", "/api/v1/persons/psn_nope/bindings",
                 "/api/v1/regions/999999", "/api/v1/no-such-thing"):
        assert_problem(js.get(path), 404, "not_found")
    assert_problem(js.command("bnd_nope", "accept", beneficiary), 404, "not_found")
    assert_problem(js.command("bnd_nope", "authorization", grantor, amount_fen=1), 404, "not_found")
    assert_problem(js.post("/api/v1/persons/lookup", {"id_number": id_number()}), 404, "not_found")
    assert_problem(post_webhook(embedded, "nope", facecheck_secret, {"type": "verification.completed", "data": {}}),
                   404, "not_found")
    # a platform that serves neither side cannot see (or probe) the binding, nor look up its persons (their
    # balance and insurance); the national platform, which serves every province, can
    hidden = xj.post("/api/v1/persons/lookup", {"id_number": grantor.id_number})
    unknown = xj.post("/api/v1/persons/lookup", {"id_number": id_number()})
    assert_problem(hidden, 404, "not_found")
    assert hidden.json()["detail"] == unknown.json()["detail"]  # indistinguishable from an unknown number
    assert nat.post("/api/v1/persons/lookup", {"id_number": grantor.id_number}).json()["id"] == grantor.id
    assert_problem(xj.get(f"/api/v1/bindings/{b['id']}"), 404, "not_found")
    assert_problem(xj.get(f"/api/v1/bindings/{b['id']}/history"), 404, "not_found")
    assert_problem(xj.command(b["id"], "cancel", grantor), 404, "not_found")

    assert snapshot(js, b["id"]) == before


# --- 409 ---------------------------------------------------------------------------------------------

def test_illegal_transition(js):
    """Given an invited binding and an unbound one
    When the invited one is accepted (no face check yet) or authorized, and the unbound one is unbound again,
    cancelled or authorized
    Then each is 409 illegal_transition and the bindings' versions and histories are unchanged."""
    grantor, beneficiary = couple(js)
    invited = js.invited(grantor, beneficiary)
    ended, parent, child = guardian_binding(js)
    assert js.ok(ended["id"], "unbind", parent, reason="测试")["state"] == "unbound"
    before = snapshot(js, invited["id"]), snapshot(js, ended["id"]), families(js, grantor, beneficiary, parent)

    assert_problem(js.command(invited["id"], "accept", beneficiary), 409, "illegal_transition")
    assert_problem(js.command(invited["id"], "authorization", grantor, amount_fen=100), 409, "illegal_transition")
    assert_problem(js.command(invited["id"], "unbind", grantor), 409, "illegal_transition")
    assert_problem(js.command(ended["id"], "unbind", parent), 409, "illegal_transition")
    assert_problem(js.command(ended["id"], "unbind", child), 409, "illegal_transition")
    assert_problem(js.command(ended["id"], "cancel", parent), 409, "illegal_transition")
    assert_problem(js.command(ended["id"], "authorization", parent, amount_fen=100), 409, "illegal_transition")

    after = snapshot(js, invited["id"]), snapshot(js, ended["id"]), families(js, grantor, beneficiary, parent)
    assert after == before
    assert after[1][0]["authorized_amount_fen"] is None


# --- 422 rules ---------------------------------------------------------------------------------------

def _bad_check_digit() -> str:
    good = id_number()
    return good[:17] + ("0" if good[17] != "0" else "1")


def _with_digit(first17: str) -> str:
    from workflows.idnumbers import with_check_digit
    return with_check_digit(first17)


@pytest.mark.parametrize("number", [
    pytest.param(_bad_check_digit(), id="bad-check-digit"),
    pytest.param(_with_digit("32010219990230123"), id="impossible-date-0230"),
    pytest.param(_with_digit("32010219991301123"), id="impossible-month-13"),
    pytest.param(_with_digit("32010220900101123"), id="future-date"),
    pytest.param(_with_digit("32010218800101123"), id="before-1900"),
    pytest.param("32010219800101123", id="17-characters"),
    pytest.param("3201021980010112345", id="19-characters"),
    pytest.param("32010219800101A23X", id="letter-inside"),
])
def test_invalid_id_number(js, number):
    """Given an ID number that is not a valid resident number
    When a platform registers a person with it, looks it up, or invites with it as either side's number
    Then each is 422 invalid_id_number (the look-up too: a number that cannot be one says nothing of anyone,
    and a 404 would read as "nobody holds it"), the detail does not echo it, and nothing was written."""
    body = {"id_number": number, "name": "钱七", "insurance_type": "employee", "insurance_status": "active",
            "region_code": "320100", "real_name_verified": True}
    problem = assert_problem(js.post("/api/v1/persons", body), 422, "invalid_id_number")
    assert number not in json.dumps(problem)
    looked_up = assert_problem(js.post("/api/v1/persons/lookup", {"id_number": number}), 422, "invalid_id_number")
    assert number not in json.dumps(looked_up)

    grantor, beneficiary = couple(js)
    before = families(js, grantor, beneficiary)
    bogus = Person(number, "钱七", "320100")
    assert_problem(js.invite(bogus, beneficiary), 422, "invalid_id_number")
    assert_problem(js.invite(grantor, bogus), 422, "invalid_id_number")
    assert families(js, grantor, beneficiary) == before


@pytest.mark.parametrize("grantor_kw", [
    pytest.param({"insurance_type": "resident"}, id="resident"),
    pytest.param({"insurance_type": "none"}, id="uninsured"),
    pytest.param({"insurance_status": "suspended"}, id="suspended"),
    pytest.param({"insurance_status": "ended"}, id="ended"),
    pytest.param({"real_name_verified": False}, id="not-real-name-verified"),
    pytest.param(None, id="not-registered"),
])
def test_grantor_not_eligible(js, grantor_kw):
    """Given a grantor who is not an active, real-name verified employee-insurance member (or unknown)
    When they invite an insured relative
    Then 422 grantor_not_eligible and nothing was written."""
    if grantor_kw is None:
        grantor = Person(id_number(), chinese_name(), "320100")
    else:
        grantor = js.person("320100", **grantor_kw)
    beneficiary = js.person("320100", insurance_type="resident")
    before = families(js, *(p for p in (grantor, beneficiary) if p.id))
    assert_problem(js.invite(grantor, beneficiary), 422, "grantor_not_eligible")
    assert families(js, *(p for p in (grantor, beneficiary) if p.id)) == before


@pytest.mark.parametrize("beneficiary_kw", [
    pytest.param({"insurance_type": "none"}, id="uninsured"),
    pytest.param({"insurance_type": "resident", "insurance_status": "suspended"}, id="suspended"),
    pytest.param({"insurance_type": "employee", "insurance_status": "ended"}, id="ended"),
    pytest.param(None, id="not-registered"),
])
def test_beneficiary_not_insured(js, beneficiary_kw):
    """Given a beneficiary without active employee or resident insurance (or unknown)
    When an eligible grantor invites them
    Then 422 beneficiary_not_insured and nothing was written."""
    grantor = js.person("320100")
    if beneficiary_kw is None:
        beneficiary = Person(id_number(), chinese_name(), "320100")
    else:
        beneficiary = js.person("320100", **beneficiary_kw)
    before = families(js, *(p for p in (grantor, beneficiary) if p.id))
    assert_problem(js.invite(grantor, beneficiary), 422, "beneficiary_not_insured")
    assert families(js, *(p for p in (grantor, beneficiary) if p.id)) == before


def test_relationship_not_allowed_in_xinjiang(xj):
    """Given a Xinjiang grantor and relative in 乌鲁木齐 (Xinjiang allows spouse, parent, child only)
    When the grantor invites the relative as a sibling, a grandparent, a grandchild or an unknown relation
    Then each is 422 relationship_not_allowed and nothing was written; as a parent it works."""
    grantor = xj.person("650100", birth=date(1985, 4, 4))
    relative = xj.person("650100", birth=date(1958, 8, 8), insurance_type="resident")  # born before: a parent
    before = families(xj, grantor, relative)
    for relationship in ("sibling", "grandparent", "grandchild", "cousin", ""):
        assert_problem(xj.invite(grantor, relative, relationship, "XJ-2023-02"), 422, "relationship_not_allowed")
    assert families(xj, grantor, relative) == before
    assert xj.invite(grantor, relative, "parent", "XJ-2023-02").status_code == 201


def test_relationship_mismatch(js):
    """Given a grantor born in 1970 and a relative born in 1995 (both adults: the face path)
    When the grantor invites the relative as a parent, then as a grandparent
    Then each is 422 relationship_mismatch naming the relationship, never a date, and nothing was written;
    as a child the invitation is taken."""
    grantor = js.person("320100", birth=date(1970, 3, 3))
    relative = js.person("320100", birth=date(1995, 6, 6), insurance_type="resident")
    before = families(js, grantor, relative)
    for relationship in ("parent", "grandparent"):
        refused = js.invite(grantor, relative, relationship)
        assert_problem(refused, 422, "relationship_mismatch")
        assert relationship in refused.json()["detail"] and "1995" not in refused.text
    assert families(js, grantor, relative) == before
    assert js.invite(grantor, relative, "child").status_code == 201


def test_self_binding(js):
    """Given an eligible grantor
    When they invite themselves
    Then 422 self_binding and nothing was written."""
    grantor = js.person("320100")
    before = js.family(grantor)
    assert_problem(js.invite(grantor, grantor), 422, "self_binding")
    # the same number written differently (a lower-case x, surrounding spaces) is still the same person
    same = Person(f"  {grantor.id_number.lower()} ", grantor.name, "320100")
    assert_problem(js.invite(grantor, same), 422, "self_binding")
    assert js.family(grantor) == before


def test_duplicate_binding(js):
    """Given an invited binding between two people
    When the grantor invites the same person again
    Then 422 duplicate_binding naming the existing binding, and nothing was written;
    once the first is cancelled (terminal), a new invitation is a new binding."""
    grantor, beneficiary = couple(js)
    first = js.invited(grantor, beneficiary)
    before = families(js, grantor, beneficiary)
    problem = assert_problem(js.invite(grantor, beneficiary), 422, "duplicate_binding")
    assert problem.get("existing_binding_id") == first["id"]
    assert families(js, grantor, beneficiary) == before

    assert js.ok(first["id"], "cancel", grantor)["state"] == "cancelled"
    again = js.invited(grantor, beneficiary)
    assert again["id"] != first["id"] and again["state"] == "invited"


def test_region_not_allowed_across_provinces(js, xj):
    """Given a Jiangsu grantor in 南京 and a Xinjiang relative in 乌鲁木齐 (Jiangsu allows cross-province sharing,
    Xinjiang does not), and the reverse pair
    When the grantor's platform invites
    Then each is 422 region_not_allowed and nothing was written."""
    js_grantor = js.person("320100")
    xj_relative = xj.person("650100", insurance_type="resident")
    before = js.family(js_grantor), xj.family(xj_relative)
    assert_problem(js.invite(js_grantor, xj_relative), 422, "region_not_allowed")

    xj_grantor = xj.person("650100")
    js_relative = js.person("320100", insurance_type="resident")
    assert_problem(xj.invite(xj_grantor, js_relative, "spouse", "XJ-2023-02"), 422, "region_not_allowed")
    assert (js.family(js_grantor), xj.family(xj_relative)) == before
    assert xj.family(xj_grantor)["as_grantor"] == [] and js.family(js_relative)["as_beneficiary"] == []


def test_commitment_required_carries_the_current_version(js):
    """Given an eligible couple in 南京, whose region's commitment letter is JS-2024-01
    When the grantor invites with an older version, another region's version, or none
    Then each is 422 commitment_required whose body carries commitment_version JS-2024-01, and nothing was
    written (the grantor's recorded commitment version is unchanged too)."""
    grantor, beneficiary = couple(js)
    before = families(js, grantor, beneficiary)
    for version in ("JS-2023-01", "XJ-2023-02", None, "js-2024-01"):
        problem = assert_problem(js.invite(grantor, beneficiary, "spouse", version), 422, "commitment_required")
        assert problem["commitment_version"] == "JS-2024-01"
    after = families(js, grantor, beneficiary)
    assert after == before and after[0]["person"]["commitment_version"] is None


def test_member_limit_grantors_per_beneficiary(js):
    """Given a beneficiary already invited by 3 grantors (Jiangsu's cap is 3 grantors per beneficiary)
    When a 4th grantor invites them
    Then 422 member_limit and nothing was written; after one invitation is cancelled the 4th may invite."""
    beneficiary = js.person("320100", birth=date(2001, 1, 1), insurance_type="resident")  # after every grantor
    grantors = [js.person("320100") for _ in range(4)]
    bindings = [js.invited(g, beneficiary, "child") for g in grantors[:3]]
    before = families(js, beneficiary, grantors[3])
    assert_problem(js.invite(grantors[3], beneficiary, "child"), 422, "member_limit")
    assert families(js, beneficiary, grantors[3]) == before

    js.ok(bindings[0]["id"], "cancel", grantors[0])
    assert js.invited(grantors[3], beneficiary, "child")["state"] == "invited"


def test_name_mismatch(js):
    """Given a registered relative
    When the grantor invites them under another name
    Then 422 name_mismatch and nothing was written."""
    grantor, beneficiary = couple(js)
    before = families(js, grantor, beneficiary)
    wrong = beneficiary.name + "某" if len(beneficiary.name) < 3 else beneficiary.name[:2]
    assert_problem(js.invite(grantor, beneficiary, beneficiary_name=wrong), 422, "name_mismatch")
    assert families(js, grantor, beneficiary) == before


def test_validation_failed(js):
    """Given an accepted binding
    When the grantor authorizes -1, 1.5, "100", true or omits amount_fen, a body carries an unknown field or
    misses the actor, or a person's insurance type or region code is not a known value, a balance is beyond
    any account, "yes" or 1 stand for true, or an as-of time lies before the first representable instant
    Then each is 422 validation_failed (with the offending locations, never the values), and the binding's
    version and history and the family views are unchanged."""
    b, parent, child = guardian_binding(js)
    before = snapshot(js, b["id"]), families(js, parent, child)
    path = f"/api/v1/bindings/{b['id']}/authorization"
    for body in ({**parent.actor(), "amount_fen": -1}, {**parent.actor(), "amount_fen": 1.5},
                 {**parent.actor(), "amount_fen": "100"}, {**parent.actor(), "amount_fen": True},
                 {**parent.actor()}, {**parent.actor(), "amount_fen": 100, "currency": "CNY"},
                 {"amount_fen": 100}):
        problem = assert_problem(js.put(path, body), 422, "validation_failed")
        assert problem.get("errors"), problem
        assert parent.id_number not in json.dumps(problem)
    assert_problem(js.post(f"/api/v1/bindings/{b['id']}/unbind", {**parent.actor(), "why": "x"}),
                   422, "validation_failed")
    for kind in ("operator", "system"):  # a wrong actor, not a malformed body (DESIGN §5: 403)
        problem = assert_problem(js.put(path, {"actor": {"kind": kind, "id_number": parent.id_number},
                                               "amount_fen": 100}), 403, "not_your_binding")
        assert parent.id_number not in json.dumps(problem)
    grantor, beneficiary = couple(js)
    assert_problem(js.post("/api/v1/bindings", {**js.invite_body(grantor, beneficiary), "note": "hi"}),
                   422, "validation_failed")
    assert_problem(js.post("/api/v1/bindings", {**js.invite_body(grantor, beneficiary), "channel": "fax"}),
                   422, "validation_failed")
    person = {"id_number": id_number(), "name": "孙八", "insurance_type": "employee", "insurance_status": "active",
              "region_code": "320100", "real_name_verified": True}
    for bad in ({"insurance_type": "private"}, {"insurance_status": "paused"}, {"region_code": "3201"},
                {"balance_fen": -5}, {"balance_fen": 10.5}, {"nickname": "小孙"}, {"balance_fen": 10**30},
                {"real_name_verified": "yes"}, {"real_name_verified": 1},
                {"updated_at": "0001-01-01T00:00:00+14:00"}):
        assert_problem(js.post("/api/v1/persons", {**person, **bad}), 422, "validation_failed")
    assert_problem(js.post("/api/v1/persons/lookup", {"id_number": person["id_number"]}), 404, "not_found")

    assert (snapshot(js, b["id"]), families(js, parent, child)) == before
    assert families(js, grantor, beneficiary)[0]["as_grantor"] == []


def test_unknown_region(js):
    """Given a person reported in a pooling region Gongji does not know
    When the platform registers them
    Then 422 unknown_region and the person does not exist."""
    number = id_number()
    body = {"id_number": number, "name": "周九", "insurance_type": "employee", "insurance_status": "active",
            "region_code": "329999", "real_name_verified": True}
    assert_problem(js.post("/api/v1/persons", body), 422, "unknown_region")
    assert_problem(js.post("/api/v1/persons/lookup", {"id_number": number}), 404, "not_found")


# --- 429 ---------------------------------------------------------------------------------------------

def test_too_frequent_after_ten_changes_in_a_day(js):
    """Given a fresh pair in 南京 (Jiangsu: at most 10 binding changes per person per 86400 s)
    When the grantor invites and cancels 10 times, then invites an 11th time
    Then the 11th invitation is 429 too_frequent with a Retry-After header, and nothing was written."""
    grantor, beneficiary = couple(js)
    for n in range(10):
        b = js.invite(grantor, beneficiary)
        assert b.status_code == 201, (n + 1, b.text)
        js.ok(b.json()["id"], "cancel", grantor)
    before = families(js, grantor, beneficiary)

    resp = js.invite(grantor, beneficiary)

    problem = assert_problem(resp, 429, "too_frequent")
    retry_after = resp.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0, resp.headers
    assert int(retry_after) <= 86400
    assert problem.get("retry_after_s") == int(retry_after)
    assert families(js, grantor, beneficiary) == before
    assert len(before[0]["as_grantor"]) == 10
    assert {x["state"] for x in before[0]["as_grantor"]} == {"cancelled"}


# --- rules checked again later, webhooks' own bodies, races -------------------------------------------

def test_rules_are_checked_again_at_accept_and_authorize(embedded, js, facecheck_secret):
    """Given a face-verified binding whose grantor is then reported as no longer real-name verified (a change
    that ends no binding by itself)
    When the beneficiary accepts
    Then 422 grantor_not_eligible and the binding is unchanged; once verified again the beneficiary accepts,
    and with the verification lost again the grantor cannot authorize (422, unchanged)."""
    b, grantor, beneficiary = face_verified(js, embedded, facecheck_secret)
    js.upsert(grantor, real_name_verified=False)
    before = snapshot(js, b["id"])
    assert_problem(js.command(b["id"], "accept", beneficiary), 422, "grantor_not_eligible")
    assert snapshot(js, b["id"]) == before

    js.upsert(grantor, real_name_verified=True)
    assert js.ok(b["id"], "accept", beneficiary)["state"] == "accepted"
    js.upsert(grantor, real_name_verified=False)
    before = snapshot(js, b["id"])
    assert_problem(js.command(b["id"], "authorization", grantor, amount_fen=100), 422, "grantor_not_eligible")
    assert snapshot(js, b["id"]) == before


def test_a_suspension_reported_through_the_api_ends_the_binding(embedded, js, facecheck_secret):
    """Given a face-verified binding
    When the Jiangsu registry reports the grantor's insurance suspended (POST /api/v1/persons)
    Then the binding is rejected in the same transaction, by the system, with the reason in its history."""
    b, grantor, _beneficiary = face_verified(js, embedded, facecheck_secret)
    js.upsert(grantor, insurance_status="suspended")
    assert js.binding(b["id"])["state"] == "rejected"
    last = js.history(b["id"])[-1]
    assert (last["event"], last["actor"]["kind"]) == ("reject", "system")
    assert "suspended" in last["reason"]


def test_webhook_bodies_that_are_not_events(embedded, facecheck_secret):
    """Given the verifier's correct signature
    When the signed body is a JSON array, has no `type`, has a non-object `data`, is not JSON or nested
    100,000 deep, or names an unknown type,
    or a valid event comes with a webhook-id longer than 255 characters
    Then 400 malformed for the first three and 422 validation_failed for the unknown type and the long id."""
    for body in ("[1, 2]", '{"data": {}}', '{"type": "verification.completed", "data": [1]}', "not json",
                 "[" * 100_000):
        assert_problem(post_webhook(embedded, FACECHECK, facecheck_secret, body), 400, "malformed")
    resp = post_webhook(embedded, FACECHECK, facecheck_secret, {"type": "binding.exploded", "data": {}})
    assert_problem(resp, 422, "validation_failed")
    long_id = "msg_" + "x" * 252
    resp = post_webhook(embedded, FACECHECK, facecheck_secret, verification_completed("ver_x", "bnd_x"),
                        msg_id=long_id)
    assert_problem(resp, 422, "validation_failed")
    assert post_webhook(embedded, FACECHECK, facecheck_secret, verification_completed("ver_x", "bnd_x"),
                        msg_id=long_id[:-1]).status_code == 202  # 255 characters are stored


def test_racing_commands_on_one_binding_one_wins(js):
    """Given an authorized binding
    When 8 requests unbind it at the same moment (grantor and beneficiary alternately)
    Then exactly one answers 200 unbound, every other one 409 (illegal_transition or conflict), and the
    history holds exactly one unbind."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    b, parent, child = guardian_binding(js)
    js.ok(b["id"], "authorization", parent, amount_fen=500)
    barrier = Barrier(8)

    def unbind(i: int):
        api = Api(js.base, js.key)
        barrier.wait(timeout=30)
        return api.command(b["id"], "unbind", (parent, child)[i % 2], reason=f"race {i}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(unbind, range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [409] * 7, [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert r.json()["code"] in ("illegal_transition", "conflict"), r.text
    events = [t["event"] for t in js.history(b["id"])]
    assert events == ["invite", "authorize", "unbind"]


def test_family_view_is_limited_to_the_platforms_provinces(js, xj):
    """Given a Jiangsu couple with an invited binding (which Xinjiang may not see: GET /bindings/{id} is 404)
    When the Xinjiang platform reads the Jiangsu grantor's family view
    Then it is refused like the binding itself (404 not_found), not shown."""
    grantor, beneficiary = couple(js)
    b = js.invited(grantor, beneficiary)
    assert_problem(xj.get(f"/api/v1/bindings/{b['id']}"), 404, "not_found")
    assert_problem(xj.get(f"/api/v1/persons/{grantor.id}/bindings"), 404, "not_found")


def test_family_view_lists_only_the_bindings_the_platform_sees(js, xj, nat):
    """Given a Xinjiang parent and child (乌鲁木齐) with an authorized binding, and the child then moved by the
    national platform to 南京 (Jiangsu), which ends the binding (Xinjiang does not bind across provinces)
    When the Jiangsu platform, which now serves the child, reads the child's family view
    Then it lists no binding Jiangsu cannot read (GET /bindings/{id} is 404 for the Xinjiang-only one): the
    Xinjiang parent's person id, masked number, name and amount stay with Xinjiang, whose view of the
    parent still lists it."""
    child = xj.person("650100", birth=child_birth(), insurance_type="resident")
    parent = xj.person("650100")
    b = xj.invited(parent, child, "child", "XJ-2023-02")
    xj.ok(b["id"], "authorization", parent, amount_fen=50_000)
    nat.upsert(Person(child.id_number, child.name, "320100"), insurance_type="resident")
    assert xj.binding(b["id"])["state"] == "unbound"
    assert_problem(js.get(f"/api/v1/bindings/{b['id']}"), 404, "not_found")

    family = js.get(f"/api/v1/persons/{child.id}/bindings")
    assert family.status_code == 200, family.text
    listed = [x["id"] for x in family.json()["as_beneficiary"] + family.json()["as_grantor"]]
    assert b["id"] not in listed and parent.id not in family.text, family.text
    assert b["id"] in [x["id"] for x in xj.get(f"/api/v1/persons/{parent.id}/bindings").json()["as_grantor"]]


def test_deduction_order_is_limited_to_the_platforms_provinces(js, xj):
    """Given a Jiangsu child with two authorized bindings (from each parent) in Jiangsu's chosen order
    When the Xinjiang platform puts the reverse order
    Then it is refused (404 not_found, as for the bindings themselves); each binding shows Jiangsu's rank."""
    child = js.person("320100", birth=child_birth(), insurance_type="resident")
    ids = []
    for _ in range(2):
        parent = js.person("320100")
        b = js.invited(parent, child, "child")
        js.ok(b["id"], "authorization", parent, amount_fen=1_000)
        ids.append(b["id"])
    path = f"/api/v1/persons/{child.id}/deduction-order"
    ok = js.put(path, {"binding_ids": ids})
    assert ok.status_code == 200 and ok.json()["binding_ids"] == ids, ok.text
    assert [js.binding(i)["deduction_rank"] for i in ids] == [1, 2]  # the order reads back on each binding

    assert_problem(xj.put(path, {"binding_ids": ids[::-1]}), 404, "not_found")


def test_a_xinjiang_child_has_a_deduction_order_as_its_guide_says(xj):
    """Given a Xinjiang child (乌鲁木齐) with two authorized bindings
    When the Xinjiang platform puts an order for them (the guide: "设置扣款顺序(可选)")
    Then it is 200 and the order is the one put; the refusal where a region fixes the order
    (422 deduction_order_fixed) is tested with a published policy (tests/integration/test_settlements.py)."""
    child = xj.person("650100", birth=child_birth(), insurance_type="resident")
    ids = []
    for _ in range(2):
        parent = xj.person("650100")
        b = xj.invited(parent, child, "child", "XJ-2023-02")
        xj.ok(b["id"], "authorization", parent, amount_fen=1_000)
        ids.append(b["id"])
    ok = xj.put(f"/api/v1/persons/{child.id}/deduction-order", {"binding_ids": ids[::-1]})
    assert ok.status_code == 200 and ok.json()["binding_ids"] == ids[::-1], ok.text
