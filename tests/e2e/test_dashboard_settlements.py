"""Settlements on the dashboard, in real headless Chromium against the production shape (gunicorn, a dramatiq
worker, the scheduler, PostgreSQL, Redis; the national platform and Jiangsu as fake receivers): an operator
finds a settlement Jiangsu made by its reference, opens it, reverses it with a reason, sees it reversed,
and finds the action in the audit log; the money is back and the platforms hear `settlement.reversed`."""
from __future__ import annotations

import uuid

from .support import child_birth, poll
from .test_dashboard import browser, page  # noqa: F401  (the same headless Chromium fixtures)
from .test_dashboard_traffic import OPERATOR, _operator, _sign_in

REASON = "医院重复收费，平台系统无法冲正"


def _balance(api, person) -> int:
    answer = api.post("/api/v1/persons/lookup", {"id_number": person.id_number})
    assert answer.status_code == 200, answer.text
    return answer.json()["balance_fen"]


def _heard(receiver, settlement_id: str) -> list[str]:
    return [e.type for e in receiver.events
            if e.type.startswith("settlement.") and e.payload["data"]["settlement"]["id"] == settlement_id]


def test_an_operator_finds_a_settlement_by_reference_and_reverses_it(production, page):  # noqa: F811
    """Given a parent with 2,000.00 yuan who authorized 300.00 yuan to a child with 10.00 yuan, and Jiangsu's
    500.00 yuan outpatient settlement for the child (10.00 own account, 300.00 from the parent, 190.00 cash),
    When an operator signs in, opens Settlements from the navigation, types the reference into the look-up
    box, opens the one settlement found and reverses it with a reason,
    Then the page shows it reversed by that operator with the reason, the child and the parent have their
    money back, the national platform and Jiangsu receive `settlement.completed` and `settlement.reversed`,
    the audit log lists the reversal with its reason, and no page showed a whole ID number."""
    _operator(production)
    api = production.api()
    parent = api.person("320100", balance_fen=200_000)
    child = api.person("320100", birth=child_birth(), insurance_type="resident", balance_fen=1_000)
    binding = api.invited(parent, child, "child")
    assert binding["state"] == "accepted"  # the guardian path
    api.ok(binding["id"], "authorization", parent, amount_fen=30_000)
    reference = f"JS-{uuid.uuid4().hex[:12]}"
    made = api.post("/api/v1/settlements", {"reference": reference, "beneficiary_id_number": child.id_number,
                                            "amount_fen": 50_000, "category": "outpatient",
                                            "institution_code": "H32010000001"})
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    assert (_balance(api, child), _balance(api, parent)) == (0, 170_000)
    seen = []

    _sign_in(page, production.base)
    page.click("header a[href$='/dashboard/settlements']")
    page.fill("#settlement-lookup input[name=q]", reference)
    page.click("#settlement-lookup button[type=submit]")
    page.wait_for_selector(f"#settlements tr[data-settlement='{sid}']")
    assert page.locator("#settlements tbody tr").count() == 1 and reference in page.url
    seen.append(page.content())
    page.click(f"#settlements tr[data-settlement='{sid}'] td.id a")
    page.wait_for_selector("#status[data-status=completed]")
    assert page.locator("#acct-mulaid-pay").inner_text() == "¥300.00"
    assert page.locator(f"#splits a[href$='/dashboard/bindings/{binding['id']}']").count() == 1
    seen.append(page.content())
    page.fill("form[data-action=settlement_reverse] textarea", REASON)
    page.check("form[data-action=settlement_reverse] input[name=confirm]")
    page.click("form[data-action=settlement_reverse] button")
    page.wait_for_selector(".flash.ok")

    page.wait_for_selector("#status[data-status=reversed]")
    assert page.locator("#reversed-by").get_attribute("data-kind") == "operator"
    assert OPERATOR[0] in page.locator("#reversed-by").inner_text()
    assert REASON in page.locator("#reversal-reason").inner_text()
    assert page.locator("form[data-action=settlement_reverse]").count() == 0
    seen.append(page.content())
    assert (_balance(api, child), _balance(api, parent)) == (1_000, 200_000)
    for receiver in (production.national_receiver, production.province_receiver):
        poll(lambda: sorted(_heard(receiver, sid)) == ["settlement.completed", "settlement.reversed"], timeout=60,
             what="settlement.completed and settlement.reversed at the receiver (not ordered with each other)")

    page.click("header a[href$='/dashboard/audit']")
    log = page.locator("table").inner_text()
    assert REASON in log and "冲正结算" in log and OPERATOR[0] in log
    seen.append(page.content())
    for i, text in enumerate(seen):
        assert child.id_number not in text and parent.id_number not in text
        if i < 3:  # the settlement pages (the audit log holds other tests' free text)
            assert child.name not in text and parent.name not in text
