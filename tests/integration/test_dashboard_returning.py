"""Where the dashboard sends an operator back to (Flask test client, migrated SQLite file): signing in
after a form was sent on an ended session, the 405 page's own title, a refused (expired) CSRF token, and
the language switch on a page that answers a POST. Operator review 2, items 1, 8 and 10."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from workflows import operators

from .support import invite
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)


@pytest.fixture
def binding_id(sqlite_db, family):
    return invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]


def _language_next(page: str) -> str:
    return re.search(r'name="lang" value="\w+"><input type="hidden" name="next" value="([^"]*)"', page).group(1)


# --- 1. after the session ended, a form sent returns to its page ------------------------------------------

@pytest.mark.parametrize("referrer", [True, False])
def test_an_action_sent_after_the_session_ended_comes_back_to_its_binding(app, sqlite_db, binding_id, referrer):  # noqa: F811
    """Given an operator on a binding page whose session was ended meanwhile (signed out elsewhere)
    When they send its expire form (with or without a referrer), and then sign in from where they are sent
    Then the sign-in `next` is the binding page, never the POST-only /expire, and signing in lands there."""
    client, _ = signed_in(app, "operator")
    page_url = f"/dashboard/bindings/{binding_id}"
    token = TOKEN.search(client.get(page_url).get_data(as_text=True)).group(1)
    operators.end_sessions(sqlite_db, operators.authenticate(sqlite_db, "operator", "correct horse battery").id)

    headers = {"Referer": f"http://localhost{page_url}"} if referrer else {}
    sent = client.post(f"{page_url}/expire", data={"csrf_token": token, "reason": "过期"}, headers=headers)

    assert sent.status_code == 302
    location = sent.headers["Location"]
    assert location.startswith("/dashboard/login?next=") and "expire" not in location
    token = TOKEN.search(client.get(location).get_data(as_text=True)).group(1)
    signed = client.post(location, data={"csrf_token": token, "username": "operator",
                                         "password": "correct horse battery"})
    assert signed.headers["Location"] == page_url and client.get(page_url).status_code == 200


def test_a_next_naming_a_post_only_action_signs_in_to_the_page_it_belongs_to(app, binding_id):  # noqa: F811
    """Given a sign-in link whose next is an action URL (an old link), When the operator signs in, Then
    they land on the binding page (no 405); a look-up's next lands on the list."""
    _, answer = signed_in(app, "viewer", next_=f"?next=/dashboard/bindings/{binding_id}/expire")
    assert answer.headers["Location"] == f"/dashboard/bindings/{binding_id}"
    _, answer = signed_in(app, "viewer", next_="?next=/dashboard/find")
    assert answer.headers["Location"] == "/dashboard/bindings"
    # a settlement's reversal lands on its page, the settlements' look-up on their list
    _, answer = signed_in(app, "viewer", next_="?next=/dashboard/settlements/stl_x/reversal")
    assert answer.headers["Location"] == "/dashboard/settlements/stl_x"
    _, answer = signed_in(app, "viewer", next_="?next=/dashboard/settlements")
    assert answer.headers["Location"] == "/dashboard/settlements"


def test_a_405_page_has_its_own_title(app, binding_id):  # noqa: F811
    """Given a signed-in viewer, When they open an action URL with a GET, Then the 405 page is titled
    不支持此请求方式, not 无权访问 (which the 403 page keeps)."""
    client, _ = signed_in(app, "viewer")
    answer = client.get(f"/dashboard/bindings/{binding_id}/expire")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 405 and "<h1>405 · 不支持此请求方式</h1>" in text and "无权访问" not in text
    assert "<h1>403 · 无权访问</h1>" in client.get("/dashboard/batches/new?state=invited").get_data(as_text=True)


# --- 8. an expired form -----------------------------------------------------------------------------------

@pytest.mark.parametrize("referrer, back", [
    ("http://localhost/dashboard/bindings/{bid}?x=1", "/dashboard/bindings/{bid}?x=1"),  # the page it came from
    ("https://evil.example/dashboard/", "/dashboard/bindings/{bid}"),  # another site: the action's page
    (None, "/dashboard/bindings/{bid}")])
def test_an_expired_form_says_so_and_links_back(app, binding_id, referrer, back):  # noqa: F811
    """Given an operator whose form's CSRF token is no longer valid (a long pause, a sign-out)
    When the form is sent
    Then a 400 page says the form has expired, to go back and reload, and links back to the page it came
    from when the referrer is a dashboard page of this site (else to the page its action belongs to)."""
    client, _ = signed_in(app, "operator")
    headers = {"Referer": referrer.format(bid=binding_id)} if referrer else {}
    answer = client.post(f"/dashboard/bindings/{binding_id}/expire", data={"csrf_token": "stale", "reason": "x"},
                         headers=headers)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'data-why="form_expired"' in text
    assert "表单已失效" in text and "刷新后重新提交" in text and "请求有误" not in text
    assert f'<a id="back" href="{back.format(bid=binding_id)}">返回刚才的页面</a>' in text
    assert "evil.example" not in text


# --- 10. the language switch on a page answering a POST ----------------------------------------------------

def test_the_language_switch_after_a_failed_sign_in_keeps_next(app):  # noqa: F811
    """Given a failed sign-in on /dashboard/login?next=/dashboard/audit, When English is chosen on that page,
    Then the switch returns to the sign-in page with its next, and signing in then lands on the audit log."""
    client = app.test_client()
    token = TOKEN.search(client.get("/dashboard/login?next=/dashboard/audit").get_data(as_text=True)).group(1)
    failed = client.post("/dashboard/login?next=/dashboard/audit",
                         data={"csrf_token": token, "username": "viewer", "password": "wrong"})
    text = failed.get_data(as_text=True)
    target = _language_next(text)
    assert failed.status_code == 401 and target == "/dashboard/login?next=/dashboard/audit"
    switched = client.post("/dashboard/language", data={"csrf_token": TOKEN.search(text).group(1), "lang": "en",
                                                        "next": target})
    assert switched.headers["Location"] == target
    token = TOKEN.search(client.get(target).get_data(as_text=True)).group(1)
    signed = client.post(target, data={"csrf_token": token, "username": "viewer", "password": "correct horse battery"})
    assert signed.headers["Location"] == "/dashboard/audit"


def test_the_language_switch_after_a_look_up_or_a_reveal_keeps_the_page_without_the_number(app, sqlite_db, family):  # noqa: F811
    """Given a look-up's results and a revealed identity (pages answering a POST)
    When their language switch is read
    Then it returns to the list and to the binding page, and no ID number is in it."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    operators.add(sqlite_db, "admin", "correct horse battery", "admin")
    client, _ = signed_in(app, "admin")
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    found = client.post("/dashboard/find", data={"csrf_token": token, "id_number": fam.grantor}).get_data(as_text=True)
    assert bid in found and _language_next(found) == "/dashboard/bindings"
    shown = client.post(f"/dashboard/bindings/{bid}/reveal", data={"csrf_token": token, "side": "grantor",
                                                                   "reason": "核对"}).get_data(as_text=True)
    assert 'id="revealed"' in shown and _language_next(shown) == f"/dashboard/bindings/{bid}"
    assert fam.grantor not in _language_next(found) + _language_next(shown)
