"""The list's look-up box (Flask test client, migrated SQLite file): a binding opened by its id, only the
error for a refused number, and every look-up by number audited (never the number whole) and limited per
operator. Operator review 2, items 3, 9 and 11."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from models import AuditEntry
from workflows import idnumbers

from .support import invite
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)


def _find(client, typed: str):
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    return client.post("/dashboard/find", data={"csrf_token": token, "id_number": typed})


def _lookups(db) -> list[AuditEntry]:
    with db() as s:
        return s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "find_by_id_number")
                         .order_by(AuditEntry.id)).all()


# --- 3. a binding by its id ---------------------------------------------------------------------------------

def test_a_binding_id_typed_into_the_look_up_box_opens_that_binding(app, sqlite_db, family):  # noqa: F811
    """Given a binding, When a viewer types its id (with spaces around, upper case) into the look-up box,
    Then its page opens; an unknown id opens the 404 page; neither is an audited look-up of a person."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/bindings").get_data(as_text=True)
    assert "或输入绑定编号（bnd_…）直接打开" in page

    opened = _find(client, f"  {bid.upper()} ")
    assert opened.status_code == 303 and opened.headers["Location"] == f"/dashboard/bindings/{bid}"
    assert bid in client.get(opened.headers["Location"]).get_data(as_text=True)
    unknown = _find(client, "bnd_nope")
    assert client.get(unknown.headers["Location"]).status_code == 404
    assert _lookups(sqlite_db) == []


# --- 9. a refused number shows only its error ------------------------------------------------------------

def test_an_invalid_id_number_shows_only_the_error(app):  # noqa: F811
    """Given a viewer, When they look up a number whose check digit is wrong, Then the page shows the error
    and neither the results' heading nor "no binding matches"."""
    client, _ = signed_in(app, "viewer")
    text = _find(client, "320102198001011234").get_data(as_text=True)
    assert "不是有效的居民身份证号码" in text
    assert 'id="lookup-result"' not in text and "该身份证号对应人员的绑定" not in text and "没有匹配的绑定" not in text


# --- 11. audited and limited ---------------------------------------------------------------------------------

def test_each_look_up_by_number_is_audited_with_the_number_masked(app, sqlite_db, family):  # noqa: F811
    """Given a grantor with one binding
    When a viewer looks up the grantor's number, then an invalid number
    Then two audit rows name the viewer, the count found (1, then 0) and for the valid one its masked
    form; the whole number is in no row; and the audit log shows the look-up in words."""
    fam = family(sqlite_db)
    invite(sqlite_db, fam, now=datetime.now(timezone.utc))
    client, _ = signed_in(app, "viewer")
    _find(client, fam.grantor)
    _find(client, "320102198001011234")

    found, refused = _lookups(sqlite_db)
    assert (found.operator, found.outcome, found.binding_id) == ("viewer", "ok", None)
    assert found.detail == {"found": 1, "id_number_masked": idnumbers.mask(fam.grantor)}
    assert (refused.outcome, refused.detail) == ("invalid_id_number", {"found": 0})
    for row in (found, refused):
        stored = f"{row.reason} {row.detail} {row.outcome}"
        assert fam.grantor not in stored and "320102198001011234" not in stored
    log = client.get("/dashboard/audit").get_data(as_text=True)
    assert f"身份证号 {idnumbers.mask(fam.grantor)}：找到 1 条绑定" in log and "按身份证号查找人员的绑定" in log
    assert fam.grantor not in log


def _viewer_who_looked_up_twenty_numbers(app):  # noqa: F811
    """A signed-in viewer who used up the minute's budget of look-ups by number in the bindings' box:
    (client, CSRF token)."""
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    for _ in range(20):
        assert client.post("/dashboard/find", data={"csrf_token": token, "id_number": "320102198001011234"}
                           ).status_code == 200
    return client, token


def test_look_ups_by_number_are_limited_per_operator(app, sqlite_db):  # noqa: F811
    """Given a viewer who has made 20 look-ups in a minute
    When they make one more
    Then it is refused with the translated 429 page (and not audited); another operator may still look up,
    and the viewer may still open a binding by its id."""
    client, token = _viewer_who_looked_up_twenty_numbers(app)
    refused = client.post("/dashboard/find", data={"csrf_token": token, "id_number": "320102198001011234"})
    assert refused.status_code == 429 and 'data-status="429"' in refused.get_data(as_text=True)
    assert "尝试次数过多" in refused.get_data(as_text=True) and len(_lookups(sqlite_db)) == 20
    assert client.post("/dashboard/find", data={"csrf_token": token, "id_number": "bnd_x"}).status_code == 303
    other, _ = signed_in(app, "operator")
    assert _find(other, "320102198001011234").status_code == 200


def test_the_two_look_up_boxes_share_one_budget_of_look_ups_by_number(app, sqlite_db):  # noqa: F811
    """Given a viewer who has made 20 look-ups by number in a minute in the bindings' box
    When they type a number into the settlements' look-up box
    Then it is refused (429) too: the boxes share one budget, or one operator could sweep twice as many
    numbers unseen; a reference in the settlements' box is not a number and still opens its list."""
    client, token = _viewer_who_looked_up_twenty_numbers(app)
    refused = client.post("/dashboard/settlements", data={"csrf_token": token, "q": "320102198001011234"})
    assert refused.status_code == 429
    assert client.post("/dashboard/settlements", data={"csrf_token": token, "q": "JS-F1"}).status_code == 303
