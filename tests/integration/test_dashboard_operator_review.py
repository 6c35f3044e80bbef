"""Defects an operator found reviewing the running dashboard, each pinned by a test (Flask test client,
migrated SQLite file): a replayed delivery's newest tries, batch actions the filtered state allows, an ID
number pasted with separators, words instead of internal codes, policy durations, the layout at 1024 px,
the language kept across sign-out, and the delivery wording on the binding page. One module of ~300 lines
rather than eight small ones: the tests share the review's delivery fixture and read as its record."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import BatchJob, Delivery, DeliveryAttempt, OutboxMessage
from web.dashboard import wording
from workflows import batches, commands, operators, policy_admin, policy_fields, verification

from .support import accepted, invite, person
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)


def _delivery(db, bid: str, *, version: int = 1, status: str = "failing", attempts: int = 0, **kw) -> int:
    with db.begin() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid).limit(1))
        d = Delivery(outbox_id=outbox_id, platform_id="jiangsu", event_id=f"evt_{version}_{status}",
                     topic="binding.invited", binding_id=bid, binding_version=version, status=status,
                     attempts=attempts, **kw)
        s.add(d)
        s.flush()
        return d.id


# --- 1. a replayed delivery's tries -------------------------------------------------------------------

def test_a_replayed_deliverys_newest_tries_are_shown_first(app, sqlite_db, family):  # noqa: F811
    """Given a delivery that failed 6 times, was replayed and then succeeded on the replay's try #1
    When a viewer opens the binding
    Then the tries list starts with that successful try (newest first by time, though its number is 1),
    and says it shows the newest 5 of 7."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    did = _delivery(sqlite_db, bid, status="delivered", attempts=1, last_status_code=200)
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    with sqlite_db.begin() as s:
        s.add_all([DeliveryAttempt(delivery_id=did, attempt_no=n, at=start + timedelta(minutes=n),
                                   status_code=500, error="boom", duration_ms=10 + n) for n in range(1, 7)])
        s.add(DeliveryAttempt(delivery_id=did, attempt_no=1, at=start + timedelta(hours=1), status_code=200,
                              error=None, duration_ms=99))
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    tries = page[page.index('<details class="tries">'):page.index("</details>", page.index('<details class="tries">'))]
    rows = re.findall(r'<tr data-attempt="(\d+)">.*?(\d+) ms', tries)
    assert rows == [("1", "99"), ("6", "16"), ("5", "15"), ("4", "14"), ("3", "13")]
    assert 'data-shown="5" data-total="7"' in tries and "最近 5 次（共 7 次）" in tries


# --- 2. batch actions the filtered state allows -------------------------------------------------------

@pytest.fixture
def admin(app, sqlite_db):  # noqa: F811
    operators.add(sqlite_db, "admin", "correct horse battery", "admin")
    return app


def _offered(client, query: str) -> list[str]:
    return re.findall(r'<option[^>]*value="(\w+)"', client.get(f"/dashboard/batches/new?{query}").get_data(as_text=True))


def test_the_batch_form_offers_only_what_can_succeed_from_the_filtered_state(admin, sqlite_db, family):
    """Given an unbound, an accepted and an overdue invited binding
    When an admin opens the batch form filtered by each state (and the invited one by its stuck reason)
    Then unbound offers nothing (and says why), accepted only unbind, invited only expire, and retry
    only with a stuck reason."""
    gone = family(sqlite_db)
    bid = accepted(sqlite_db, gone, now=datetime.now(timezone.utc))
    commands.unbind(sqlite_db, bid, person(gone.grantor), reason="不再需要")
    accepted(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))
    invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc) - timedelta(days=30))
    client, _ = signed_in(admin, "admin")
    page = client.get("/dashboard/batches/new?state=unbound").get_data(as_text=True)
    assert 'id="batch-none"' in page and 'id="batch-form"' not in page
    assert _offered(client, "state=accepted") == ["unbind"]
    assert _offered(client, "state=invited") == ["expire"]
    assert _offered(client, "state=invited&stuck=timer_overdue") == ["retry", "expire"]


def test_a_batch_action_the_form_did_not_offer_is_refused(admin, sqlite_db, family):
    """Given an accepted binding, When an admin posts a batch `expire` for state=accepted (not offered), and
    an operator a batch `unbind` (an admin's action), Then no job starts; the answers say the state does not
    allow it, and the role does not; and each refusal is in the audit log with its code."""
    from models import AuditEntry
    accepted(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))

    def post(role, action):
        client, _ = signed_in(admin, role)
        token = TOKEN.search(client.get("/dashboard/batches/new?state=accepted").get_data(as_text=True)).group(1)
        return client.post("/dashboard/batches", data={"csrf_token": token, "action": action, "expected": "1",
                                                       "reason": "清理", "confirm": "y", "state": "accepted"},
                           follow_redirects=True).get_data(as_text=True)

    assert "当前状态不允许" in post("admin", "expire")
    assert "当前状态不允许" not in post("operator", "unbind")
    with sqlite_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(BatchJob)) == 0
        audited = s.execute(sa.select(AuditEntry.operator, AuditEntry.action, AuditEntry.outcome)
                            .order_by(AuditEntry.id)).all()
    assert [tuple(a) for a in audited][-2:] == [("admin", "batch_expire", "illegal_transition"),
                                                ("operator", "batch_unbind", "forbidden")]


def test_a_finished_batch_words_its_state_apart_from_its_counts(admin, sqlite_db, family):
    """Given a batch that finished with every binding refused
    When its page is opened
    Then the job reads 已结束 and the counts 已执行 0 and 被拒绝 2, not 已完成 twice."""
    for _ in range(2):
        invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))
    who = operators.authenticate(sqlite_db, "admin", "correct horse battery")
    job_id = batches.start(sqlite_db, who, "expire", {"state": "invited"}, "清理", expected=2)
    with sqlite_db.begin() as s:
        s.execute(sa.update(BatchJob).where(BatchJob.id == job_id).values(state="done", done=0, failed=2))
    client, _ = signed_in(admin, "viewer")
    text = re.sub(r"<[^>]+>|\s+", "", client.get(f"/dashboard/batches/{job_id}").get_data(as_text=True))
    assert "任务：已结束·已执行0·被拒绝（原因见审计日志）2·共2" in text and "已完成" not in text


# --- 3. an ID number pasted with separators -----------------------------------------------------------

def test_the_id_number_field_has_room_for_spaces(app, sqlite_db, family):  # noqa: F811
    """Given the list page, When a viewer looks at the ID-number field and pastes `3201 0219 7001 0110 14`-style
    groups into it (as the browser would keep them, up to its maxlength), Then the field takes the whole
    pasted number and the binding is found."""
    fam = family(sqlite_db)
    bid = invite(sqlite_db, fam, now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/bindings").get_data(as_text=True)
    field = re.search(r'<input[^>]*name="id_number"[^>]*>', page).group(0)
    room = int(re.search(r'maxlength="(\d+)"', field).group(1))
    pasted = " ".join(fam.grantor[i:i + 4] for i in range(0, 18, 4))
    assert len(pasted) == 22 and room >= len(pasted)
    token = TOKEN.search(page).group(1)
    text = client.post("/dashboard/find", data={"csrf_token": token, "id_number": pasted[:room]}).get_data(as_text=True)
    assert bid in text and 'id="lookup-error"' not in text


# --- 4. words instead of internal codes ---------------------------------------------------------------

def _history(page: str) -> str:
    return page[page.index('id="history"'):page.index("</ol>", page.index('id="history"'))]


def test_system_and_verifier_reasons_are_words(app, sqlite_db, family):  # noqa: F811
    """Given a binding whose face check failed (`face_mismatch`), then passed, was accepted and authorized
    twice (¥1,234.56, then the whole balance)
    When a viewer opens it in zh-CN
    Then history and the 人脸核验 table say 人脸与登记照片比对不一致, 授权额度 ¥1,234.56 and 全部余额, no codes."""
    fam = family(sqlite_db)
    now = datetime.now(timezone.utc)
    bid = invite(sqlite_db, fam, now=now)["id"]
    for n, result in enumerate(("failed", "passed")):
        v = verification.start_verification(sqlite_db, bid, person(fam.beneficiary), now=now + timedelta(seconds=n))
        verification.record_verification_result(sqlite_db, verification_id=v["verification_id"], binding_id=bid,
                                                result=result, verifier_id="facecheck",
                                                reason="face_mismatch" if result == "failed" else None)
    commands.accept(sqlite_db, bid, person(fam.beneficiary))
    commands.authorize(sqlite_db, bid, person(fam.grantor), 123456)
    commands.authorize(sqlite_db, bid, person(fam.grantor), None)
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    history = _history(page)
    assert "授权额度 ¥1,234.56" in history and "全部余额" in history and "人脸与登记照片比对不一致" in history
    for code in ("amount_fen", "whole_balance", "face_mismatch"):
        assert code not in page, code


def test_each_known_reason_code_reads_as_words_and_other_text_as_is(app):  # noqa: F811
    """Given the reason codes Gongji writes itself (and a person's own words), When they are worded for a
    zh-CN reader, Then each is a Chinese phrase and the person's words are unchanged."""
    with app.test_request_context():
        worded = {code: wording.reason(code) for code in (
            "guardian_path", "invitation_ttl", "verification_timeout", "liveness_failed", "beneficiary_deceased",
            "grantor_insurance_suspended", "grantor_left_employee_insurance", "relationship_ended",
            "grantor_region 320100→320500; beneficiary_region 320100→650100")}
        assert worded["guardian_path"] == "监护人办理（免人脸核验）" and worded["beneficiary_deceased"] == "被共济人已身故"
        assert worded["grantor_region 320100→320500; beneficiary_region 320100→650100"] == (
            "共济人参保统筹区由 320100 变更为 320500；被共济人参保统筹区由 320100 变更为 650100")
        assert all(not re.search(r"[a-z]_[a-z]", text) for text in worded.values()), worded
        assert wording.reason("不再需要 face_mismatch") == "不再需要 face_mismatch"


def test_the_audit_log_words_policy_changes(app, sqlite_db):  # noqa: F811
    """Given a policy version that stops cross-province bindings and sets the invitation to 90000 s
    When a viewer opens the audit log
    Then it reads 跨省: 不允许 and 邀请有效期: 1 天 1 小时; cross_province=False only under the folded
    fields as stored (the names `gongji policy publish --set` takes)."""
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(
        ["cross_province=false", "invitation_ttl_s=90000"]), effective_from=datetime(2030, 1, 1, tzinfo=timezone.utc),
        who="zhang", reason="通知", now=datetime.now(timezone.utc))
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/audit").get_data(as_text=True)
    assert "跨省: 不允许" in page and "邀请有效期: 1 天 1 小时" in page
    shown = re.sub(r'<details class="as-stored">.*?</details>|data-field="\w+"', "", page, flags=re.S)
    assert "cross_province" not in shown and "=False" not in shown and "<code>cross_province=False</code>" in page


# --- 5. the policies page's durations and lists --------------------------------------------------------

def _policy_row(page: str, region: str, version: int) -> str:
    start = page.index(f'data-region="{region}" data-version="{version}"')
    return page[start:page.index("</tr>", start)]


def test_policy_durations_and_lists_are_worded_in_each_language(app, sqlite_db):  # noqa: F811
    """Given a 乌鲁木齐 version whose invitation lasts 90000 s (others as seeded: 10 min face checks, a 1-day window)
    When a viewer reads the policies in Chinese and then in English
    Then the invitation reads 1 天 1 小时 / 1 day 1 hour (not 1.04167 天), the window 每 1 天最多 … 次 (not
    "/ 24 h"), and relationships are joined with 、 in Chinese and commas in English."""
    policy_admin.publish(sqlite_db, ["650100"], policy_fields.parse_changes(["invitation_ttl_s=90000"]),
                         effective_from=datetime.now(timezone.utc), who="zhang", reason="通知",
                         now=datetime.now(timezone.utc))
    client, _ = signed_in(app, "viewer")
    row = _policy_row(client.get("/dashboard/policies").get_data(as_text=True), "650100", 2)
    assert ">1 天 1 小时<" in row and "1.04167" not in row and "每次 10 分钟，最多" in row
    assert re.search(r"每 1 天最多 \d+ 次", row) and " h<" not in row and "配偶、" in row
    token = TOKEN.search(client.get("/dashboard/").get_data(as_text=True)).group(1)
    client.post("/dashboard/language", data={"csrf_token": token, "lang": "en", "next": "/dashboard/policies"})
    row = _policy_row(client.get("/dashboard/policies").get_data(as_text=True), "650100", 2)
    assert ">1 day 1 hour<" in row and "10 minutes each, at most" in row and re.search(r"at most \d+ per 1 day", row)
    assert "spouse, " in row and "、" not in row


# --- 6. the layout at 1024 px -------------------------------------------------------------------------

def test_tries_span_the_deliveries_table_and_wide_tables_scroll_in_their_box(app, sqlite_db, family):  # noqa: F811
    """Given a failing delivery with a try
    When a viewer opens the binding, the list and the policies (a browser at 1024 px)
    Then the tries sit in a row of their own across the whole deliveries table (not inside the narrow
    last-answer cell), the deliveries box is not sharing the width with another box, and the list and
    policy tables sit in a box that scrolls them (so the page itself never scrolls sideways)."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    did = _delivery(sqlite_db, bid, attempts=1, last_status_code=500, last_error="boom")
    with sqlite_db.begin() as s:
        s.add(DeliveryAttempt(delivery_id=did, attempt_no=1, status_code=500, error="boom", duration_ms=7))
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert re.search(r'<tr class="tries-row"><td colspan="6"><details class="tries">', page)
    last_answer = re.search(r'<td class="wrap last-answer">(.*?)</td>', page, re.S).group(1)
    assert "<details" not in last_answer
    boxes = re.findall(r'<div class="grid">(.*?)\n</div>', page, re.S)
    assert not any('id="deliveries"' in box for box in boxes)
    assert '<section class="box deliveries">' in page and '<div class="scroll"><table id="deliveries">' in page
    assert re.search(r'<div class="scroll"[^>]*><table id="bindings">', client.get("/dashboard/bindings").get_data(as_text=True))
    assert '<div class="scroll"><table id="policies">' in client.get("/dashboard/policies").get_data(as_text=True)
    css = client.get("/static/dashboard.css").get_data(as_text=True)
    assert ".scroll{overflow-x:auto" in css and "td.id{overflow-wrap:anywhere" in css


# --- 7. the language across sign-out -------------------------------------------------------------------

def test_signing_out_keeps_the_chosen_language(app):  # noqa: F811
    """Given a viewer who chose English, When they sign out, Then the sign-in page they land on is in
    English, and the next sign-in too."""
    client, _ = signed_in(app, "viewer")
    token = TOKEN.search(client.get("/dashboard/").get_data(as_text=True)).group(1)
    client.post("/dashboard/language", data={"csrf_token": token, "lang": "en", "next": "/dashboard/"})
    token = TOKEN.search(client.get("/dashboard/").get_data(as_text=True)).group(1)
    page = client.post("/dashboard/sign-out", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert '<html lang="en"' in page and "Sign in" in page and "登录" not in page.split("<main>")[1]
    landing = client.get("/dashboard/")
    assert landing.status_code == 302 and landing.headers["Location"].startswith("/dashboard/login")
    with client.session_transaction("/dashboard/") as kept:  # the session exists under /dashboard only
        assert set(kept) <= {"lang", "_flashes", "csrf_token"} and kept["lang"] == "en"  # nothing of the operator
    token = TOKEN.search(client.get("/dashboard/sign-in").get_data(as_text=True)).group(1)
    client.post("/dashboard/sign-in", data={"csrf_token": token, "username": "viewer", "password": "correct horse battery"})
    assert "Overview" in client.get("/dashboard/").get_data(as_text=True)


# --- 8. delivery wording ------------------------------------------------------------------------------

def test_a_failing_delivery_and_the_versions_behind_it_are_worded(app, sqlite_db, family):  # noqa: F811
    """Given version 1 failing to jiangsu (last answer `HTTP 500: {...}`, next try set) and version 2 held
    behind it (pending, no next try)
    When a viewer opens the binding
    Then the answer names HTTP 500 once (last answer and try), the failing one shows its next try, version 2
    says it waits for version 1, and the headers are 版本 and 计时项 (no bare "v", no empty header)."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    error = 'HTTP 500: {"error": "internal"}'
    did = _delivery(sqlite_db, bid, attempts=1, last_status_code=500, last_error=error,
                    next_attempt_at=datetime.now(timezone.utc) + timedelta(minutes=5))
    with sqlite_db.begin() as s:
        s.add(DeliveryAttempt(delivery_id=did, attempt_no=1, status_code=500, error=error, duration_ms=7))
        extra = OutboxMessage(topic="binding.accepted", binding_id=bid, binding_version=2, payload={})
        s.add(extra)
        s.flush()
        s.add(Delivery(outbox_id=extra.id, platform_id="jiangsu", event_id="evt_2", topic="binding.accepted",
                       binding_id=bid, binding_version=2, status="pending", attempts=0, next_attempt_at=None))
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    table = page[page.index('id="deliveries"'):page.index("</table></div>", page.index('id="deliveries"'))]
    assert "HTTP 500 HTTP 500" not in table and "500 HTTP 500" not in table and table.count("HTTP 500:") == 2
    first, second = table.split('<tbody class="delivery">')[1:]
    assert 'class="muted next-try">下次尝试' in first
    assert 'data-waits-for="1"' in second and "须待版本 1 送达后推送" in second and "等待前序版本" in second
    assert "<th>v</th>" not in table and '<th class="num">版本</th>' in table
    assert "<th></th>" not in page and "<th>计时项</th>" in page
