"""The dashboard's settlements (`web/dashboard/settlements.py`, `workflows/settlement_views.py` and
`settlement_repair.py`) through Flask's test client, each on PostgreSQL and on the embedded default's SQLite:
the list's filters and keyset pages, the look-up box (a reference, a settlement id, the beneficiary's ID
number: POSTed, audited, limited), the settlement page (splits, ledger, persons masked only), the operator's
reversal (role, CSRF, a reason, audited; the money back once; the same `settlement.reversed` event as the
platform's own reversal). On PostgreSQL only: an operator's reversal racing the platform's API reversal."""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from models import AuditEntry, LedgerEntry, Operator, OutboxMessage, Settlement
from models.seed import dev_credentials
from models.settings import Settings
from web.app import create_app
from web.dashboard import settlements as dashboard_settlements
from workflows import commands, id_in_text, idnumbers, operators, platforms, settlement_repair, settlement_views, settlements
from workflows.errors import DomainError

from .support import T0, accepted, person, race, wait_for_a_lock_wait
from .test_dashboard_web import TOKEN, signed_in
from .test_settlements import _authorized, _balances, _ledger_sums, _settle

ROWS = re.compile(r'data-settlement="(stl_[0-9a-z]+)"')
PASSWORD = "correct horse battery"


class Site(NamedTuple):
    db: object
    app: object


@pytest.fixture(params=["postgresql", "sqlite"])
def site(request, crypto_keys):
    """The dashboard on a fresh PostgreSQL schema or a fresh SQLite file, with a viewer and an operator."""
    db = request.getfixturevalue("pg_db" if request.param == "postgresql" else "sqlite_db")
    return Site(db, _app(db, crypto_keys))


def _app(db, keys):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=keys["pii_keys"],
                        pii_active_key=keys["active"], lookup_key=keys["lookup_key"], secret_key="test-secret",
                        dev_mode=True)
    for role in ("viewer", "operator"):
        operators.add(db, role, PASSWORD, role)
    return create_app(settings, db=db, engine=None)


def _page(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    return answer.get_data(as_text=True)


def _listed(client, path: str) -> list[str]:
    return ROWS.findall(_page(client, path))


def _token(client) -> str:
    return TOKEN.search(_page(client, "/dashboard/settlements")).group(1)


def _audit(db, action: str) -> list[AuditEntry]:
    with db() as s:
        return list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _events(db, topic: str) -> list[OutboxMessage]:
    with db() as s:
        return list(s.scalars(sa.select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)))


def _ledger(db, settlement_id: str) -> list[tuple[str, str, int]]:
    with db() as s:
        return [tuple(r) for r in s.execute(sa.select(LedgerEntry.posting, LedgerEntry.account, LedgerEntry.amount_fen)
                                            .where(LedgerEntry.settlement_id == settlement_id)
                                            .order_by(LedgerEntry.id))]


def _status(db, settlement_id: str) -> str:
    with db() as s:
        return s.get(Settlement, settlement_id).status


def _reverse_by_api(db, settlement_id: str, *, platform: str = "jiangsu", at=None, reason=None) -> dict:
    return settlements.reverse(db, platform=platforms.get(db, platform), settlement_id=settlement_id,
                               reason=reason, now=at or T0 + timedelta(days=3))


def test_the_list_filters_by_reference_platform_status_category_and_date_and_pages_newest_first(
        site, family, new_person, monkeypatch):
    """Given four settlements of one beneficiary: JS-L1 outpatient (Jiangsu, 2 March 10:01 Beijing time),
    NAT-L3 inpatient (national platform, 3 March 00:30 Beijing time, still 2 March in UTC), JS-L2 pharmacy
    (3 March 10:00) and JS-L4 pharmacy (4 March, reversed by Jiangsu),
    When a viewer lists them unfiltered, by status, category, platform, created date (Beijing days),
    reference, combinations, in pages of two, and with bad values,
    Then each answer holds exactly the matching ones newest first, amounts in yuan, the next-page link keeps
    the filter and the last page has none; bad values are 400s."""
    db = site.db
    fam, _ = _authorized(db, family, new_person, cap=None)
    s1 = _settle(db, fam, 1_000, "JS-L1", category="outpatient", at=T0 + timedelta(minutes=1))[0]["id"]
    s3 = _settle(db, fam, 2_000, "NAT-L3", platform="national", category="inpatient",
                 at=datetime(2026, 3, 2, 16, 30, tzinfo=timezone.utc))[0]["id"]
    s2 = _settle(db, fam, 3_000, "JS-L2", category="pharmacy", at=T0 + timedelta(days=1))[0]["id"]
    s4 = _settle(db, fam, 4_000, "JS-L4", category="pharmacy", at=T0 + timedelta(days=2))[0]["id"]
    _reverse_by_api(db, s4)
    client, _ = signed_in(site.app, "viewer")

    expected = {"": [s4, s2, s3, s1], "?status=reversed": [s4], "?status=completed": [s2, s3, s1],
                "?category=pharmacy": [s4, s2], "?category=inpatient": [s3], "?platform=national": [s3],
                "?platform=jiangsu&category=pharmacy&status=completed": [s2],
                "?since=2026-03-03&until=2026-03-03": [s2, s3], "?until=2026-03-02": [s1],
                "?since=2026-03-04": [s4], "?reference=JS-L2": [s2], "?reference=NAT-L3": [s3],
                "?reference=JS-L2&platform=national": [], "?reference=JS-L9": []}
    for query, ids in expected.items():
        assert _listed(client, f"/dashboard/settlements{query}") == ids, query
    page = _page(client, "/dashboard/settlements")
    row = page[page.index(f'data-settlement="{s4}"'):page.index("</tr>", page.index(f'data-settlement="{s4}"'))]
    assert "¥40.00" in row and "已冲正" in row and "药店购药" in row and "jiangsu" in row
    assert 'id="next-page"' not in page

    monkeypatch.setattr(dashboard_settlements, "PAGE", 2)
    for query, first, rest in (("", [s4, s2], [s3, s1]), ("?status=completed", [s2, s3], [s1])):
        page = _page(client, f"/dashboard/settlements{query}")
        assert ROWS.findall(page) == first
        link = re.search(r'id="next-page" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert query[1:] in link
        last = _page(client, link)
        assert ROWS.findall(last) == rest and 'id="next-page"' not in last

    for query in ("?status=nope", "?category=cosmetics", "?platform=nobody", "?since=2026-13-01", "?after=garbage",
                  f"?reference={fam.beneficiary}", "?reference=" + "x" * 65):
        assert client.get(f"/dashboard/settlements{query}").status_code == 400, query


def test_the_look_up_box_opens_a_reference_a_settlement_or_a_beneficiarys_settlements(site, family, new_person):
    """Given two beneficiaries with a settlement each,
    When a viewer types into the look-up box a reference, a settlement id, the first beneficiary's ID number
    (with spaces between its groups), an invalid number, and then more numbers than the limit allows,
    Then the reference opens the list filtered by it, the id opens that settlement, the number shows the
    first beneficiary's settlement only (masked; the number in no URL, page or audit row whole), the invalid
    number its error; each look-up by number is audited (the count found, the valid number masked), the
    21st within a minute is refused (429) while a reference still opens its list."""
    db = site.db
    fam, _ = _authorized(db, family, new_person, cap=None)
    mine = _settle(db, fam, 1_200, "JS-F1")[0]["id"]
    other_fam, _ = _authorized(db, family, new_person, cap=None)
    other = _settle(db, other_fam, 1_300, "JS-F2")[0]["id"]
    client, _ = signed_in(site.app, "viewer")
    token = _token(client)

    def box(typed: str):
        return client.post("/dashboard/settlements", data={"csrf_token": token, "q": typed})

    by_reference, by_id = box(" JS-F2 "), box(mine.upper())
    assert by_reference.status_code == 303
    assert by_reference.headers["Location"] == "/dashboard/settlements?reference=JS-F2"
    assert _listed(client, by_reference.headers["Location"]) == [other]
    assert (by_id.status_code, by_id.headers["Location"]) == (303, f"/dashboard/settlements/{mine}")
    n = fam.beneficiary
    found = box(f"{n[:6]} {n[6:14]} {n[14:]}")
    text = found.get_data(as_text=True)
    assert found.status_code == 200 and ROWS.findall(text) == [mine] and 'id="lookup-result"' in text
    assert n not in text and fam.beneficiary_name not in text and idnumbers.mask(n) in text
    refused = box("320102198001011234").get_data(as_text=True)
    assert 'data-code="invalid_id_number"' in refused and ROWS.findall(refused) == []

    rows = _audit(db, "find_settlements_by_id_number")
    assert [(r.operator, r.outcome, r.detail) for r in rows] == [
        ("viewer", "ok", {"found": 1, "id_number_masked": idnumbers.mask(n)}),
        ("viewer", "invalid_id_number", {"found": 0})]
    assert all(n not in f"{r.reason} {r.detail}" for r in rows)
    for _ in range(18):
        assert box("320102198001011234").status_code == 200
    assert box(n).status_code == 429
    assert len(_audit(db, "find_settlements_by_id_number")) == 20
    assert box("JS-F1").status_code == 303 and box(other).status_code == 303


def test_the_settlement_page_shows_its_parts_splits_and_ledger_masked(site, family, new_person):
    """Given a beneficiary with 5.00 yuan and two grantors who authorized 10.00 and 20.00 yuan, and a 50.00
    yuan outpatient settlement (5.00 own account, 30.00 family mutual aid in two splits, 15.00 cash),
    When a viewer opens it from the list, and the two bindings' pages, and an operator opens it,
    Then the page shows reference, platform, the beneficiary masked, the parts in yuan, both splits linked to
    their bindings with the grantors masked, every ledger line; each binding's payments link to it; no page
    carries a whole ID number or name; the viewer is offered no reversal, the operator is; an unknown id is
    a 404; the navigation links the list and the overview counts today's settlements."""
    db = site.db
    fam, first = _authorized(db, family, new_person, cap=1_000, beneficiary_balance=500)
    g2 = new_person(db, insurance_type="employee", balance_fen=100_000, now=T0)
    fam2 = fam._replace(grantor=g2[0], grantor_name=g2[1])
    second = accepted(db, fam2, now=T0 + timedelta(seconds=10))
    commands.authorize(db, second, person(fam2.grantor), 2_000, now=T0 + timedelta(seconds=20))
    made = _settle(db, fam, 5_000, "JS-P1")[0]
    sid = made["id"]
    today = _settle(db, fam, 100, "JS-TODAY", at=datetime.now(timezone.utc))[0]
    viewer, _ = signed_in(site.app, "viewer")

    page = _page(viewer, f"/dashboard/settlements/{sid}")

    assert 'id="reference">JS-P1<' in page and 'id="platform">jiangsu<' in page and "门诊" in page
    beneficiary = page[page.index('id="beneficiary"'):page.index("</td>", page.index('id="beneficiary"'))]
    assert made["beneficiary"]["name_masked"] in beneficiary and idnumbers.mask(fam.beneficiary) in beneficiary
    for key, text in (("amount", "¥50.00"), ("acct-pay", "¥5.00"), ("acct-mulaid-pay", "¥30.00"),
                      ("psn-cash-pay", "¥15.00"), ("balc", "¥0.00")):
        assert f'id="{key}">{text}<' in page, key
    splits = page[page.index('id="splits"'):page.index("</table>", page.index('id="splits"'))]
    for bid, number, fen in ((first, fam.grantor, "¥10.00"), (second, fam2.grantor, "¥20.00")):
        row = splits[splits.index(f'data-binding="{bid}"'):splits.index("</tr>", splits.index(f'data-binding="{bid}"'))]
        assert f'href="/dashboard/bindings/{bid}"' in row and idnumbers.mask(number) in row and fen in row
    ledger = page[page.index('id="ledger"'):page.index("</table>", page.index('id="ledger"'))]
    assert len(re.findall(r'data-posting="settle"', ledger)) == len(_ledger(db, sid)) == 5
    assert 'data-account="institution" data-amount="5000"' in ledger and "¥50.00" in ledger
    assert 'data-account="account" data-amount="-500"' in ledger and "−¥5.00" in ledger
    assert 'data-action="settlement_reverse"' not in page and 'id="reverse-needs-role"' in page
    assert viewer.get("/dashboard/settlements/stl_nobody").status_code == 404

    pages = [page, _page(viewer, "/dashboard/settlements"), _page(viewer, "/dashboard/settlements?reference=JS-P1")]
    for bid in (first, second):
        binding = _page(viewer, f"/dashboard/bindings/{bid}")
        assert f'href="/dashboard/settlements/{sid}"' in binding
        pages.append(binding)
    overview = _page(viewer, "/dashboard/")
    assert 'href="/dashboard/settlements"' in overview
    card = re.search(r'id="settlements-today" data-completed="(\d+)" data-reversed="(\d+)"><div class="n"><a '
                     r'href="/dashboard/settlements\?since=([0-9-]+)"', overview)
    day = datetime.fromisoformat(card.group(3))
    start = datetime(day.year, day.month, day.day, tzinfo=idnumbers.CHINA)
    assert int(card.group(1)) == settlement_views.counts(db, since=start)["completed"]
    assert today["id"] in _listed(viewer, f"/dashboard/settlements?since={card.group(3)}") or int(card.group(1)) == 0
    for text in pages + [overview]:
        for secret in (fam.beneficiary, fam.grantor, fam2.grantor, fam.beneficiary_name, fam.grantor_name,
                       fam2.grantor_name):
            assert secret not in text
    operator, _ = signed_in(site.app, "operator")
    assert 'data-action="settlement_reverse"' in _page(operator, f"/dashboard/settlements/{sid}")


def test_a_viewer_may_not_reverse_and_a_reason_and_the_csrf_token_are_required(site, family, new_person):
    """Given a completed settlement,
    When a viewer POSTs its reversal (with a valid token), the workflow is called for a viewer, an operator
    POSTs it without a token, without a reason and with only spaces, and the workflow is called with no
    reason,
    Then 403, a `forbidden` refusal, 400, two "give a reason" answers and a `reason_required` refusal; both
    refusals are audited naming the settlement; nothing moved and no `settlement.reversed` was written."""
    db = site.db
    fam, _ = _authorized(db, family, new_person, cap=None, beneficiary_balance=300)
    sid = _settle(db, fam, 1_000, "JS-R1")[0]["id"]
    before = _balances(db, fam.beneficiary, fam.grantor)
    viewer, _ = signed_in(site.app, "viewer")
    assert viewer.post(f"/dashboard/settlements/{sid}/reversal",
                       data={"csrf_token": _token(viewer), "reason": "退费"}).status_code == 403
    with pytest.raises(DomainError) as forbidden:
        settlement_repair.reverse(db, _who(db, "viewer"), sid, "退费")
    assert forbidden.value.code == "forbidden"

    operator, _ = signed_in(site.app, "operator")
    assert operator.post(f"/dashboard/settlements/{sid}/reversal", data={"reason": "退费"}).status_code == 400
    for reason in ("", "   "):
        answer = operator.post(f"/dashboard/settlements/{sid}/reversal",
                               data={"csrf_token": _token(operator), "reason": reason}, follow_redirects=True)
        assert answer.status_code == 200 and "请填写原因" in answer.get_data(as_text=True)
    unconfirmed = operator.post(f"/dashboard/settlements/{sid}/reversal",  # the box not ticked: nothing moves
                                data={"csrf_token": _token(operator), "reason": "退费"}, follow_redirects=True)
    assert "请勾选确认" in unconfirmed.get_data(as_text=True)
    with pytest.raises(DomainError) as no_reason:
        settlement_repair.reverse(db, _who(db, "operator"), sid, "\x00 ")
    assert no_reason.value.code == "reason_required"

    assert [(r.operator, r.outcome, r.detail["settlement_id"]) for r in _audit(db, "settlement_reverse")] == [
        ("viewer", "forbidden", sid), ("operator", "reason_required", sid)]
    assert _status(db, sid) == "completed" and _balances(db, fam.beneficiary, fam.grantor) == before
    assert _events(db, "settlement.reversed") == []


def _who(db, username: str) -> operators.OperatorInfo:
    with db() as s:
        operator_id = s.scalar(sa.select(Operator.id).where(Operator.username == username))
    return operators.get(db, operator_id)


def test_an_operators_reversal_moves_the_money_back_once_audited_with_the_platforms_event(site, family,
                                                                                         new_person):
    """Given a beneficiary with 5.00 yuan whose grantor authorized 100.00 yuan, and a 30.00 yuan settlement
    (5.00 own account, 25.00 from the grantor),
    When an operator reverses it on its page with a reason naming the beneficiary and a mobile number, then
    sends the same form again, and the platform then reverses it through the API,
    Then the first puts 5.00 and 25.00 back (and the authorization's 25.00), writes the negated ledger lines,
    one `settlement.reversed` event whose settlement is the API's answer, and an audit row (the operator,
    the reason masked, the settlement); the page shows it reversed by that operator with no button; the
    second and the API's reversal move nothing and write no event (the second is audited already_reversed)."""
    db = site.db
    fam, bid = _authorized(db, family, new_person, cap=10_000, beneficiary_balance=500)
    made = _settle(db, fam, 3_000, "JS-O1")[0]
    sid = made["id"]
    assert (made["acct_pay"], made["acct_mulaid_pay"]) == (500, 2_500)
    assert _balances(db, fam.beneficiary, fam.grantor) == [0, 97_500]
    settled = _ledger(db, sid)
    client, _ = signed_in(site.app, "operator")
    page = _page(client, f"/dashboard/settlements/{sid}")
    reason = f"医院重复收费，{fam.beneficiary_name}家属来电 13812345678"

    answer = client.post(f"/dashboard/settlements/{sid}/reversal",
                         data={"csrf_token": TOKEN.search(page).group(1), "reason": reason, "confirm": "y"})

    assert answer.status_code == 303 and answer.headers["Location"] == f"/dashboard/settlements/{sid}"
    after = _page(client, answer.headers["Location"])
    assert 'class="flash ok"' in after and 'id="status" data-status="reversed"' in after
    assert 'id="reversed-by" data-kind="operator"' in after and "经办人员 operator" in after
    assert 'data-action="settlement_reverse"' not in after and "13812345678" not in after
    assert _balances(db, fam.beneficiary, fam.grantor) == [500, 100_000]
    with db() as s:
        assert settlements.of_binding(s, bid)["used_fen"] == 0
    assert _ledger(db, sid) == settled + [("reverse", a, -f) for _, a, f in settled]
    assert _ledger_sums(db)[sid] == 0
    events = _events(db, "settlement.reversed")
    assert len(events) == 1
    assert events[0].payload["data"]["settlement"] == settlements.get(db, platform=platforms.get(db, "jiangsu"),
                                                                       settlement_id=sid)
    (row,) = _audit(db, "settlement_reverse")
    assert (row.operator, row.outcome, row.binding_id) == ("operator", "ok", None)
    assert row.detail == {"settlement_id": sid, "reference": "JS-O1", "amount_fen": 3_000, "bindings": [bid]}
    assert fam.beneficiary_name not in row.reason and "13812345678" not in row.reason
    assert "医院重复收费" in row.reason and "138****5678" in row.reason
    audit = _page(client, "/dashboard/audit")
    assert "冲正结算" in audit and "医院重复收费" in audit
    assert f'<a href="/dashboard/settlements/{sid}">结算 JS-O1</a>' in audit  # the audit row names its settlement

    again = client.post(f"/dashboard/settlements/{sid}/reversal",
                        data={"csrf_token": TOKEN.search(page).group(1), "reason": "再冲一次", "confirm": "y"},
                        follow_redirects=True)
    by_api = _reverse_by_api(db, sid)

    assert "该结算此前已冲正" in again.get_data(as_text=True)
    assert by_api["status"] == "reversed" and by_api == events[0].payload["data"]["settlement"]
    assert _balances(db, fam.beneficiary, fam.grantor) == [500, 100_000]
    assert len(_ledger(db, sid)) == 2 * len(settled) and len(_events(db, "settlement.reversed")) == 1
    assert [r.outcome for r in _audit(db, "settlement_reverse")] == ["ok", "already_reversed"]
    assert 'id="reversed-by" data-kind="operator"' in _page(client, f"/dashboard/settlements/{sid}")


def test_a_platforms_reversal_shows_on_the_page_as_the_platforms(site, family, new_person):
    """Given a settlement Jiangsu reversed through the API with a reason, When a viewer opens it, Then it shows
    reversed by the platform jiangsu through the API, the platform's reason, and the ledger's reversal lines."""
    db = site.db
    fam, _ = _authorized(db, family, new_person, cap=None)
    sid = _settle(db, fam, 700, "JS-A1")[0]["id"]
    _reverse_by_api(db, sid, reason="药品退货")
    viewer, _ = signed_in(site.app, "viewer")
    page = _page(viewer, f"/dashboard/settlements/{sid}")
    assert 'id="reversed-by" data-kind="platform"' in page and "jiangsu" in page
    assert re.search(r'id="reversal-reason">[^<]*药品退货</p>', page)
    assert len(re.findall(r'data-posting="reverse"', page)) == len(_ledger(db, sid)) // 2 > 0


def test_an_operators_reversal_racing_the_platforms_reverses_once(pg_db, crypto_keys, family, new_person):
    """Given a settlement whose row another transaction holds locked,
    When an operator's dashboard reversal and Jiangsu's API reversal (both over HTTP) both wait for that row
    and it is released,
    Then both answer success, exactly one reversed: the balances are back exactly once, the ledger holds one
    set of negated lines, one `settlement.reversed` event; the operator's audit row is `ok` if theirs won
    (and the page names them) or `already_reversed` (and the page names the platform)."""
    app = _app(pg_db, crypto_keys)
    fam, _ = _authorized(pg_db, family, new_person, cap=None, beneficiary_balance=200)
    sid = _settle(pg_db, fam, 2_000, "JS-RACE")[0]["id"]
    settled = _ledger(pg_db, sid)
    client, _ = signed_in(app, "operator")
    token = TOKEN.search(_page(client, f"/dashboard/settlements/{sid}")).group(1)
    api = app.test_client()
    key = dev_credentials("jiangsu")[0]

    def by_operator():
        return client.post(f"/dashboard/settlements/{sid}/reversal", data={"csrf_token": token, "reason": "误收费", "confirm": "y"})

    def by_platform():
        return api.post(f"/api/v1/settlements/{sid}/reversal", headers={"Authorization": f"Bearer {key}"})

    outcomes: list = []

    def run():
        try:
            outcomes.extend(race(by_operator, by_platform))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes.append(exc)

    with pg_db.kw["bind"].connect() as holder:
        held = holder.begin()
        holder.execute(sa.select(Settlement.id).where(Settlement.id == sid).with_for_update())
        racing = threading.Thread(target=run, daemon=True)
        racing.start()
        wait_for_a_lock_wait(pg_db, 2, on="settlements")  # both wait for the row: neither has read it yet
        held.rollback()
    racing.join(60)  # bounds a hang only
    assert not racing.is_alive() and not any(isinstance(o, BaseException) for o in outcomes), outcomes

    operator_answer, platform_answer = (o.value for o in outcomes)
    assert operator_answer.status_code == 303 and platform_answer.status_code == 200, platform_answer.get_data()
    assert platform_answer.get_json()["status"] == "reversed"
    assert _balances(pg_db, fam.beneficiary, fam.grantor) == [200, 100_000]
    assert _ledger(pg_db, sid) == settled + [("reverse", a, -f) for _, a, f in settled]
    assert len(_events(pg_db, "settlement.reversed")) == 1
    (row,) = _audit(pg_db, "settlement_reverse")
    assert row.outcome in ("ok", "already_reversed")
    shown = settlement_views.detail(pg_db, sid)["reversed_by"]
    assert shown["kind"] == ("operator" if row.outcome == "ok" else "platform")


def test_a_number_typed_in_any_form_stays_out_of_urls(site, family, new_person):
    """Given a beneficiary with a settlement, and another settlement whose reference is a long serial number
    When a viewer types into the look-up box the beneficiary's number in full-width digits, grouped by dots,
    glued to a letter, mistyped (17 digits), and the long serial
    Then none is answered with a redirect (a Location would carry it into the browser's history and the
    access log): the first two find the beneficiary's settlement, the glued one is invalid_id_number, the
    mistyped one and the serial are looked up as references on the answer itself (the serial's listed)."""
    db = site.db
    fam, _ = _authorized(db, family, new_person, cap=None)
    mine = _settle(db, fam, 1_200, "JS-W1")[0]["id"]
    serial = "2026112532010200001234"  # 22 digits, no real ID number inside
    assert not id_in_text.holds_id_number(serial)
    by_serial = _settle(db, fam, 1_300, serial)[0]["id"]
    client, _ = signed_in(site.app, "viewer")
    token = _token(client)
    n = fam.beneficiary
    wide = n.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))

    answers = {typed: client.post("/dashboard/settlements", data={"csrf_token": token, "q": typed})
               for typed in (wide, f"{n[:6]}.{n[6:14]}.{n[14:]}", n + "a", n[:17], serial)}
    for typed, answer in answers.items():
        assert answer.status_code == 200 and "Location" not in answer.headers, (typed, answer.status_code)
    texts = [a.get_data(as_text=True) for a in answers.values()]
    assert ROWS.findall(texts[0]) == [by_serial, mine] and ROWS.findall(texts[1]) == [by_serial, mine]
    assert 'data-code="invalid_id_number"' in texts[2] and ROWS.findall(texts[2]) == []
    assert ROWS.findall(texts[3]) == [] and ROWS.findall(texts[4]) == [by_serial]
    assert all(n not in t and n[:17] not in t.replace(serial, "") for t in texts)


def test_the_settlement_page_shows_where_its_event_was_delivered_and_where_it_died(site, family, new_person):
    """Given a settlement whose `settlement.completed` was fanned out to the platforms it concerns, and whose
    delivery to Jiangsu went dead (HTTP 503)
    When a viewer opens the settlement
    Then its deliveries are listed per platform with their status in Chinese, the dead one's last answer
    and a link to that platform's deliveries, where it can be replayed."""
    from models import Delivery
    from workflows import routing
    db = site.db
    for pid in ("jiangsu", "national"):
        platforms.set_webhook_url(db, pid, "http://127.0.0.1:9/never-called")
    fam, _ = _authorized(db, family, new_person, cap=None)
    sid = _settle(db, fam, 1_200, "JS-D1")[0]["id"]
    with db() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.topic == "settlement.completed"))
    routing.fan_out(db, outbox_id, now=T0)
    with db.begin() as s:
        s.execute(sa.update(Delivery).where(Delivery.outbox_id == outbox_id, Delivery.platform_id == "jiangsu")
                  .values(status="dead", attempts=16, last_status_code=503, dead_at=T0, next_attempt_at=None))
    viewer, _ = signed_in(site.app, "viewer")
    page = _page(viewer, f"/dashboard/settlements/{sid}")
    table = page[page.index('id="settlement-deliveries"'):page.index("</table>", page.index('id="settlement-deliveries"'))]
    dead = table[table.index('data-platform="jiangsu"'):table.index("</tr>", table.index('data-platform="jiangsu"'))]
    assert 'data-status="dead"' in dead and "死信" in dead and "503" in dead and "settlement.completed" in dead
    assert 'href="/dashboard/deliveries?platform=jiangsu"' in dead
    assert 'data-platform="national" data-status="pending"' in table  # on its way
