"""What the binding page, the overview and the batch form say (Flask test client, migrated SQLite file):
the history names the grantor and the beneficiary, its first line starts at 新建, an unauthorized amount
says so, long text wraps and folds, a cut stuck detail ends with "…" and keeps the whole text, the
overview's lag reads as a duration, and a batch the role forbids says so. Operator review 2, items 2, 4,
5, 6, 7 and 12."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from models import Delivery, OutboxMessage
from workflows import commands, correlation, idnumbers

from .support import accepted, invite, person
from .test_dashboard_web import app, signed_in  # noqa: F401  (the app fixture)

CSS = Path(__file__).resolve().parents[2] / "web" / "static" / "dashboard.css"


def _history(page: str) -> str:
    return page[page.index('id="history"'):page.index("</ol>", page.index('id="history"'))]


def _stuck_box(page: str) -> str:
    return page[page.index("卡住原因"):page.index("状态图")]


# --- 2, 6. who acted, the first line, the authorized amount ------------------------------------------------

def test_the_history_names_the_grantor_and_the_beneficiary_not_person_ids(app, sqlite_db, family):  # noqa: F811
    """Given a binding the beneficiary verified and accepted and the grantor then unbound
    When a viewer opens it
    Then each person's line says 被共济人 or 共济人 with the masked name, no line shows a person id, the
    verifier is still named as one, and the first line reads 新建 → 已邀请."""
    fam = family(sqlite_db)
    bid = accepted(sqlite_db, fam, now=datetime.now(timezone.utc))
    commands.unbind(sqlite_db, bid, person(fam.grantor), reason="不再需要")
    client, _ = signed_in(app, "viewer")

    history = _history(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True))

    actors = dict(re.findall(r'<li data-event="(\w+)">.*?<span class="actor">([^<]*)</span>', history, re.S))
    beneficiary = f"被共济人 {idnumbers.mask_name(fam.beneficiary_name)}"
    assert actors["accept"] == beneficiary and actors["start_verification"] == beneficiary
    assert actors["unbind"] == f"共济人 {idnumbers.mask_name(fam.grantor_name)}"
    assert actors["verification_passed"] == "核验方 facecheck" and actors["invite"].startswith("共济人 ")
    assert "psn_" not in history and "参保人" not in history
    first = re.search(r'<li data-event="invite"><b>[^<]*</b>([^<]*)', history).group(1)
    assert first.strip() == "新建 → 已邀请"


def test_the_history_shows_the_request_that_made_a_transition(app, sqlite_db, family):  # noqa: F811
    """Given a binding a platform's request (X-Request-Id js-trace-7) unbound, after transitions made
    without a request (commands run here, as at the console)
    When a viewer opens it
    Then the unbind line names the request, and no other line names one."""
    fam = family(sqlite_db)
    bid = accepted(sqlite_db, fam, now=datetime.now(timezone.utc))
    with correlation.bound(correlation.RequestContext("js-trace-7", "key-1")):
        commands.unbind(sqlite_db, bid, person(fam.grantor), reason="不再需要")
    client, _ = signed_in(app, "viewer")

    history = _history(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True))

    named = re.findall(r'<li data-event="(\w+)">.*?</li>', history, re.S)
    lines = dict(zip(named, re.split(r'<li data-event="\w+">', history)[1:]))
    assert '请求编号 <code class="request-id">js-trace-7</code>' in lines["unbind"]
    assert [e for e, line in lines.items() if "request-id" in line] == ["unbind"]


def test_the_authorized_amount_of_a_binding_not_authorized_says_so(app, sqlite_db, family):  # noqa: F811
    """Given an invited binding, When a viewer opens it, Then the authorized amount reads 未授权, not blank."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    assert re.search(r'<td id="authorized-amount"><span class="muted">未授权</span></td>', page)


# --- 4. a long reason wraps and folds ----------------------------------------------------------------------

def test_a_long_reason_without_spaces_is_folded_in_a_wrapping_box(app, sqlite_db, family):  # noqa: F811
    """Given a binding unbound with a 5,000-character reason without a space (a platform's)
    When a viewer opens it
    Then the history shows the reason's beginning with "…" and the whole stored text under a fold, and the
    stylesheet wraps history lines and long text anywhere (so it cannot run across the page)."""
    fam = family(sqlite_db)
    bid = accepted(sqlite_db, fam, now=datetime.now(timezone.utc))
    commands.unbind(sqlite_db, bid, person(fam.grantor), reason="理" * 5000)
    client, _ = signed_in(app, "viewer")

    history = _history(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True))

    fold = re.search(r'<details class="long-text"><summary>(理+…)</summary><div>(理+)</div></details>', history)
    assert fold and len(fold.group(1)) <= 241 and len(fold.group(2)) >= 1000
    rule = re.search(r"^ol\.timeline li,\.long-text,\.detail-text\{([^}]*)\}", CSS.read_text(), re.M).group(1)
    assert "overflow-wrap:anywhere" in rule and "min-width:0" in rule


def test_an_overdue_delivery_says_in_the_readers_words_and_time_that_its_try_was_not_made(
        app, sqlite_db, family):  # noqa: F811
    """Given a delivery tried once (HTTP 503) whose next try, due an hour ago, nothing made
    When a viewer opens the binding
    Then it is stuck delivery_failing, and the page says in Chinese when the try was due (Beijing time, not
    UTC) and that it was not made, then the last answer."""
    now = datetime.now(timezone.utc)
    bid = invite(sqlite_db, family(sqlite_db), now=now)["id"]
    due = now - timedelta(hours=1)
    with sqlite_db.begin() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid))
        s.add(Delivery(outbox_id=outbox_id, platform_id="jiangsu", event_id="evt_late", topic="binding.invited",
                       binding_id=bid, binding_version=1, status="failing", attempts=1, last_status_code=503,
                       next_attempt_at=due))
    client, _ = signed_in(app, "viewer")
    box = _stuck_box(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True))
    failing = box[box.index('data-reason="delivery_failing"'):].split("</li>")[0]
    beijing = (due + timedelta(hours=8)).strftime("%H:%M")
    assert "下次尝试应在" in failing and "未进行" in failing and beijing in failing and "HTTP 503" in failing
    assert "UTC" not in failing and "not made" not in failing


# --- 5. a cut stuck detail ---------------------------------------------------------------------------------

def test_a_cut_stuck_detail_ends_with_an_ellipsis_and_keeps_the_whole_text(app, sqlite_db, family):  # noqa: F811
    """Given a dead delivery whose last answer is a 600-character exception text, and a worker error as long
    When a viewer opens the binding
    Then each stuck detail ends at a word with "…"; the delivery's whole answer is in its title and under
    a fold, and the worker error's stored text is in its title."""
    bid = invite(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))["id"]
    error = "ConnectError: " + " ".join(f"word{i:03d}" for i in range(70))
    with sqlite_db.begin() as s:
        outbox = s.scalar(sa.select(OutboxMessage).where(OutboxMessage.binding_id == bid).limit(1))
        outbox.last_error, outbox.attempts = "Traceback: " + " ".join(f"frame{i:03d}" for i in range(70)), 3
        s.add(Delivery(outbox_id=outbox.id, platform_id="jiangsu", event_id="evt_dead", topic="binding.invited",
                       binding_id=bid, binding_version=1, status="dead", attempts=8, last_error=error,
                       dead_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    client, _ = signed_in(app, "viewer")

    box = _stuck_box(client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True))

    dead = box[box.index('data-reason="delivery_dead"'):].split("</li>")[0]
    summary = re.search(r'<summary title="([^"]*)">([^<]*)</summary><div>([^<]*)</div>', dead)
    assert summary.group(1) == error == summary.group(3)
    assert re.search(r"word\d{3}…$", summary.group(2)) and len(summary.group(2)) <= 200
    worker = box[box.index('data-reason="worker_error"'):].split("</li>")[0]
    cut = re.search(r'<span class="detail-text cut" title="([^"]*)">([^<]*)</span>', worker)
    assert cut.group(1).startswith("Traceback: frame000") and re.search(r"frame\d{3}…$", cut.group(2))


# --- 7. the overview's lag ---------------------------------------------------------------------------------

def test_the_overviews_lag_reads_as_a_duration(app, monkeypatch):  # noqa: F811
    """Given a platform whose oldest undelivered change is 5,118 seconds old
    When a viewer opens the overview
    Then its lag reads 1 小时 25 分钟 18 秒 (the policies page's wording), not "5118 s"."""
    from workflows import sync
    monkeypatch.setattr(sync, "lag", lambda db, now=None: {
        "jiangsu": {"behind": 2, "dead": 0, "failing": 1, "oldest_age_s": 5118.4}})
    client, _ = signed_in(app, "viewer")
    page = client.get("/dashboard/").get_data(as_text=True)
    row = page[page.index('data-platform="jiangsu"'):].split("</tr>")[0]
    assert '<td class="num lag" data-seconds="5118">1 小时 25 分钟 18 秒</td>' in row and " s</td>" not in row


# --- 12. a batch the role forbids -------------------------------------------------------------------------

def test_a_batch_the_role_forbids_names_the_role(app, sqlite_db, family):  # noqa: F811
    """Given an accepted binding, When an operator opens the batch form filtered by 已接受
    Then it says unbinding needs the admin role and which role the operator has, not that the state does
    not allow it; the state's message stays for a state nothing can act on."""
    accepted(sqlite_db, family(sqlite_db), now=datetime.now(timezone.utc))
    client, _ = signed_in(app, "operator")
    page = client.get("/dashboard/batches/new?state=accepted").get_data(as_text=True)
    refusal = re.search(r'<p class="flash error" id="batch-none" data-why="(\w+)">([^<]*)</p>', page)
    assert refusal.group(1) == "role" and "需要管理员角色" in refusal.group(2) and "经办人员" in refusal.group(2)
    assert "仅适用于" not in refusal.group(2)
