"""The identity check in person over real HTTP: `POST /api/v1/bindings/{id}/verification/in-person` from a
province's counter system, where the region policy allows it (`GET /api/v1/regions/{code}` says so)."""
from __future__ import annotations

from datetime import date

from .support import Api, assert_problem

XJ_COMMITMENT = "XJ-2023-02"
REASON = "居民身份证原件核验，申请表 XJ-2026-000123"


def _in_person(api: Api, binding_id: str, **body):
    return api.post(f"/api/v1/bindings/{binding_id}/verification/in-person",
                    {"staff_id": "0042", "reason": REASON, **body})


def test_a_relative_without_a_smartphone_joins_at_the_service_hall(xj):
    """Given a Xinjiang employee who invited his father at the counter (the father has no smartphone)
    When Xinjiang's counter system reports that its staff checked the father's ID card in person
    Then the binding is face_verified with verification_method in_person, its history names Xinjiang's
    staff (not which member) with the reason, and the father accepts at the same counter."""
    region = xj.get("/api/v1/regions/650100").json()
    assert region["in_person_verification"] is True
    son = xj.person("650100", birth=date(1985, 5, 5))
    father = xj.person("650100", birth=date(1955, 5, 5), insurance_type="resident")
    invited = xj.invite(son, father, "parent", XJ_COMMITMENT, channel="counter")
    assert invited.status_code == 201, invited.text
    b = invited.json()
    assert (b["state"], b["verification_method"], b["channel"]) == ("invited", "face", "counter")

    resp = _in_person(xj, b["id"], version=b["version"])

    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert (done["state"], done["verification_method"], done["version"]) == ("face_verified", "in_person", 2)
    last = xj.history(b["id"])[-1]
    assert (last["event"], last["actor"], last["channel"], last["reason"]) == (
        "verify_in_person", {"kind": "staff", "id": "xinjiang"}, "counter", REASON)
    accepted = xj.ok(b["id"], "accept", father, channel="counter")
    assert (accepted["state"], accepted["verification_method"]) == ("accepted", "in_person")


def test_refusals_of_the_check_in_person(js, xj, nat, embedded, dev_keys):
    """Given a Jiangsu invitation (its policy does not provide for the check in person) and a Xinjiang one
    When the check is reported by Jiangsu for its own, by Jiangsu for Xinjiang's, by the face-verification
    provider and by the national platform (no service halls), without a reason, with a staff id holding ':',
    and at an old version
    Then 422 in_person_not_allowed, 404 not_found, 403 platform_not_allowed (twice), 422 validation_failed
    (twice) and 409 conflict, and each binding is left as it was."""
    assert js.get("/api/v1/regions/320100").json()["in_person_verification"] is False
    js_b = js.invited(js.person("320100"), js.person("320100", insurance_type="resident"))
    xj_b = xj.invited(xj.person("650100"), xj.person("650100", insurance_type="resident"), "spouse", XJ_COMMITMENT)
    provider = Api(embedded, dev_keys["facecheck"][0])

    assert_problem(_in_person(js, js_b["id"]), 422, "in_person_not_allowed")
    assert_problem(_in_person(js, xj_b["id"]), 404, "not_found")
    assert_problem(_in_person(provider, xj_b["id"]), 403, "platform_not_allowed")
    assert_problem(_in_person(nat, xj_b["id"]), 403, "platform_not_allowed")
    assert_problem(xj.post(f"/api/v1/bindings/{xj_b['id']}/verification/in-person", {"staff_id": "0042"}),
                   422, "validation_failed")
    assert_problem(_in_person(xj, xj_b["id"], staff_id="a:b"), 422, "validation_failed")
    assert_problem(_in_person(xj, xj_b["id"], version=xj_b["version"] + 1), 409, "conflict")

    assert js.binding(js_b["id"])["version"] == js_b["version"]
    assert xj.binding(xj_b["id"])["version"] == xj_b["version"]
    assert xj.binding(xj_b["id"])["state"] == "invited"
