"""A platform's traffic on the dashboard, in real headless Chromium against the production shape (gunicorn,
a dramatiq worker, the scheduler, PostgreSQL; the fixture's short retry schedule): an operator finds a
webhook that gave up from the overview and retries it, then replays Jiangsu's dead delivery without touching
the national platform's.

The webhook's give-up is recorded by the test: a `binding.unbind_requested` whose binding id holds a NUL
character once failed in PostgreSQL on every run, and is now refused at its first (validation_failed, the
same on both backends: workflows/characters.py); 25 failed runs would take the worker's backoff many
minutes anyway. So once the worker has run it, the test records the outcome of a webhook that gave up
(`failed:DataError`, 25 runs), and after the operator's retry the worker runs it again for real. The dead
deliveries are real: both receivers are down while a binding is invited, until the schedule is spent."""
from __future__ import annotations

import subprocess
import uuid

import pytest
import sqlalchemy as sa

from .support import gongji_bin, poll, post_webhook
from .test_dashboard import browser, page  # noqa: F401  (the same headless Chromium fixtures)

OPERATOR = ("traffic-ops", "traffic-ops-password")



@pytest.fixture
def engine(production):
    e = sa.create_engine(production.database_url, poolclass=sa.pool.NullPool)
    yield e
    e.dispose()


def _operator(production) -> None:
    env = {**production.env, "GONGJI_OPERATOR_PASSWORD": OPERATOR[1]}
    done = subprocess.run([gongji_bin(), "operator", "add", OPERATOR[0], "--role", "operator"], env=env,
                          cwd=production.workdir, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or "exists" in done.stderr + done.stdout, done.stderr


def _sign_in(page, base: str) -> None:
    page.goto(f"{base}/dashboard/login")
    page.fill("input[name=username]", OPERATOR[0])
    page.fill("input[name=password]", OPERATOR[1])
    page.click("form.signin button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/")


def _webhook(engine, webhook_id: str):
    with engine.connect() as c:
        return c.execute(sa.text("select id, processed_at, outcome, attempts, last_error from received_webhooks "
                                 "where platform_id = 'jiangsu' and webhook_id = :w"), {"w": webhook_id}).first()


def _deliveries(engine, binding_id: str) -> dict:
    with engine.connect() as c:
        return {r.platform_id: r for r in c.execute(sa.text(
            "select platform_id, status, attempts, dead_at from deliveries where binding_id = :b and "
            "binding_version = 1"), {"b": binding_id})}


def test_an_operator_retries_a_gave_up_webhook_and_replays_one_platforms_dead_delivery(production, engine, page):
    """Given a Jiangsu webhook that failed in the worker until it gave up, and a binding whose first event is
    dead to Jiangsu and to the national platform (both were down; Jiangsu is back, the national one is not),
    When an operator follows the overview's "gave up" count for Jiangsu, opens the webhook and retries it
    with a reason, then follows Jiangsu's dead count and replays that platform's dead deliveries,
    Then the webhook is handed to the worker again (it runs again, counted from one, and is refused), Jiangsu
    receives the event and its delivery is delivered, while the national platform's stays dead as it was;
    the audit log shows both actions with their reasons."""
    _operator(production)
    api = production.api()
    msg = f"msg_{uuid.uuid4().hex}"
    answer = post_webhook(production.base, "jiangsu", production.jiangsu_secret, {
        "type": "binding.unbind_requested",
        "data": {"binding_id": "bnd_\u0000x", "actor": {"kind": "person", "id": "psn_x"}}},  # refused at once
        msg_id=msg)
    assert answer.status_code == 202, answer.text
    poll(lambda: (_webhook(engine, msg) or (0, 0, 0, 0))[3] >= 1, timeout=60, what="the worker's first run")
    with engine.begin() as c:  # a webhook that gave up after its 25 runs (see the module docstring)
        c.execute(sa.text("update received_webhooks set processed_at = now(), outcome = 'failed:DataError', "
                          "attempts = 25 where webhook_id = :w"), {"w": msg})
    rid = _webhook(engine, msg).id

    national, province = production.national_receiver, production.province_receiver
    national.down()
    province.down()
    try:
        bid = api.invited(api.person("320100"), api.person("320100", insurance_type="resident"))["id"]
        poll(lambda: {p: r.status for p, r in _deliveries(engine, bid).items()} == {"national": "dead",
                                                                                    "jiangsu": "dead"},
             timeout=120, interval=0.3, what="version 1 dead to both platforms")
        province.up()
        national_before = _deliveries(engine, bid)["national"]

        _sign_in(page, production.base)
        page.click("#inbound tr[data-platform=jiangsu] td[data-kind=failed] a")
        page.wait_for_selector("#webhooks")
        page.click(f"tr[data-webhook='{rid}'] td.id a")
        page.wait_for_selector("#webhook[data-kind=failed]")
        assert "\x00" not in page.locator("#last-error").inner_text()
        page.fill("form[data-action=webhook_retry] textarea", "平台确认数据有误，重新处理")
        page.click("form[data-action=webhook_retry] button")
        page.wait_for_selector(".flash.ok")
        poll(lambda: (_webhook(engine, msg).outcome, _webhook(engine, msg).attempts) == ("validation_failed", 1),
             timeout=60, what="the worker running the retried webhook again (its runs counted from 0)")

        page.click("header a[href$='/dashboard/']")
        page.click("#platforms tr[data-platform=jiangsu] a.dead-link")
        page.wait_for_selector(f"#dead-deliveries a[href$='/dashboard/bindings/{bid}']")
        page.fill("form[data-action=replay-platform] textarea", "江苏医保云已恢复")
        page.click("form[data-action=replay-platform] button")
        page.wait_for_selector(".flash.ok")
        poll(lambda: _deliveries(engine, bid)["jiangsu"].status == "delivered", timeout=60,
             what="Jiangsu's replayed delivery acknowledged")
        assert 1 in province.versions(bid)
        assert _deliveries(engine, bid)["national"] == national_before  # still dead, untouched

        page.click("header a[href$='/dashboard/audit']")
        log = page.locator("table").inner_text()
        assert "平台确认数据有误，重新处理" in log and "江苏医保云已恢复" in log
    finally:
        national.up()
        province.up()
        with engine.begin() as c:  # leave no webhook failing in the shared stack's worker
            c.execute(sa.text("update received_webhooks set processed_at = now(), outcome = 'failed:DataError' "
                              "where webhook_id = :w"), {"w": msg})
