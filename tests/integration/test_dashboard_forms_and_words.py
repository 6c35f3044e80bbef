"""What an operator reads and types on the dashboard, from a read-only operator's review: a refused form says
why and keeps what was typed; codes are worded in the page's language (Chinese by default); a settlement's dead
delivery names its settlement; edge values in a URL are a 400/404, never a 500. Flask's test client on the
embedded default's SQLite."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import Delivery, OutboxMessage, ReceivedWebhook
from models.types import utcnow
from workflows import delivery_views, operators, platforms, routing, verification

from .support import accepted, invite, person
from .test_dashboard_presentation import admin  # noqa: F401  (the admin fixture)
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)
from .test_settlements import _authorized, _settle


def _page(client, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def test_a_reason_too_long_is_refused_as_too_long_and_the_textareas_stop_at_it(app, sqlite_db, family):  # noqa: F811
    """Given an invited binding, When an operator expires it with a 1005-character reason
    Then nothing is done and the message says a reason is at most 1000 characters (not "give a reason"); the
    page's reason boxes carry maxlength="1000", so a browser stops there."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    assert 'name="reason" required maxlength="1000"' in page
    answer = client.post(f"/dashboard/bindings/{bid}/expire", data={"csrf_token": TOKEN.search(page).group(1),
                                                                     "reason": "很长的原因" * 201})
    after = _page(client, answer.headers["Location"])
    assert "原因最多 1000 个字符" in after and 'data-state="invited"' in after


@pytest.mark.parametrize("reason", ["邀请已失效\x00", "邀请\u202e已失效"])
def test_a_reason_with_a_control_or_direction_character_is_refused(app, sqlite_db, family, reason):  # noqa: F811
    """Given an invited binding, When an operator expires it with a reason holding a NUL or a direction
    override, Then nothing is done and the message says why (as the API refuses them: the same on SQLite and
    on PostgreSQL, which cannot store a NUL)."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    answer = client.post(f"/dashboard/bindings/{bid}/expire", data={"csrf_token": TOKEN.search(page).group(1),
                                                                     "reason": reason})
    after = _page(client, answer.headers["Location"])
    assert "原因中含有控制字符或文字方向控制符" in after and 'data-state="invited"' in after


def test_a_batch_refused_for_a_changed_count_keeps_what_was_typed_and_says_the_new_count(app, sqlite_db, family):  # noqa: F811
    """Given three overdue invitations and the batch form for them (count 3)
    When an operator confirms expire with a reason while the form still says 2 (the count changed)
    Then the form comes back (409) with expire still chosen and the reason still typed, the count as it is
    now, and a message naming both counts; no batch was started."""
    for _ in range(3):
        invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc) - timedelta(days=30))
    client, _ = signed_in(app, "operator")
    form = _page(client, "/dashboard/batches/new?stuck=timer_overdue")
    answer = client.post("/dashboard/batches", data={
        "csrf_token": TOKEN.search(form).group(1), "stuck": "timer_overdue", "action": "expire", "expected": "2",
        "reason": "过期邀请统一处理", "confirm": "y"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 409
    assert re.search(r'<option selected value="expire">|<option value="expire" selected>', page), page[:3000]
    assert "过期邀请统一处理</textarea>" in page and 'data-count="3"' in page
    assert "现在匹配 3 个绑定，而不是您确认的 2 个" in page


@pytest.mark.parametrize("query", ["until=9999-12-31", "since=0001-01-01", "since=0001-01-01&until=9999-12-31"])
def test_the_settlement_list_takes_the_dates_operators_type_for_no_bound(app, query):  # noqa: F811
    """Given the settlement list, When filtered from 0001-01-01 or until 9999-12-31, Then the list (200)."""
    client, _ = signed_in(app, "viewer")
    assert client.get(f"/dashboard/settlements?{query}").status_code == 200


def test_ids_beyond_a_bigint_are_400_or_404(app):  # noqa: F811
    client, _ = signed_in(app, "viewer")
    assert client.get("/dashboard/audit?before=99999999999999999999999").status_code == 400
    assert client.get("/dashboard/webhooks/99999999999999999999").status_code == 404


def test_the_look_up_box_finds_a_number_grouped_by_hyphens(app, sqlite_db, family):  # noqa: F811
    """Given a binding, When a viewer types the grantor's number as 320-102-19800101-1234, Then it is found."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    n = fam.grantor
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(_page(client, "/dashboard/bindings")).group(1)
    text = client.post("/dashboard/find", data={"csrf_token": token,
                                                "id_number": f"{n[:3]}-{n[3:6]}-{n[6:14]}-{n[14:]}"}).get_data(as_text=True)
    assert bid in text and 'id="lookup-error"' not in text


def test_an_attempt_the_binding_left_behind_and_the_timer_are_worded(admin, sqlite_db, family):  # noqa: F811
    """Given a binding whose face verification was still open when an operator expired it
    When its page is read, Then the attempt reads 已放弃 (not `abandoned`), its reason 过期 (not `expire`)."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    verification.start_verification(sqlite_db, bid, person(fam.beneficiary))
    client, _ = signed_in(admin, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    client.post(f"/dashboard/bindings/{bid}/expire", data={"csrf_token": TOKEN.search(page).group(1), "reason": "邀请已失效",
                                                           "seen": "2", "confirm": "y"})
    page = _page(client, f"/dashboard/bindings/{bid}")
    assert ">abandoned<" not in page and "已放弃" in page
    assert '<span class="reason">expire</span>' not in page


def test_an_operator_accounts_changes_read_as_words_with_whose_and_what(admin, sqlite_db):  # noqa: F811
    """Given an operator whose role was changed and who was disabled and enabled again
    When the audit log is read, Then each row names the change in words and the account (and the roles)."""
    operators.add(sqlite_db, "op2", "correct horse battery", "viewer")
    operators.set_role(sqlite_db, "op2", "operator")
    operators.set_disabled(sqlite_db, "op2", True)
    operators.set_disabled(sqlite_db, "op2", False)
    client, _ = signed_in(admin, "admin")
    page = _page(client, "/dashboard/audit")
    for words in ("更改经办人员角色", "停用经办人员", "启用经办人员"):
        assert words in page, words
    table = page[page.index("<table"):]  # (the action filter above it has the codes as its option values)
    assert "operator.role" not in table and re.search(r'<span class="account">op2：[^<]+ → [^<]+</span>', table)


def test_a_settlements_dead_delivery_names_its_settlement(sqlite_db, family, new_person):
    """Given a settlement whose delivery to Jiangsu died
    When the platform's dead deliveries are listed, Then the row carries the settlement's id and reference
    (no binding, no version: it is not a binding event)."""
    platforms.set_webhook_url(sqlite_db, "jiangsu", "http://127.0.0.1:9/hooks")  # down: its deliveries die
    fam, _ = _authorized(sqlite_db, family, new_person, cap=None)
    made, _ = _settle(sqlite_db, fam, 1_000, "JS-DEAD-1")
    with sqlite_db() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.topic == "settlement.completed"))
    routing.fan_out(sqlite_db, outbox_id)
    with sqlite_db.begin() as s:
        s.execute(sa.update(Delivery).where(Delivery.outbox_id == outbox_id).values(status="dead", dead_at=utcnow()))
    [row] = [d for d in delivery_views.dead(sqlite_db, "jiangsu")["items"] if d["topic"] == "settlement.completed"]
    assert (row["settlement_id"], row["settlement_reference"], row["binding_id"], row["binding_version"]) == (
        made["id"], "JS-DEAD-1", None, None)


def test_an_inbound_webhooks_outcome_and_a_system_actor_are_worded(app, sqlite_db, family):  # noqa: F811
    """Given a processed webhook whose outcome is `no_binding`, and a binding the timer expired
    When their pages are read, Then the outcome reads 没有可处理的绑定 (the code beside it) and the actor
    系统 定时器 (not `timer`)."""
    with sqlite_db.begin() as s:
        w = ReceivedWebhook(platform_id="jiangsu", webhook_id="msg_words", type="relationship.ended", body="{}",
                            headers={}, received_at=utcnow(), processed_at=utcnow(), attempts=1, outcome="no_binding")
        s.add(w)
        s.flush()
        wid = w.id
    bid = accepted(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))
    from workflows import commands
    from workflows.actors import SYSTEM_TIMER
    commands.unbind(sqlite_db, bid, SYSTEM_TIMER, reason="test")
    client, _ = signed_in(app, "viewer")
    assert "没有可处理的绑定" in _page(client, f"/dashboard/webhooks/{wid}")
    page = _page(client, f"/dashboard/bindings/{bid}")
    assert "系统 定时器" in page and "系统 timer" not in page


def test_a_batchs_refusals_are_found_through_its_own_audit_log(admin, sqlite_db):  # noqa: F811
    """Given audit rows of two batches and one of no batch
    When the audit log is opened for one batch (the batch page's link), Then only that batch's rows are
    listed, and the filter is named with a way back to every entry."""
    with sqlite_db.begin() as s:
        for batch_id, reason in (("bat_one", "第一批"), ("bat_one", "第一批拒绝"), ("bat_two", "第二批"), (None, "单个")):
            operators.record(s, "op1", "batch_expire", reason=reason, outcome="illegal_transition" if "拒绝" in reason
                             else "ok", batch_id=batch_id)
    client, _ = signed_in(admin, "viewer")
    page = _page(client, "/dashboard/audit?batch=bat_one")
    assert "第一批拒绝" in page and "第一批" in page and "第二批" not in page and "单个" not in page
    assert 'id="audit-filter"' in page


def _flash(page: str) -> str:
    return re.search(r'<div class="flash (?:error|ok|message)"[^>]*>(.*?)</div>', page, re.S).group(1)


def test_an_action_sent_from_a_page_the_binding_has_moved_past_is_refused_and_says_so(app, sqlite_db, family):  # noqa: F811
    """Given an operator on an invited binding's page (version 1)
    When the beneficiary opens a face verification meanwhile and the operator then expires it from that page
    Then nothing is done: the flash says the binding changed after the page was opened, the binding is
    still invited; the page as it is now carries version 2 and expiring from it works."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    assert '<input type="hidden" name="seen" value="1">' in page
    verification.start_verification(sqlite_db, bid, person(fam.beneficiary))
    form = {"csrf_token": TOKEN.search(page).group(1), "reason": "市民要求撤销邀请", "seen": "1", "confirm": "y"}
    after = _page(client, client.post(f"/dashboard/bindings/{bid}/expire", data=form).headers["Location"])
    assert "打开此页面后绑定已发生变化" in _flash(after) and "changed_since_seen" in _flash(after)
    assert 'data-state="invited"' in after and '<input type="hidden" name="seen" value="2">' in after
    after = _page(client, client.post(f"/dashboard/bindings/{bid}/expire", data={**form, "seen": "2"})
                  .headers["Location"])
    assert 'data-state="expired"' in after


@pytest.mark.parametrize("form, says", [
    ({"seen": "1"}, "请勾选确认"),  # no confirmation
    ({"confirm": "y"}, "页面已过时"),  # a form without the page's version (forged or from an old page)
    ({"seen": "x", "confirm": "y"}, "页面已过时")])
def test_ending_a_binding_needs_the_confirmation_and_the_page_version(app, sqlite_db, family, form, says):  # noqa: F811
    """Given an invited binding, When an operator sends expire without ticking the confirmation, or without
    the page's version, Then nothing is done and the flash says what is missing; the page offers the box
    (required, so a browser asks first) on expire only, not on retry."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    expire_form = re.search(r'<form[^>]*data-action="expire">(.*?)</form>', page, re.S).group(1)
    assert 'name="confirm" value="y" required' in expire_form
    answer = client.post(f"/dashboard/bindings/{bid}/expire",
                         data={"csrf_token": TOKEN.search(page).group(1), "reason": "撤销", **form})
    after = _page(client, answer.headers["Location"])
    assert says in _flash(after) and 'data-state="invited"' in after


def test_a_retry_that_could_do_nothing_for_one_reason_names_it(app, sqlite_db, family, monkeypatch):  # noqa: F811
    """Given a binding whose retry repairs worker_error and finds nothing left to try for sync_behind (the
    workflow's answer, `repair.retry`'s `idle`; tests/integration/test_stuck.py makes it for real)
    When an operator retries it from its page
    Then the page says it was done, and, as an error, that nothing was left to try again for 平台数据同步落后."""
    from workflows import repair
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    monkeypatch.setitem(repair.ACTIONS, "retry", lambda db, who, binding_id, reason, seen=None: {
        "reasons": ["sync_behind", "worker_error"], "idle": ["sync_behind"]})
    client, _ = signed_in(app, "operator")
    page = _page(client, f"/dashboard/bindings/{bid}")
    after = _page(client, client.post(f"/dashboard/bindings/{bid}/retry", data={
        "csrf_token": TOKEN.search(page).group(1), "reason": "江苏说没收到", "seen": "1"}).headers["Location"])
    flashes = re.findall(r'<div class="flash (error|ok)"[^>]*>(.*?)</div>', after, re.S)
    assert [kind for kind, _ in flashes] == ["ok", "error"]
    assert "以下原因已无可重试的内容：平台数据同步落后。" in flashes[1][1]


def test_over_plain_http_a_secure_cookie_dashboard_says_it_needs_https(app):  # noqa: F811
    """Given production's Secure session cookie (dev_mode off), When the sign-in page is opened over plain
    HTTP and the form sent, Then the page warns at once, and the refusal says the dashboard needs HTTPS (the
    browser never sends the cookie back over http) rather than "the form has expired, reload it"; over
    HTTPS neither appears."""
    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    plain = app.test_client()
    page = _page(plain, "/dashboard/login")
    assert 'id="needs-https"' in page and "HTTPS" in page
    plain.delete_cookie("session")  # what a browser does with a Secure cookie over http: never sends it back
    refused = plain.post("/dashboard/login", data={"csrf_token": TOKEN.search(page).group(1), "username": "viewer",
                                                   "password": "correct horse battery"})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'data-why="needs_https"' in text and "运维后台需要通过 HTTPS 访问" in text
    secure = app.test_client()
    page = _page(secure, "https://localhost/dashboard/login")
    assert 'id="needs-https"' not in page
    signed = secure.post("https://localhost/dashboard/login", data={  # a browser's Referer (Flask-WTF's
        "csrf_token": TOKEN.search(page).group(1), "username": "viewer",  # check over https)
        "password": "correct horse battery"}, headers={"Referer": "https://localhost/dashboard/login"})
    assert signed.status_code == 302
