"""Children under 16 join on the guardian path: no face check, straight to `accepted` (DESIGN §3)."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .support import assert_problem, child_birth


def _years_ago(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def test_parent_invites_child_under_16_guardian_path_to_unbound(js):
    """Given an employee-insured parent and their resident-insured child born in 2015 (under 16), both in 南京
    When the parent invites the child with relationship `child`
    Then the answer is 201 with state `accepted`, verification_method `guardian`, no invitation deadline,
    and the history has exactly one row (None → accepted, invite, by the person)
    And the parent can authorize an amount and later unbind, which ends in `unbound` with three history rows."""
    parent = js.person("320100")
    child = js.person("320100", birth=child_birth(2015), insurance_type="resident", balance_fen=0)

    resp = js.invite(parent, child, "child")

    assert resp.status_code == 201, resp.text
    b = resp.json()
    assert b["state"] == "accepted"
    assert b["verification_method"] == "guardian"
    assert b["deadline_at"] is None and b["expires_at"] is None
    assert b["grantor"]["id"] == parent.id and b["beneficiary"]["id"] == child.id
    history = js.history(b["id"])
    assert [(t["seq"], t["from"], t["to"], t["event"], t["actor"]["kind"]) for t in history] == \
        [(1, None, "accepted", "invite", "person")]
    assert history[0]["actor"]["id"] == parent.id

    auth = js.ok(b["id"], "authorization", parent, amount_fen=30_000)
    assert auth["state"] == "authorized" and auth["authorized_amount_fen"] == 30_000
    assert auth["authorization"] == "amount"
    ended = js.ok(b["id"], "unbind", parent, reason="孩子已成年")
    assert ended["state"] == "unbound" and ended["end_event"] == "unbind"

    assert [(t["from"], t["to"], t["event"]) for t in js.history(b["id"])] == [
        (None, "accepted", "invite"), ("accepted", "authorized", "authorize"), ("authorized", "unbound", "unbind")]


def test_grandparent_invites_grandchild_under_16(js):
    """Given a grandparent in 南京 and a grandchild born in 2016 insured in 苏州 (Jiangsu allows grandchildren
    and sharing across its pooling regions)
    When the grandparent invites with relationship `grandchild`
    Then the binding is `accepted` on the guardian path at once, and the whole balance can be authorized."""
    grandparent = js.person("320100")
    grandchild = js.person("320500", birth=child_birth(2016), insurance_type="resident")

    resp = js.invite(grandparent, grandchild, "grandchild")

    assert resp.status_code == 201, resp.text
    b = resp.json()
    assert (b["state"], b["verification_method"]) == ("accepted", "guardian")
    auth = js.ok(b["id"], "authorization", grandparent, amount_fen=None)
    assert auth["state"] == "authorized" and auth["authorized_amount_fen"] is None
    assert auth["authorization"] == "whole_balance"
    assert js.ok(b["id"], "unbind", grandchild)["state"] == "unbound"


def test_sibling_under_16_is_refused_and_nothing_is_written(js):
    """Given an adult and a sibling born in 2015 (Jiangsu allows siblings, but not on the guardian path)
    When the adult invites the under-16 sibling
    Then 422 relationship_not_allowed, and neither person's family view changed."""
    adult = js.person("320100")
    sibling = js.person("320100", birth=child_birth(2015), insurance_type="resident")
    before = (js.family(adult), js.family(sibling))

    resp = js.invite(adult, sibling, "sibling")

    assert_problem(resp, 422, "relationship_not_allowed")
    assert (js.family(adult), js.family(sibling)) == before


def test_spouse_or_parent_under_16_is_refused(js):
    """Given a grantor and a person under 16
    When the grantor invites them as `spouse` or as `parent`
    Then both are 422 relationship_not_allowed (only a child or grandchild takes the guardian path)."""
    grantor = js.person("320100")
    minor = js.person("320100", birth=child_birth(2014), insurance_type="resident")
    for relationship in ("spouse", "parent"):
        assert_problem(js.invite(grantor, minor, relationship), 422, "relationship_not_allowed")
    assert js.family(minor)["as_beneficiary"] == []


def test_sixteen_year_old_verifies_their_own_face(js):
    """Given a child who turned 16 a week ago and one who turns 16 in a week (dates in Asia/Shanghai)
    When the parent invites each with relationship `child`
    Then the 16-year-old is `invited` on the face path and the 15-year-old is `accepted` on the guardian path."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    parent = js.person("320100")
    sixteen = js.person("320100", birth=_years_ago(today - timedelta(days=7), 16), insurance_type="resident")
    fifteen = js.person("320100", birth=_years_ago(today + timedelta(days=7), 16), insurance_type="resident")

    older, younger = js.invited(parent, sixteen, "child"), js.invited(parent, fifteen, "child")

    assert (older["state"], older["verification_method"]) == ("invited", "face")
    assert older["expires_at"] is not None and older["deadline_event"] == "expire"
    assert (younger["state"], younger["verification_method"]) == ("accepted", "guardian")
