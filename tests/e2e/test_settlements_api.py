"""Settlements over real HTTP (API.md "Settlements"): a child's outpatient cost paid from their own account,
then the parent's authorization, the rest cash; the same reference again; a reversal; the refusals."""
from __future__ import annotations

import secrets
import uuid

from workflows import id_in_text

from .support import Api, assert_problem, child_birth, id_number


def _lookup(api: Api, person) -> dict:
    resp = api.post("/api/v1/persons/lookup", {"id_number": person.id_number})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_settlement_its_replay_and_its_reversal(js: Api, xj: Api):
    """Given a parent with 2,000.00 yuan who authorized 300.00 yuan to a child (guardian path) with 10.00
    When Jiangsu settles 500.00 yuan of outpatient cost for the child, sends it again, and reverses it
    Then 201 with acct_pay 1,000, acct_mulaid_pay 30,000 (one split, the parent masked), psn_cash_pay 19,000
    and balc 0; the same reference answers 200 with the same settlement; Xinjiang cannot read it; the
    reversal answers `reversed` and both balances are back; no answer carries a whole ID number."""
    parent = js.person("320100", balance_fen=200_000)
    child = js.person("320100", birth=child_birth(), insurance_type="resident", balance_fen=1_000)
    b = js.invited(parent, child, "child")
    assert b["state"] == "accepted"
    js.ok(b["id"], "authorization", parent, amount_fen=30_000)
    body = {"reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": child.id_number,
            "amount_fen": 50_000, "category": "outpatient", "institution_code": "H32010000001"}

    made = js.post("/api/v1/settlements", body)
    again = js.post("/api/v1/settlements", body)

    assert made.status_code == 201, made.text
    s = made.json()
    assert (s["acct_pay"], s["acct_mulaid_pay"], s["psn_cash_pay"], s["balc"]) == (1_000, 30_000, 19_000, 0)
    assert [x["binding_id"] for x in s["splits"]] == [b["id"]]
    assert s["splits"][0]["grantor"]["id"] == parent.id and "*" in s["splits"][0]["grantor"]["id_number_masked"]
    assert again.status_code == 200 and again.json() == s
    assert js.get(f"/api/v1/settlements/{s['id']}").json() == s
    assert_problem(xj.get(f"/api/v1/settlements/{s['id']}"), 404, "not_found")
    assert (_lookup(js, child)["balance_fen"], _lookup(js, parent)["balance_fen"]) == (0, 170_000)

    assert_problem(js.post(f"/api/v1/settlements/{s['id']}/reversal", {"reason": "退" * 501}), 422,
                   "validation_failed")  # a reason is at most 500 characters; nothing moved
    undone = js.post(f"/api/v1/settlements/{s['id']}/reversal", {"reason": "处方作废，患者申请退费"})

    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "reversed" and undone.json()["reversed_at"]
    assert undone.json()["reversal_reason"] == "处方作废，患者申请退费"
    assert js.post(f"/api/v1/settlements/{s['id']}/reversal").json() == undone.json()  # no body: as before
    assert (_lookup(js, child)["balance_fen"], _lookup(js, parent)["balance_fen"]) == (1_000, 200_000)
    for text in (made.text, again.text, undone.text):
        assert parent.id_number not in text and child.id_number not in text


def test_a_reference_or_institution_carrying_an_id_number_in_any_form_is_refused(js: Api):
    """Given a registered, insured person
    When a settlement's reference or institution code carries their ID number glued to a letter, after a
    digit, in full-width digits, or grouped by dots or double spaces
    Then each is 422 validation_failed: both fields travel to every platform concerned and show on the
    dashboard; a long serial reference that holds no ID number is settled (201)."""
    someone = js.person("320100", balance_fen=10_000)
    n = someone.id_number
    body = {"beneficiary_id_number": n, "amount_fen": 100, "category": "pharmacy", "institution_code": "P3201"}
    for disguised in (n + "A", "9" + n, n.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")),
                      f"{n[:6]}.{n[6:14]}.{n[14:]}", f"{n[:6]}  {n[6:14]}  {n[14:]}"):
        for field in ("reference", "institution_code"):
            sent = {**body, "reference": f"JS-{uuid.uuid4().hex[:12]}", field: disguised}
            assert_problem(js.post("/api/v1/settlements", sent), 422, "validation_failed")
    serial = next(s for s in (f"{secrets.randbelow(10 ** 22):022d}" for _ in range(100))
                  if not id_in_text.holds_id_number(s))
    made = js.post("/api/v1/settlements", {**body, "reference": serial})
    assert made.status_code == 201 and made.json()["reference"] == serial, made.text


def test_settlement_refusals(js: Api):
    """Given a registered, insured person
    When a settlement names non-medical goods, sends the amount as a string, reuses a reference with another
    amount, names an unknown ID number, or a person whose insurance ended
    Then 422 validation_failed, 422 validation_failed, 422 reference_reused, 404 not_found, 422
    beneficiary_not_insured (each a code the operation lists: the suite runs in strict mode)."""
    someone = js.person("320100", balance_fen=10_000)
    body = {"reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": someone.id_number,
            "amount_fen": 100, "category": "pharmacy", "institution_code": "P3201"}
    assert js.post("/api/v1/settlements", body).status_code == 201

    assert_problem(js.post("/api/v1/settlements", {**body, "category": "cosmetics"}), 422, "validation_failed")
    assert_problem(js.post("/api/v1/settlements", {**body, "amount_fen": "100"}), 422, "validation_failed")
    assert_problem(js.post("/api/v1/settlements", {**body, "amount_fen": 101}), 422, "reference_reused")
    unknown = {**body, "reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": id_number()}
    assert_problem(js.post("/api/v1/settlements", unknown), 404, "not_found")  # valid, never registered
    ended = js.person("320100", insurance_status="ended", balance_fen=10_000)
    lapsed = {**body, "reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": ended.id_number}
    assert_problem(js.post("/api/v1/settlements", lapsed), 422, "beneficiary_not_insured")


def test_a_reversal_still_reverses_whatever_body_an_older_client_sends(js: Api):
    """Given four settlements of one beneficiary (the endpoint ignored its body before `reason` existed)
    When they are reversed with `null`, with a text/plain body, with fields of the client's own beside a
    reason, and with the reason under the answer's own name `reversal_reason`
    Then each is reversed (200): only a JSON object's reason is read, the rest is ignored.
    When a body names `reason` but is not a JSON object (broken JSON, a form), Then it is 400 malformed and
    nothing is reversed: the reason would otherwise be lost for good (a reversal is answered as it was)."""
    someone = js.person("320100", balance_fen=60_000)
    made = []
    for _ in range(6):
        body = {"reference": f"JS-{uuid.uuid4().hex[:12]}", "beneficiary_id_number": someone.id_number,
                "amount_fen": 1_000, "category": "pharmacy", "institution_code": "P3201"}
        answer = js.post("/api/v1/settlements", body)
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    path = "/api/v1/settlements/{}/reversal".format
    sent = (js.request("POST", path(made[0]), data="null"),
            js.request("POST", path(made[1]), data="refund", headers={"Content-Type": "text/plain"}),
            js.post(path(made[2]), {"remark": "客户端自带字段", "reason": "退货"}),
            js.post(path(made[3]), {"reversal_reason": "处方作废"}))
    assert [a.status_code for a in sent] == [200] * 4, [a.text for a in sent]
    assert [a.json()["status"] for a in sent] == ["reversed"] * 4
    assert [a.json()["reversal_reason"] for a in sent] == [None, None, "退货", "处方作废"]
    assert_problem(js.request("POST", path(made[4]), data='{"reason": "患者说"不要了""}'), 400, "malformed")
    assert_problem(js.request("POST", path(made[5]), data="reason=处方作废",
                              headers={"Content-Type": "application/x-www-form-urlencoded"}), 400, "malformed")
    assert [js.get(f"/api/v1/settlements/{sid}").json()["status"] for sid in made[4:]] == ["completed"] * 2
