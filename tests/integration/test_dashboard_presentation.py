"""What the dashboard shows and offers (Flask test client, migrated SQLite file): only actions the state
machine and the role allow, translated words instead of codes, wrapping free text, error pages, framing
headers, each timer once, the person look-up, the batch form by role, the binding's delivery tries."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage, VerificationAttempt
from workflows import commands, operators, verification

from .support import T0, accepted, invite, person
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)


@pytest.fixture
def admin(app, sqlite_db):  # noqa: F811
    operators.add(sqlite_db, "admin", "correct horse battery", "admin")
    return app


def _actions(page: str) -> list[str]:
    return re.findall(r'data-action="(\w+)"', page)


# --- 1. actions only where the state machine has the event -------------------------------------------

def test_an_accepted_binding_offers_unbind_but_not_expire(admin, sqlite_db, family):
    """Given an accepted binding, When an admin and an operator open it, Then the admin is offered unbind
    (its event leaves `accepted`) and nobody is offered expire (it does not); the operator sees no action."""
    bid = accepted(sqlite_db, family(sqlite_db))
    client, _ = signed_in(admin, "admin")
    assert _actions(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)) == ["unbind"]
    client, _ = signed_in(admin, "operator")
    assert _actions(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)) == []


def test_an_invited_binding_offers_expire_but_not_unbind(admin, sqlite_db, family):
    """Given an invited binding, When an admin opens it, Then expire is offered and unbind is not."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(admin, "admin")
    assert _actions(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)) == ["expire"]


# --- 2. long free text wraps ---------------------------------------------------------------------------

def test_a_provider_error_and_a_last_answer_wrap_instead_of_sitting_in_a_tag(app, sqlite_db, family):  # noqa: F811
    """Given a verification attempt whose provider request failed with a long error, When a viewer opens the
    binding, Then the error is in a wrapping element, never in a (nowrap) .tag, and the stylesheet wraps it."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    verification.start_verification(sqlite_db, bid, person(fam.beneficiary))
    long_error = "ConnectError: " + "x" * 300
    with sqlite_db.begin() as s:
        s.execute(sa.update(VerificationAttempt).where(VerificationAttempt.binding_id == bid)
                  .values(provider_status="error", provider_error=long_error))
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert long_error in page
    assert not re.search(r'class="tag[^"]*">[^<]*' + long_error[:20], page)
    assert re.search(r'class="error-text[^"]*">' + long_error[:20], page)
    css = client.get("/static/dashboard.css").get_data(as_text=True)
    assert ".error-text" in css and "overflow-wrap:anywhere" in css and ".grid>*{min-width:0}" in css


# --- 3. the interface in Chinese, without raw codes -----------------------------------------------------

def test_signing_in_is_asked_for_in_chinese(app):  # noqa: F811
    """Given no session, When a dashboard page is asked for, Then the sign-in page says so in Chinese."""
    client = app.test_client()
    page = client.get("/dashboard/bindings", follow_redirects=True).get_data(as_text=True)
    assert "Please log in" not in page and "请先登录" in page


def test_a_refused_action_is_explained_in_chinese(admin, sqlite_db, family):
    """Given an invited binding, When an admin posts unbind to it (not possible in that state), Then the
    flash names the reason in Chinese as 操作未执行 (not 已拒绝, the state), with the code as secondary text."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(admin, "admin")
    token = TOKEN.search(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)).group(1)
    page = client.post(f"/dashboard/bindings/{bid}/unbind", data={"csrf_token": token, "reason": "测试", "seen": "1",
                                                              "confirm": "y"},
                       follow_redirects=True).get_data(as_text=True)
    flash = re.search(r'<div class="flash error"[^>]*>(.*?)</div>', page, re.S).group(1)
    assert "操作未执行" in flash and "当前状态不允许" in flash and "illegal_transition" in flash
    assert "已拒绝" not in flash and "is not possible in state" not in flash.split("title=")[0]


def test_the_binding_page_names_codes_in_chinese(app, sqlite_db, family):  # noqa: F811
    """Given an invited binding with an open verification attempt, When a viewer opens it, Then the method,
    channel, timers and attempt status are words, not codes."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    verification.start_verification(sqlite_db, bid, person(fam.beneficiary))
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert "face · app" not in page and "人脸核验 · App" in page
    assert ">verification_timeout<" not in page and ">expire<" not in page and ">invitation_ttl<" not in page
    assert "邀请有效期" in page and "第 1 次人脸核验" in page
    assert ">pending<" not in page and "等待结果" in page


def test_the_stuck_box_labels_its_fields(app, sqlite_db, family):  # noqa: F811
    """Given a binding whose timer is overdue (invited long ago), When a viewer opens it, Then the stuck
    box says 起始/详情 rather than since:/detail:."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc) - timedelta(days=30))["id"]
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    box = page[page.index("卡住原因"):page.index("状态图")]
    assert "since:" not in box and "detail:" not in box and "起始：" in box and "详情：过期" in box


def test_the_stuck_box_words_its_details_and_the_provider_status_in_chinese(app, sqlite_db, family):  # noqa: F811
    """Given a binding whose face-verification session request the provider refused (HTTP 503)
    When a viewer opens it in zh-CN
    Then the stuck box says 第 1 次核验，已请求 1 次 and the provider's answer, and the attempt row's provider
    status reads 会话请求失败, with no English wording of Gongji's own."""
    from workflows import face_sessions, platforms
    platforms.set_webhook_url(sqlite_db, "facecheck", "http://127.0.0.1:9/hook")
    fam = family(sqlite_db)
    now = datetime.now(timezone.utc)
    bid = invite(sqlite_db, fam, now=now)["id"]
    vid = verification.start_verification(sqlite_db, bid, person(fam.beneficiary), now=now)["verification_id"]
    assert face_sessions.session_request(sqlite_db, vid, callback_base="http://gongji.test", now=now) is not None
    assert face_sessions.session_failed(sqlite_db, vid, "HTTP 503 from the provider") is True
    client, _ = signed_in(app, "viewer")

    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)

    box = page[page.index("卡住原因"):page.index("状态图")]
    item = box[box.index('data-reason="verification_request_failed"'):]
    assert "第 1 次核验，已请求 1 次：HTTP 503 from the provider" in item, item[:400]
    assert "attempt 1" not in item and "requests:" not in item
    assert 'data-provider-status="error">会话请求失败</span>' in page


def test_an_attempt_no_provider_serves_says_so_in_chinese(app, sqlite_db, family):  # noqa: F811
    """Given a binding whose face verification was started while no face-verification provider serves its
    region, When a viewer opens it in zh-CN, Then the stuck box and the attempt row both say so in Chinese
    (the API keeps the English text: `provider_error` is free text for integrators)."""
    from workflows import face_sessions, platforms
    platforms.set_webhook_url(sqlite_db, "facecheck", None)
    fam = family(sqlite_db)
    now = datetime.now(timezone.utc)
    bid = invite(sqlite_db, fam, now=now)["id"]
    vid = verification.start_verification(sqlite_db, bid, person(fam.beneficiary), now=now)["verification_id"]
    assert face_sessions.session_request(sqlite_db, vid, callback_base="http://gongji.test", now=now) is None
    client, _ = signed_in(app, "viewer")

    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)

    box = page[page.index("卡住原因"):page.index("状态图")]
    assert "第 1 次核验，已请求 0 次：本地区没有人脸核验服务商" in box, box[:600]
    assert page.count("本地区没有人脸核验服务商") == 2 and face_sessions.NO_PROVIDER not in page


def test_a_bad_id_number_is_named_in_chinese(app):  # noqa: F811
    """Given a viewer, When they look up a malformed ID number, Then the error is a sentence, not a code."""
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    page = client.post("/dashboard/find", data={"csrf_token": token, "id_number": "320102198001011234"})
    text = page.get_data(as_text=True)
    assert ">invalid_id_number<" not in text and "不是有效的居民身份证号码" in text


@pytest.mark.parametrize("path, status", [("/dashboard/bindings/bnd_nope", 404), ("/dashboard/no-such-page", 404),
                                          ("/dashboard/bindings?state=no_such_state", 400),
                                          ("/dashboard/batches/new?state=invited", 403)])
def test_dashboard_errors_are_translated_pages_with_navigation(app, path, status):  # noqa: F811
    """Given a viewer, When a dashboard URL fails, Then the answer is a Chinese HTML page with the navigation."""
    client, _ = signed_in(app, "viewer")
    answer = client.get(path)
    text = answer.get_data(as_text=True)
    assert answer.status_code == status and answer.mimetype == "text/html"
    assert f'data-status="{status}"' in text and "概览" in text and "Not Found" not in text
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_api_and_webhook_errors_stay_problem_json(app):  # noqa: F811
    """Given the dashboard's error pages, When the API or the webhooks answer an error, Then problem+json."""
    client = app.test_client()
    for path, status in (("/api/v1/no-such-thing", 404), ("/webhooks/nobody", None)):
        answer = client.get(path)
        assert answer.mimetype == "application/problem+json", path
        if status:
            assert answer.status_code == status and answer.get_json()["code"] == "not_found"
    assert client.get("/no-such-root").mimetype == "application/problem+json"


def test_sign_in_rate_limit_is_a_translated_page(app):  # noqa: F811
    """Given a client that keeps failing to sign in, When the limit is reached, Then a Chinese 429 page."""
    client = app.test_client()
    token = TOKEN.search(client.get("/dashboard/sign-in").get_data(as_text=True)).group(1)
    for _ in range(11):
        answer = client.post("/dashboard/sign-in", data={"csrf_token": token, "username": "viewer", "password": "no"})
    assert answer.status_code == 429 and 'data-status="429"' in answer.get_data(as_text=True)


# --- 9. framing ---------------------------------------------------------------------------------------

def test_dashboard_pages_refuse_to_be_framed(app):  # noqa: F811
    """Given any dashboard page, When it is served, Then it forbids framing; the API is left as it was."""
    client, _ = signed_in(app, "viewer")
    for path in ("/dashboard/", "/dashboard/sign-in", "/dashboard/bindings"):
        headers = client.get(path).headers
        assert headers["X-Frame-Options"] == "DENY" and headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert "X-Frame-Options" not in client.get("/api/v1/regions/320100").headers


# --- 8. the batch form by role ------------------------------------------------------------------------

def test_the_batch_form_offers_only_what_can_succeed_on_the_states_matched_and_the_role_may_run(
        admin, sqlite_db, family):
    """Given an overdue invitation (stuck: timer_overdue) and an accepted binding
    When an operator and an admin open the batch form for the stuck reason (no state filtered), then for
    the state accepted
    Then the stuck filter offers both retry and expire, never unbind (the invitation it matches cannot be
    unbound, though no state was filtered); accepted offers the admin unbind alone, and the operator nothing,
    with the role unbind needs named."""
    invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc) - timedelta(days=30))
    accepted(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))
    for who in ("operator", "admin"):
        client, _ = signed_in(admin, who)
        page = client.get("/dashboard/batches/new?stuck=timer_overdue").get_data(as_text=True)
        assert re.findall(r'<option[^>]*value="(\w+)"', page) == ["retry", "expire"], who
        assert ">stuck=timer_overdue<" not in page and re.search(r'data-filter="stuck">卡住原因：', page)
        page = client.get("/dashboard/batches/new?state=accepted").get_data(as_text=True)
        assert re.findall(r'<option[^>]*value="(\w+)"', page) == (["unbind"] if who == "admin" else []), who
        assert ('data-why="role"' in page) == (who == "operator"), who


# --- 6. each deadline once ----------------------------------------------------------------------------

def test_each_deadline_is_listed_once(app, sqlite_db, family):  # noqa: F811
    """Given an invited binding (deadline: its expiry), and one with an open verification attempt (deadline:
    the attempt's timeout), When a viewer opens them, Then each deadline shows once, with its specific kind."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    kinds = lambda: re.findall(r'data-event="(\w+)" data-kind="(\w+)"', client.get(f"/dashboard/bindings/{bid}")
                               .get_data(as_text=True))
    assert kinds() == [("expire", "invitation_ttl")]
    verification.start_verification(sqlite_db, bid, person(fam.beneficiary))
    assert kinds() == [("verification_timeout", "attempt"), ("expire", "invitation_ttl")]


# --- 7. the person look-up ----------------------------------------------------------------------------

def test_an_id_number_pasted_with_spaces_is_found(app, sqlite_db, family):  # noqa: F811
    """Given a binding, When a viewer looks up the grantor's ID number pasted with spaces and a tab, Then
    the binding is found."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    n = fam.grantor
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    page = client.post("/dashboard/find", data={"csrf_token": token, "id_number": f"  {n[:6]} {n[6:14]}\t{n[14:]} "})
    text = page.get_data(as_text=True)
    assert bid in text and 'id="lookup-error"' not in text


def test_a_persons_bindings_are_all_on_one_page(app, sqlite_db, family, monkeypatch):  # noqa: F811
    """Given a grantor with two bindings and pages of one, When a viewer looks the grantor up, Then both
    bindings are listed and no next-page link (which would lose the person) is offered."""
    from workflows import finder
    fam = family(sqlite_db)
    first = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    other = family(sqlite_db, grantor=(fam.grantor, fam.grantor_name))
    second = invite(sqlite_db, other, now=datetime.now(timezone.utc), relationship="child")["id"]
    monkeypatch.setattr(finder, "MAX_LIMIT", 1)
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(client.get("/dashboard/bindings").get_data(as_text=True)).group(1)
    text = client.post("/dashboard/find", data={"csrf_token": token, "id_number": fam.grantor}).get_data(as_text=True)
    assert first in text and second in text and 'id="next-page"' not in text


# --- 5. policy times in Asia/Shanghai -----------------------------------------------------------------

def test_the_audit_log_shows_policy_times_in_shanghai(app, sqlite_db):  # noqa: F811
    """Given a policy version published to take effect 2030-01-01 00:00 UTC, When a viewer opens the audit
    log, Then it shows 2030-01-01 08:00:00 (Asia/Shanghai), not the UTC ISO string."""
    from workflows import policy_admin, policy_fields
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["cross_province=true"]),
                         effective_from=at, who="zhang", reason="通知", now=datetime.now(timezone.utc))
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/audit").get_data(as_text=True)
    assert "2030-01-01 08:00:00" in page and "2030-01-01T00:00" not in page
    assert ">ok<" not in page and "已完成" in page


# --- 4. wording -------------------------------------------------------------------------------------

def test_the_parties_are_named_as_the_official_guides_name_them(app, sqlite_db, family):  # noqa: F811
    """Given a binding, When a viewer opens it, the list and the policies, Then the parties are 共济人 and
    被共济人 (never 授权人, 被授权人, 受益人), and the overview's region column says 办理中或生效中."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    for path in (f"/dashboard/bindings/{bid}", "/dashboard/bindings", "/dashboard/policies"):
        page = client.get(path).get_data(as_text=True)
        assert "共济人" in page and not re.search("授权人|受益人", page), path
    overview = client.get("/dashboard/").get_data(as_text=True)
    header = re.search(r'<table id="regions"><tr>(.*?)</tr>', overview).group(1)
    assert "办理中或生效中" in header and "生效中</th>" not in header.replace("办理中或生效中", "")


# --- 10. a delivery's tries ---------------------------------------------------------------------------

def _failing_delivery_page(app, db, family, *, attempts: int, tries: list[dict]):  # noqa: F811
    """An invitation with a failing Jiangsu delivery (`attempts` since its last replay, last answer 503) and
    these stored tries; the binding's page as a viewer sees it, and its tries fold."""
    bid = invite(db, family(db), now=datetime.now(timezone.utc))["id"]
    with db.begin() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid))
        d = Delivery(outbox_id=outbox_id, platform_id="jiangsu", event_id="evt_1", topic="binding.invited",
                     binding_id=bid, binding_version=1, status="failing", attempts=attempts, last_status_code=503)
        s.add(d)
        s.flush()
        s.add_all([DeliveryAttempt(delivery_id=d.id, **t) for t in tries])
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    start = page.index('<details class="tries">')
    return page, page[start:page.index("</details>", start)]


def test_a_deliverys_tries_are_shown(app, sqlite_db, family):  # noqa: F811
    """Given a failing delivery with two tries, When a viewer opens the binding, Then each try shows its
    number, status code or error and duration, collapsed under the delivery, and the status is a word."""
    page, tries = _failing_delivery_page(app, sqlite_db, family, attempts=2, tries=[
        dict(attempt_no=1, status_code=None, error="connect timeout", duration_ms=5000),
        dict(attempt_no=2, status_code=503, error=None, duration_ms=12)])
    assert 'data-attempt="2"' in tries and "HTTP 503" in tries and "12 ms" in tries
    assert 'data-attempt="1"' in tries and "connect timeout" in tries and "5000 ms" in tries
    assert ">failing<" not in page and "失败中" in page


def test_a_replayed_deliverys_tries_are_numbered_in_the_order_they_happened(app, sqlite_db, family):  # noqa: F811
    """Given a delivery that was tried twice, went dead, was replayed and tried once more (its stored try
    numbers 1, 2, 1: a replay counts from 1 again)
    When a viewer opens the binding
    Then the tries read #3, #2, #1, newest first, and the delivery's try count says 1, of 3 in all."""
    t0 = datetime.now(timezone.utc) - timedelta(hours=2)
    page, tries = _failing_delivery_page(app, sqlite_db, family, attempts=1, tries=[
        dict(attempt_no=n, at=t0 + timedelta(minutes=m), status_code=503, error=None, duration_ms=m + 1)
        for n, m in ((1, 0), (2, 1), (1, 60))])
    assert re.findall(r'<td class="num">#(\d+)</td>', tries) == ["3", "2", "1"]
    assert 'data-tries-total="3"' in page and "共 3 次：曾重推" in page


# --- 11. the state diagram's loop labels --------------------------------------------------------------

def test_no_loop_label_of_the_diagram_covers_a_box():
    """Given the diagram with the Chinese names and a long 'relocate' label, When it is drawn, Then no
    self-loop label's text covers any state's box (it used to cover 核验失败 and 已拒绝)."""
    from xml.etree import ElementTree as ET

    from workflows import diagram
    names = {"invited": "已邀请", "face_verified": "已核验身份", "accepted": "已接受", "authorized": "已授权",
             "declined": "已拒绝", "verification_failed": "核验失败", "rejected": "已驳回"}
    svg = ET.fromstring(diagram.svg(labels=names, event_labels={"relocate": "迁移（人员变更统筹区）"}))
    ns = "{http://www.w3.org/2000/svg}"
    boxes = [tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
             for r in svg.iter(f"{ns}rect") if r.get("class") == "box"]
    spans = [(float(t.get("x")), float(t.get("y")), t.text) for text in svg.iter(f"{ns}text")
             if text.get("class", "").startswith("edge-label") for t in text.iter(f"{ns}tspan")]
    assert any("迁移" in s for _, _, s in spans)
    for x, baseline, s in spans:
        w = diagram._width(s, diagram.EFONT)
        left, right, top, bottom = x - w / 2, x + w / 2, baseline - diagram.EFONT, baseline + 2
        for bx, by, bw, bh in boxes:
            assert not (left < bx + bw and bx < right and top < by + bh and by < bottom), (s, (bx, by))


def test_regions_are_named_and_times_said_to_be_beijing_time(app, sqlite_db, family):  # noqa: F811
    """Given a binding between Nanjing and Suzhou, When a viewer opens the list and the binding, Then each
    region shows its code with its name, and every page says its times are Beijing time."""
    bid = invite(sqlite_db, family(sqlite_db, beneficiary_region="320500"), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    listed = client.get("/dashboard/bindings").get_data(as_text=True)
    assert "320100 南京市 → 320500 苏州市" in listed
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert "320100 南京市 → 320500 苏州市" in page and page.count("320500 苏州市") >= 2
    for text in (listed, page):
        assert '<footer class="muted" id="time-zone">页面时间均为北京时间（UTC+8）。</footer>' in text


def test_an_operator_is_told_which_action_needs_another_role(admin, sqlite_db, family):
    """Given an accepted binding (unbind is possible, and needs the admin role), When an operator, an admin
    and a viewer open it, Then the operator is told unbind needs the admin role instead of seeing no action
    and no reason; the admin, who has the action, and the viewer, who acts on nothing, are told nothing."""
    bid = accepted(sqlite_db, family(sqlite_db))
    pages = {}
    for role in ("operator", "admin", "viewer"):
        client, _ = signed_in(admin, role)
        pages[role] = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert re.search(r'<p class="muted" id="actions-withheld">解绑需要管理员角色。</p>', pages["operator"])
    assert 'id="actions-withheld"' not in pages["admin"] and 'id="actions-withheld"' not in pages["viewer"]
