"""The dashboard's inbound webhooks and per-platform deliveries through Flask's test client on a migrated
SQLite file (the embedded default's database): the overview's inbound card and its links, the problem list
and a webhook's page (never a body or a whole ID number), the retry (operator, CSRF, audited; not for a
refusal), the binding page's webhooks, and one platform's dead deliveries with their replay."""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import Delivery, OutboxMessage, ReceivedWebhook
from workflows import platforms, verification, webhooks

from .support import invite, person
from .test_dashboard_web import TOKEN, app, signed_in  # noqa: F401  (the app fixture)

NOW = datetime.now(timezone.utc)
SECRET_NUMBER = "110101199003077774"  # in a webhook's body and in an error text: never on a page whole


def _store(db, platform: str, kind: str, data: dict) -> int:
    body = json.dumps({"type": kind, "data": data}, ensure_ascii=False).encode()
    rid, _ = webhooks.receive(db, platform=platforms.get(db, platform), webhook_id=f"msg_{uuid.uuid4().hex[:12]}",
                              body=body, headers={"webhook-timestamp": str(int(NOW.timestamp()))},
                              event_type=kind)
    return rid


def _gave_up(db, monkeypatch) -> int:
    """A webhook whose every run failed until the last (failed:RuntimeError), its error quoting a number."""
    rid = _store(db, "jiangsu", "person.deceased", {"id_number": SECRET_NUMBER})

    def failing(_db, _row):
        raise RuntimeError(f"store refused {SECRET_NUMBER}")
    monkeypatch.setattr(webhooks, "_apply", failing)
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            webhooks.process(db, rid)
    assert webhooks.process(db, rid) == "failed:RuntimeError"
    monkeypatch.undo()
    return rid


def _refused(db) -> int:
    rid = _store(db, "jiangsu", "person.deceased", {"id_number": SECRET_NUMBER})
    assert webhooks.process(db, rid) == "not_found"
    return rid


def _row(db, rid) -> ReceivedWebhook:
    with db() as s:
        return s.get(ReceivedWebhook, rid)


def test_an_operator_finds_a_gave_up_webhook_from_the_overview_and_retries_it(app, sqlite_db,  # noqa: F811
                                                                              monkeypatch):
    """Given a Jiangsu webhook that gave up after its runs and one refused by a rule,
    When an operator opens the overview, follows Jiangsu's "gave up" count to the list, opens the webhook and
    retries it with a reason,
    Then the card counts each kind per platform with a link to the list so filtered, the list and the page
    show it (its error kept, masked, no body), the retry makes it pending again with an audit entry, and no
    page shows the ID number its body and error carry."""
    gave_up, refused = _gave_up(sqlite_db, monkeypatch), _refused(sqlite_db)
    kept = _row(sqlite_db, gave_up).last_error  # the error it gave up on, kept with the number masked at rest
    assert kept.startswith("RuntimeError: store refused 110") and SECRET_NUMBER not in kept
    client, _ = signed_in(app, "operator")
    overview = client.get("/dashboard/").get_data(as_text=True)
    row = overview[overview.index('<table id="inbound">'):]
    row = row[row.index('<tr data-platform="jiangsu">'):row.index("</tr>", row.index('data-platform="jiangsu"'))]
    assert 'data-kind="failed" data-count="1"' in row and 'data-kind="refused" data-count="1"' in row
    link = re.search(r'href="([^"]*kind=failed[^"]*)"', row).group(1).replace("&amp;", "&")
    assert "platform=jiangsu" in link and "within_s=604800" in link

    listed = client.get(link).get_data(as_text=True)
    assert f'data-webhook="{gave_up}"' in listed and f'data-webhook="{refused}"' not in listed
    page = client.get(f"/dashboard/webhooks/{gave_up}").get_data(as_text=True)
    assert 'data-outcome="failed:RuntimeError"' in page and 'data-action="webhook_retry"' in page
    assert "110***********7774" in page
    answer = client.post(f"/dashboard/webhooks/{gave_up}/retry",
                         data={"csrf_token": TOKEN.search(page).group(1), "reason": "数据已更正"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/dashboard/webhooks/{gave_up}")
    after = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'class="flash ok"' in after and (_row(sqlite_db, gave_up).outcome, _row(sqlite_db, gave_up).attempts) \
        == (None, 0)
    audit = client.get("/dashboard/audit").get_data(as_text=True)
    assert "数据已更正" in audit and "重试入站 Webhook" in audit
    for path in ("/dashboard/", link, f"/dashboard/webhooks/{gave_up}", f"/dashboard/webhooks/{refused}",
                 "/dashboard/webhooks", "/dashboard/audit"):
        assert SECRET_NUMBER not in client.get(path).get_data(as_text=True), path


def test_a_refused_webhook_says_it_is_final_and_its_retry_is_refused(app, sqlite_db):  # noqa: F811
    """Given a webhook refused by a rule, When an operator opens it and forces a retry POST, Then the page offers
    no retry and says the outcome is final, and the forced POST is refused (its reason flashed), audited."""
    rid = _refused(sqlite_db)
    client, _ = signed_in(app, "operator")
    page = client.get(f"/dashboard/webhooks/{rid}").get_data(as_text=True)
    assert 'id="retry-final"' in page and 'data-action="webhook_retry"' not in page
    answer = client.post(f"/dashboard/webhooks/{rid}/retry",
                         data={"csrf_token": TOKEN.search(page).group(1), "reason": "再试一次"},
                         follow_redirects=True)
    assert 'data-code="webhook_final"' in answer.get_data(as_text=True)
    assert _row(sqlite_db, rid).outcome == "not_found"


def test_roles_csrf_and_bad_addresses(app, sqlite_db, monkeypatch):  # noqa: F811
    """Given a gave-up webhook, When a viewer POSTs its retry or a replay (with a valid token), an operator
    POSTs without the token, and pages are asked with a bad filter, cursor or id, Then 403, 400 and 404
    answers, and the webhook is unchanged."""
    rid = _gave_up(sqlite_db, monkeypatch)
    viewer, _ = signed_in(app, "viewer")
    token = TOKEN.search(viewer.get("/dashboard/webhooks").get_data(as_text=True)).group(1)
    assert viewer.post(f"/dashboard/webhooks/{rid}/retry", data={"csrf_token": token, "reason": "x"}).status_code == 403
    assert viewer.post("/dashboard/deliveries/jiangsu/replay", data={"csrf_token": token, "reason": "x"}
                       ).status_code == 403
    operator, _ = signed_in(app, "operator")
    assert operator.post(f"/dashboard/webhooks/{rid}/retry", data={"reason": "x"}).status_code == 400
    for path, code in (("/dashboard/webhooks?kind=nonsense", 400), ("/dashboard/webhooks?after=bad", 400),
                       ("/dashboard/webhooks/999999", 404), ("/dashboard/deliveries?platform=nobody", 404),
                       ("/dashboard/deliveries?platform=jiangsu&after=bad", 400)):
        assert operator.get(path).status_code == code, path
    assert _row(sqlite_db, rid).outcome == "failed:RuntimeError"


def test_the_binding_page_lists_the_webhooks_that_named_it(app, sqlite_db, family):  # noqa: F811
    """Given a binding whose face verification passed by the verifier's webhook, When a viewer opens the
    binding, Then its inbound webhooks box lists that webhook with its outcome, linked to its page."""
    at = datetime.now(timezone.utc) - timedelta(minutes=5)  # not NOW (import time): `process` reads the clock,
    # and the attempt must still be open then, however long the tests before this one took
    fam = family(sqlite_db, now=at)
    bid = invite(sqlite_db, fam, now=at)["id"]
    vid = verification.start_verification(sqlite_db, bid, person(fam.beneficiary), now=at)["verification_id"]
    rid = _store(sqlite_db, "facecheck", "verification.completed",
                 {"verification_id": vid, "binding_id": bid, "result": "passed"})
    assert webhooks.process(sqlite_db, rid) == "passed"
    client, _ = signed_in(app, "viewer")
    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)
    box = page[page.index('<table id="binding-webhooks">'):page.index("</table>", page.index("binding-webhooks"))]
    assert f'data-webhook="{rid}"' in box and "passed" in box and f"/dashboard/webhooks/{rid}" in box


def test_one_platforms_dead_deliveries_are_listed_and_replayed_alone(app, sqlite_db, family):  # noqa: F811
    """Given a binding's version 1 dead to Jiangsu and to the national platform,
    When an operator opens the deliveries page, Jiangsu's dead list, and replays Jiangsu's with a reason,
    Then the counts per platform and status show both, the list shows Jiangsu's only with its binding link,
    and after the replay Jiangsu's is pending while the national platform's is still dead."""
    bid = invite(sqlite_db, family(sqlite_db, now=NOW), now=NOW)["id"]
    ids = {}
    with sqlite_db.begin() as s:
        outbox_id = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid))
        for pid in ("jiangsu", "national"):
            d = Delivery(outbox_id=outbox_id, platform_id=pid, event_id=f"evt_{pid}", topic="binding.invited",
                         binding_id=bid, binding_version=1, status="dead", attempts=16, last_status_code=503,
                         last_error="HTTP 503", dead_at=NOW)
            s.add(d)
            s.flush()
            ids[pid] = d.id
    client, _ = signed_in(app, "operator")
    counts = client.get("/dashboard/deliveries").get_data(as_text=True)
    for pid in ("jiangsu", "national"):
        cell = counts[counts.index(f'<tr data-platform="{pid}"'):]
        assert 'data-status="dead" data-count="1"' in cell[:cell.index("</tr>")]
    page = client.get("/dashboard/deliveries?platform=jiangsu").get_data(as_text=True)
    assert f'data-delivery="{ids["jiangsu"]}"' in page and f'data-delivery="{ids["national"]}"' not in page
    assert f"/dashboard/bindings/{bid}" in page and 'data-action="replay-platform"' in page
    answer = client.post("/dashboard/deliveries/jiangsu/replay",
                         data={"csrf_token": TOKEN.search(page).group(1), "reason": "江苏已恢复"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/dashboard/deliveries?platform=jiangsu")
    done = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'class="flash ok"' in done and "全部立即发送" in done and "其余" not in done  # nothing waits behind it
    with sqlite_db() as s:
        assert {d.platform_id: d.status for d in s.scalars(sa.select(Delivery))} == {"jiangsu": "pending",
                                                                                   "national": "dead"}


def test_a_sign_in_link_naming_a_retry_or_a_replay_lands_on_its_page(app):  # noqa: F811
    """Given sign-in links whose `next` is a webhook's retry or a platform's replay (POST-only actions),
    When an operator signs in, Then they land on that webhook's page and that platform's deliveries (no 405)."""
    _, answer = signed_in(app, "operator", next_="?next=/dashboard/webhooks/7/retry")
    assert answer.headers["Location"] == "/dashboard/webhooks/7"
    _, answer = signed_in(app, "operator", next_="?next=/dashboard/deliveries/jiangsu/12/replay")
    assert answer.headers["Location"] == "/dashboard/deliveries?platform=jiangsu"


def test_a_webhook_error_says_whose_words_it_is_and_a_refusal_flash_keeps_english_out_of_chinese(
        app, sqlite_db, monkeypatch):  # noqa: F811
    """Given a webhook refused by a rule and one that gave up on a failure,
    When an operator reads their pages in Chinese, then forces a retry of the refusal, then does it again in
    English,
    Then the refusal's error cell gives the words the platform was told (without repeating the code, which
    the outcome beside it translates) and the failure's is labelled as a technical detail; the refusal's
    flash names its code with no English detail on hover in Chinese, and with it in English."""
    refused, gave_up = _refused(sqlite_db), _gave_up(sqlite_db, monkeypatch)
    client, _ = signed_in(app, "operator")
    page = client.get(f"/dashboard/webhooks/{refused}").get_data(as_text=True)
    cell = page[page.index('id="last-error"'):page.index("</td>", page.index('id="last-error"'))]
    assert "告知平台的原文：" in cell and "not_found:" not in cell and 'lang="en"' in cell
    failed = client.get(f"/dashboard/webhooks/{gave_up}").get_data(as_text=True)
    cell = failed[failed.index('id="last-error"'):failed.index("</td>", failed.index('id="last-error"'))]
    assert "技术详情：" in cell and "RuntimeError: store refused 110" in cell

    def forced_retry() -> str:
        return client.post(f"/dashboard/webhooks/{refused}/retry",
                           data={"csrf_token": TOKEN.search(page).group(1), "reason": "再试一次"},
                           follow_redirects=True).get_data(as_text=True)
    flash = re.search(r'<div class="flash error"[^>]*data-code="webhook_final">.*?</div>', forced_retry()).group(0)
    assert "title=" not in flash and ">webhook_final</span>" in flash
    client.post("/dashboard/language", data={"csrf_token": TOKEN.search(page).group(1), "lang": "en"})
    flash = re.search(r'<div class="flash error"[^>]*data-code="webhook_final">.*?</div>', forced_retry()).group(0)
    assert 'title="' in flash
