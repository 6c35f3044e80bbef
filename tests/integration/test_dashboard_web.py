"""The dashboard's web layer through Flask's test client on a migrated SQLite file (the embedded default's
database): declared roles, refusals at the door, safe redirects, bad query strings, the language."""
from __future__ import annotations

import re

import pytest

from models.settings import Settings
from web.app import create_app
from workflows import operators

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture
def app(sqlite_db, crypto_keys):
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", dev_mode=True)
    for role in ("viewer", "operator"):
        operators.add(sqlite_db, role, "correct horse battery", role)
    return create_app(settings, db=sqlite_db, engine=None)


def signed_in(app, username: str, *, next_: str = ""):
    client = app.test_client()
    token = TOKEN.search(client.get("/dashboard/login").get_data(as_text=True)).group(1)
    answer = client.post(f"/dashboard/login{next_}", data={
        "csrf_token": token, "username": username, "password": "correct horse battery"})
    return client, answer


def test_every_dashboard_view_declares_its_role(app):
    """Given the app, When its dashboard endpoints are listed, Then each declares a role or is public."""
    undeclared = [rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("dashboard.")
                  and getattr(app.view_functions[rule.endpoint], "required_role", None) is None]
    assert undeclared == []


def test_a_view_without_a_declared_role_is_refused_before_it_runs(app):
    """Given a dashboard view registered without `requires`, When a signed-in operator asks for it, Then
    403 and the view never runs."""
    ran = []
    app.view_functions["dashboard.overview"] = lambda: ran.append(1) or "leaked"
    client, _ = signed_in(app, "operator")
    assert client.get("/dashboard/").status_code == 403 and ran == []


@pytest.mark.parametrize("target, lands", [("?next=/dashboard/audit", "/dashboard/audit"),
                                           ("?next=https://evil.example/dashboard", "/dashboard/"),
                                           ("?next=//evil.example/dashboard", "/dashboard/")])
def test_sign_in_follows_only_a_dashboard_next(app, target, lands):
    """Given a `next` parameter, When an operator signs in, Then only a path inside the dashboard is followed."""
    _, answer = signed_in(app, "viewer", next_=target)
    assert answer.status_code == 302 and answer.headers["Location"] == lands


def test_a_viewer_is_refused_an_operator_page_and_a_bad_cursor_is_a_400(app):
    """Given a viewer, When they open the batch form or page a list with a forged cursor, Then 403 and 400."""
    client, _ = signed_in(app, "viewer")
    assert client.get("/dashboard/batches/new?state=invited").status_code == 403
    assert client.get("/dashboard/bindings?after=not-a-cursor").status_code == 400
    import base64  # the webhook and delivery lists' cursors: an id beyond a BIGINT, digits that are not ASCII
    for forged in ("2026-01-01T00:00:00+00:00|99999999999999999999999", "2026-01-01T00:00:00+00:00|١٢"):
        after = base64.urlsafe_b64encode(forged.encode()).decode()
        for page in ("webhooks?", "deliveries?platform=national&"):
            assert client.get(f"/dashboard/{page}after={after}").status_code == 400, (page, forged)
    assert client.get("/dashboard/bindings?state=no_such_state").status_code == 400


def test_signed_out_visitors_are_sent_to_sign_in(app):
    """Given no session, When a page or an action is asked for, Then the answer is the sign-in page."""
    client = app.test_client()
    for answer in (client.get("/dashboard/bindings"), client.post("/dashboard/bindings/bnd_x/expire")):
        assert answer.status_code in (302, 400)
        if answer.status_code == 302:
            assert "/dashboard/login" in answer.headers["Location"]


def test_the_sign_in_page_is_at_the_address_api_md_gives_and_its_old_one(app):
    """Given no session, When /dashboard/login (API.md "Pages") and /dashboard/sign-in (its name before) are
    asked for, Then both are the sign-in form; and a viewer signs in at /dashboard/login."""
    client = app.test_client()
    for path in ("/dashboard/login", "/dashboard/sign-in"):
        page = client.get(path)
        assert page.status_code == 200 and TOKEN.search(page.get_data(as_text=True)), path
    token = TOKEN.search(client.get("/dashboard/login").get_data(as_text=True)).group(1)
    answer = client.post("/dashboard/login", data={"csrf_token": token, "username": "viewer",
                                                    "password": "correct horse battery"})
    assert answer.status_code == 302 and client.get("/dashboard/").status_code == 200


def test_the_language_switch_keeps_the_page_and_its_filters(app):
    """Given the Chinese list filtered by state, When English is chosen, Then the same filtered list comes
    back in English."""
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/bindings?state=invited").get_data(as_text=True)
    assert "绑定列表" in page
    answer = client.post("/dashboard/language", data={
        "csrf_token": TOKEN.search(page).group(1), "lang": "en", "next": "/dashboard/bindings?state=invited"})
    assert answer.headers["Location"] == "/dashboard/bindings?state=invited"
    assert "Bindings" in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_only_the_dashboard_has_a_cookie_session_and_rate_limits(app):
    """Given a client holding a signed-in dashboard cookie, When it calls a probe and the API, Then neither
    reads nor sets the cookie, nor carries rate-limit headers; the dashboard's sign-in still does both."""
    client, answer = signed_in(app, "viewer")
    assert answer.status_code == 302 and client.get_cookie("session") is not None

    for path in ("/healthz", "/api/v1/regions/320100"):
        outside = client.get(path)
        assert "Set-Cookie" not in outside.headers, path
        assert not any(h.startswith("X-RateLimit") for h in outside.headers.keys()), path
    assert client.get("/api/v1/regions/320100").status_code == 401  # the cookie is no credential for the API

    fresh = app.test_client()
    page = fresh.get("/dashboard/sign-in")
    token = TOKEN.search(page.get_data(as_text=True)).group(1)
    tried = fresh.post("/dashboard/sign-in", data={"csrf_token": token, "username": "viewer", "password": "wrong"})
    assert "Set-Cookie" in page.headers and tried.status_code == 401
    assert tried.headers.get("X-RateLimit-Limit") in ("10", "30")  # one of the two sign-in limits


def test_signing_out_ends_every_session_of_the_operator_even_a_copied_cookie(app):
    """Given an operator signed in on two browsers, and a copy of the first browser's cookie,
    When the first browser signs out,
    Then the copy and the second browser are sent to sign in again; signing in anew works."""
    first, _ = signed_in(app, "operator")
    second, _ = signed_in(app, "operator")
    copied = app.test_client()
    copied.set_cookie("session", first.get_cookie("session").value)
    assert copied.get("/dashboard/").status_code == 200 and second.get("/dashboard/").status_code == 200

    token = TOKEN.search(first.get("/dashboard/").get_data(as_text=True)).group(1)
    assert first.post("/dashboard/sign-out", data={"csrf_token": token}).status_code == 302

    for client in (copied, second):
        answer = client.get("/dashboard/")
        assert answer.status_code == 302 and "/dashboard/login" in answer.headers["Location"]
    again, answer = signed_in(app, "operator")
    assert answer.status_code == 302 and again.get("/dashboard/").status_code == 200


def test_a_new_password_ends_the_sessions_signed_in_with_the_old_one(app, sqlite_db):
    """Given a signed-in viewer, When an admin sets the viewer a new password, Then that session is over."""
    client, _ = signed_in(app, "viewer")
    assert client.get("/dashboard/").status_code == 200
    operators.set_password(sqlite_db, "viewer", "another horse battery")
    assert client.get("/dashboard/").status_code == 302


def test_the_audit_log_shows_what_a_policy_publish_and_withdrawal_did(app, sqlite_db):
    """Given a version of 乌鲁木齐's policy published from the command line, and a pending one published and
    withdrawn, when a viewer opens the audit log (in Chinese, the default), then each entry shows who, why,
    the region, the version and its time, and a publish or a withdrawal the fields the version changed."""
    from datetime import timedelta

    from models.types import utcnow
    from workflows import policy_admin, policy_fields

    now = utcnow()
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["cross_province=true"]),
                         effective_from=now, who="zhang", reason="自治区通知", now=now)
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["frequency_max_changes=4"]),
                         effective_from=now + timedelta(days=400), who="li", reason="明年", now=now)
    policy_admin.withdraw(sqlite_db, "650100", 3, who="li", reason="打错了", now=now)
    client, _ = signed_in(app, "viewer")

    page = client.get("/dashboard/audit").get_data(as_text=True)
    table = page[page.index("<table"):]  # the action filter above it names every action too
    withdrawal = table[table.index("撤回尚未生效的政策版本"):].split("</tr>")[0]

    assert "cli:zhang" in page and "自治区通知" in page and "<code>cross_province=True</code>" in page
    assert "统筹区 650100，第 2 版，自" in page and "统筹区 650100，第 3 版，自" in page
    assert "发布统筹区政策新版本" in page and "撤回尚未生效的政策版本" in page and "打错了" in page
    assert "<code>frequency_max_changes=4</code>" in page
    assert "<code>frequency_max_changes=4</code>" in withdrawal and "cross_province" not in withdrawal


def test_the_policy_page_shows_each_regions_versions_in_force_pending_and_older(app, sqlite_db):
    """Given 乌鲁木齐 with version 2 in force and version 3 pending (published from the command line), when a
    viewer opens the policy page, then every seeded region is listed, and 乌鲁木齐 shows version 3 pending,
    2 in force, 1 older, with the fields of the one in force (in Chinese, the default)."""
    from datetime import timedelta

    from models.types import utcnow
    from workflows import policy_admin, policy_fields

    now = utcnow() - timedelta(minutes=2)  # published 2 minutes ago: in force since 90 s after that
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["cross_province=true"]),
                         effective_from=now, who="zhang", reason="通知", now=now)
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["invitation_ttl_s=259200"]),
                         effective_from=now + timedelta(days=30), who="zhang", reason="通知", now=now)
    client, _ = signed_in(app, "viewer")

    page = client.get("/dashboard/policies").get_data(as_text=True)

    rows = re.findall(r'data-region="(\d+)" data-version="(\d+)" data-status="(\w+)"', page)
    assert {r for r, _, _ in rows} == {"320100", "320500", "650100", "652900"}
    assert [(v, s) for r, v, s in rows if r == "650100"] == [("3", "pending"), ("2", "in_force"), ("1", "older")]
    assert "待生效" in page and "生效中" in page and "跨省" in page and "3 天" in page and "由被共济人排序" in page


def test_signing_in_and_looking_up_work_while_redis_is_away(sqlite_db, crypto_keys):
    """Given the dashboard whose rate limits live in a Redis that is not there (a closed port)
    When an operator signs in and looks a number up, and then 10 wrong passwords are tried for that name
    Then the sign-in and the look-up answer as usual (not 500), and the sign-in limit (10 a minute per
    address and name, the good one counted) still holds, kept in the process's memory until Redis is back."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connection refused
        settings = Settings(database_url="sqlite://", redis_url=f"redis://127.0.0.1:{closed}/0",
                            pii_keys=crypto_keys["pii_keys"], pii_active_key=crypto_keys["active"],
                            lookup_key=crypto_keys["lookup_key"], secret_key="test-secret", dev_mode=True)
        operators.add(sqlite_db, "viewer", "correct horse battery", "viewer")
        app = create_app(settings, db=sqlite_db, engine=None)
        client, answer = signed_in(app, "viewer")
        assert (answer.status_code, answer.headers.get("Location")) == (302, "/dashboard/")
        token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
        looked_up = client.post("/dashboard/find", data={"csrf_token": token, "id_number": "320102198001011238"})
        assert looked_up.status_code == 200

        other = app.test_client()
        token = TOKEN.search(other.get("/dashboard/login").get_data(as_text=True)).group(1)
        codes = [other.post("/dashboard/login", data={"csrf_token": token, "username": "viewer",
                                                      "password": "wrong"}).status_code for _ in range(10)]
        assert codes == [401] * 9 + [429], codes


def test_a_database_that_cannot_be_reached_is_a_503_page_that_says_to_try_again(app, monkeypatch):
    """Given a signed-in operator, and then a database that cannot be reached (a restart, a failover: the
    error SQLAlchemy raises when psycopg cannot connect), met first where a real outage meets it: loading
    the signed-in operator of the request
    When they open the overview, in Chinese (the default) and in English
    Then a 503 dashboard page with a Retry-After says the database is away for the moment and to try again,
    not a 500 "server error" (nor an error escaping the app while the error page asks who is signed in);
    the API answers the same moment with problem+json 503 `unavailable`."""
    import psycopg
    import sqlalchemy as sa

    from web.dashboard import auth

    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: an error escaping the handlers is a bare 500
    client, _ = signed_in(app, "operator")
    english, _ = signed_in(app, "viewer")
    page = english.get("/dashboard/").get_data(as_text=True)
    english.post("/dashboard/language", data={"csrf_token": TOKEN.search(page).group(1), "lang": "en"})
    token = TOKEN.search(client.get("/dashboard/").get_data(as_text=True)).group(1)  # the session's CSRF token
    away = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection failed: refused"))

    def unreachable(*_args, **_kw):
        raise away
    monkeypatch.setattr(auth.operators, "get", unreachable)
    page = client.get("/dashboard/", headers={"X-Request-Id": "proxy-7f3a"})
    assert page.status_code == 503 and int(page.headers["Retry-After"]) >= 1
    text = page.get_data(as_text=True)
    assert "暂时无法使用" in text and "数据库暂时无法连接" in text and "服务器出错" not in text
    # the request's id, to quote to whoever reads the logs: the one a proxy in front gave it
    assert page.headers["X-Request-Id"] == "proxy-7f3a" and '<code id="request-id">proxy-7f3a</code>' in text
    text = english.get("/dashboard/").get_data(as_text=True)
    assert "Temporarily unavailable" in text and "database cannot be reached" in text and "Server error" not in text
    # a view that meets the outage before anything asked who is signed in (signing in again with a cookie that
    # still names an operator): the error page is the first to ask, and still a 503
    monkeypatch.setattr(auth.operators, "authenticate", unreachable)
    again = client.post("/dashboard/login", data={"csrf_token": token, "username": "operator", "password": "x"})
    assert again.status_code == 503 and "数据库暂时无法连接" in again.get_data(as_text=True)

    def api_unreachable():
        raise away
    app.before_request_funcs[None].insert(1, api_unreachable)  # after the request's id is made (the first hook)
    api = client.get("/api/v1/regions/320100", headers={"Authorization": "Bearer x"})
    assert api.status_code == 503 and api.json["code"] == "unavailable" and api.headers["Retry-After"]
    assert api.json["request_id"] == api.headers["X-Request-Id"]


def test_the_audit_log_filters_by_operator_action_and_outcome_and_pages_with_them(app, sqlite_db):
    """Given audit entries by two operators (a done and a refused unbind, three retries by one, a reveal)
    When a viewer filters the audit log by operator, by action, by refused only, and pages a filter
    Then each shows only what matches, the form keeps what was chosen, the next page keeps the filters, and
    a value no column holds is a 400."""
    from web.dashboard import views
    from workflows.errors import DomainError

    def audited(who: str, action: str, outcome: str = "ok", binding: str = "bnd_a") -> None:
        if outcome == "ok":
            with sqlite_db.begin() as s:
                operators.record(s, who, action, binding_id=binding, reason=f"{who} {action}")
        else:
            operators.record_refusal(sqlite_db, who, action, DomainError(outcome), binding_id=binding,
                                     reason=f"{who} {action}")

    audited("zhang", "unbind")
    audited("zhang", "unbind", "illegal_transition")
    for k in range(3):
        audited("li", "retry", binding=f"bnd_r{k}")
    audited("li", "reveal")
    client, _ = signed_in(app, "viewer")

    def rows(query: str) -> list[str]:
        page = client.get(f"/dashboard/audit?{query}").get_data(as_text=True)
        return re.findall(r"<td class=\"wrap\">([a-z]+ [a-z]+)</td>", page)

    assert rows("operator=zhang") == ["zhang unbind", "zhang unbind"]
    assert rows("action=retry") == ["li retry"] * 3
    assert rows("outcome=refused") == ["zhang unbind"]
    assert rows("operator=li&outcome=ok&action=reveal") == ["li reveal"]
    assert rows("operator=nobody") == []
    page = client.get("/dashboard/audit?action=retry&operator=li").get_data(as_text=True)
    assert 'value="li"' in page and '<option value="retry" selected>' in page
    views.PAGE, saved = 2, views.PAGE  # 2 a page: the third retry is on the next one, the filters kept
    try:
        first = client.get("/dashboard/audit?action=retry").get_data(as_text=True)
        older = re.search(r'href="(/dashboard/audit\?before=[^"]+)"', first).group(1).replace("&amp;", "&")
        assert "action=retry" in older
        assert re.findall(r"<td class=\"wrap\">([a-z]+ [a-z]+)</td>",
                          client.get(older).get_data(as_text=True)) == ["li retry"]
    finally:
        views.PAGE = saved
    for bad in ("outcome=maybe", "operator=" + "x" * 65, "action=" + "y" * 49):
        assert client.get(f"/dashboard/audit?{bad}").status_code == 400
