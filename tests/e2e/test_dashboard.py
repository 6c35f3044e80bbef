"""The operator dashboard in real headless Chromium (Playwright on /usr/bin/chromium) against
`gongji serve --no-simulator`, whose embedded default has the development accounts admin and viewer.

A stuck binding is made for real: a verification is started while no face-verification provider has a
URL, so the worker's session request fails (`verification_request_failed`). Every page visited is
screenshotted into docs/screenshots/ (the README shows them)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from .support import HTTP_TIMEOUT, poll

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ADMIN, VIEWER = ("admin", "gongji-admin"), ("viewer", "gongji-viewer")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    yield context.new_page()
    context.close()


def sign_in(page, base: str, who: tuple[str, str]) -> None:
    page.goto(f"{base}/dashboard/sign-in")
    page.fill("input[name=username]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("form.signin button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def stuck_binding(embedded, js):
    """An invitation whose face-verification request failed (no provider URL in this server)."""
    grantor = js.person("320100")
    beneficiary = js.person("320500", insurance_type="resident")
    b = js.invited(grantor, beneficiary, "spouse")
    assert js.command(b["id"], "verification", beneficiary).status_code == 202
    poll(lambda: js.binding(b["id"])["verifications"][0]["provider_status"] == "error",
         what="the provider request to fail")
    return b["id"], grantor, beneficiary


def test_an_admin_finds_understands_and_repairs_a_stuck_binding(embedded, page, stuck_binding):
    """Given a binding stuck on a failed verification request, When an admin signs in, Then the overview
    counts it under its reason, the list filtered by that reason shows it, its page shows the diagram with
    the current state and the history; When the admin retries and then expires it with reasons, Then the
    history and the audit log show both, with the reasons."""
    bid, grantor, beneficiary = stuck_binding
    page.goto(f"{embedded}/dashboard/")
    assert "/dashboard/login" in page.url  # nothing without signing in (API.md: sign-in at /dashboard/login)
    shot(page, "sign-in")
    sign_in(page, embedded, ADMIN)
    row = page.locator("[data-reason=verification_request_failed]")
    assert int(row.get_attribute("data-count")) >= 1
    assert "概览" in page.content()  # Chinese first
    # the embedded server's in-process worker and its scheduler thread, each with its row (workflows/processes.py)
    assert page.locator("#workers").get_attribute("data-running") == "1"
    assert page.locator("#scheduler").get_attribute("data-running") == "1"
    assert page.locator("#workers .tag.error, #scheduler .tag.error").count() == 0
    shot(page, "overview")

    row.locator("a").click()
    page.wait_for_selector("#bindings")
    assert page.locator(f"a:text('{bid}')").count() == 1
    shot(page, "list")

    page.click(f"a:text('{bid}')")
    page.wait_for_selector(".diagram svg")
    assert page.locator(".diagram [data-state=invited].current").count() == 1
    assert page.locator("#history li").count() == 2  # invite, start_verification
    assert page.locator("[data-reason=verification_request_failed]").count() >= 1
    # long free text (the provider's error, a delivery's last answer) wraps inside its box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("""[...document.querySelectorAll('section.box')].every(s => {
        const r = s.getBoundingClientRect();
        return [...s.querySelectorAll('td')].every(td => td.getBoundingClientRect().right <= r.right + 1); })""")
    assert page.locator(".tag .provider-error, .tag.error").count() == 0
    shot(page, "binding")

    page.fill("form[data-action=retry] textarea", "市民来电：人脸核验无响应，重试")
    page.click("form[data-action=retry] button")
    page.wait_for_selector(".flash.ok")
    page.fill("form[data-action=expire] textarea", "市民要求撤销邀请")
    page.click("form[data-action=expire] button")  # the confirmation is not ticked: the browser asks for it
    assert page.locator("form[data-action=expire] input[name=confirm]:invalid").count() == 1
    assert page.locator("#state").get_attribute("data-state") == "invited"
    page.check("form[data-action=expire] input[name=confirm]")
    page.click("form[data-action=expire] button")
    page.wait_for_selector("#state[data-state=expired]")
    last = page.locator("#history li").last
    assert last.get_attribute("data-event") == "expire" and "市民要求撤销邀请" in last.inner_text()
    assert page.locator(".diagram [data-state=expired].current").count() == 1
    shot(page, "binding-expired")

    page.click("header a[href$='/dashboard/audit']")
    text = page.locator("table").inner_text()
    assert "市民要求撤销邀请" in text and "市民来电：人脸核验无响应，重试" in text and bid in text
    shot(page, "audit")
    for p in (grantor, beneficiary):
        assert p.id_number not in page.content()

    page.click("header a[href$='/dashboard/policies']")
    assert page.locator("#policies tr[data-region='320100'][data-status=in_force]").count() == 1
    shot(page, "policies")


def test_an_operator_records_an_identity_check_at_the_service_hall(embedded, page, xj, stuck_binding):
    """Given a Xinjiang invitation (its policy provides for the check in person) and a Jiangsu one (its
    policy does not)
    When an admin opens each binding's page
    Then only the Xinjiang one offers to record the check in person; recorded with what was checked, the
    binding is face verified, its method reads 线下核验身份证件, and the history names the event and reason."""
    sign_in(page, embedded, ADMIN)
    page.goto(f"{embedded}/dashboard/bindings/{stuck_binding[0]}")
    assert page.locator("form[data-action=expire]").count() == 1
    assert page.locator("form[data-action=verify_in_person]").count() == 0
    b = xj.invited(xj.person("650100"), xj.person("650100", insurance_type="resident"), "spouse", "XJ-2023-02")
    page.goto(f"{embedded}/dashboard/bindings/{b['id']}")
    form = page.locator("form[data-action=verify_in_person]")
    assert form.locator("input[name=confirm]").count() == 0  # it ends nothing: no confirmation asked
    form.locator("textarea").fill("居民身份证原件核验，申请表 XJ-2026-000123")
    form.locator("button").click()
    page.wait_for_selector("#state[data-state=face_verified]")
    last = page.locator("#history li").last
    assert last.get_attribute("data-event") == "verify_in_person" and "XJ-2026-000123" in last.inner_text()
    assert "线下核验身份证件" in page.locator("main").inner_text()
    assert page.locator("form[data-action=verify_in_person]").count() == 0
    shot(page, "binding-in-person")
    assert xj.binding(b["id"])["verification_method"] == "in_person"


def test_a_viewer_sees_but_cannot_act(embedded, page, stuck_binding):
    """Given a viewer, When they open a stuck binding, Then no action form is offered, and a forged POST
    with a valid CSRF token is refused 403 and changes nothing."""
    bid = stuck_binding[0]
    sign_in(page, embedded, VIEWER)
    page.goto(f"{embedded}/dashboard/bindings/{bid}")
    assert page.locator("form[data-action]").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(f"{embedded}/dashboard/bindings/{bid}/expire",
                               form={"csrf_token": token, "reason": "not allowed"})
    assert answer.status == 403
    page.goto(f"{embedded}/dashboard/bindings/{bid}")
    assert page.locator("#state").get_attribute("data-state") == "invited"


def _signed_in_session(base: str, who: tuple[str, str]) -> requests.Session:
    http = requests.Session()
    form = http.get(f"{base}/dashboard/sign-in", timeout=HTTP_TIMEOUT).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    answer = http.post(f"{base}/dashboard/sign-in", data={"csrf_token": token, "username": who[0],
                                                        "password": who[1]}, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200 and answer.url.endswith("/dashboard/")
    return http


def test_a_form_without_its_csrf_token_is_refused(embedded, stuck_binding):
    """Given a signed-in admin, When an action is POSTed without the CSRF token, Then 400, nothing changes."""
    bid = stuck_binding[0]
    http = _signed_in_session(embedded, ADMIN)
    answer = http.post(f"{embedded}/dashboard/bindings/{bid}/expire", data={"reason": "csrf"}, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 400
    assert 'data-state="invited"' in http.get(f"{embedded}/dashboard/bindings/{bid}", timeout=HTTP_TIMEOUT).text


def test_no_page_shows_a_whole_id_number_or_name(embedded, stuck_binding):
    """Given a binding, When every dashboard page is fetched (the person look-up included), Then neither
    party's ID number or name appears whole; the look-up finds the binding without the number in a URL."""
    bid, grantor, beneficiary = stuck_binding
    http = _signed_in_session(embedded, ADMIN)
    pages = [http.get(f"{embedded}{path}", timeout=HTTP_TIMEOUT) for path in (
        "/dashboard/", "/dashboard/bindings", "/dashboard/bindings?stuck=verification_request_failed",
        f"/dashboard/bindings/{bid}", "/dashboard/audit", "/dashboard/policies")]
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', pages[1].text).group(1)
    found = http.post(f"{embedded}/dashboard/find", data={"csrf_token": token, "id_number": grantor.id_number},
                      timeout=HTTP_TIMEOUT)
    assert found.status_code == 200 and bid in found.text and found.url.endswith("/dashboard/find")
    for answer in [*pages, found]:
        assert answer.status_code == 200, answer.url
        for p in (grantor, beneficiary):
            assert p.id_number not in answer.text and p.name not in answer.text, answer.url


def test_sign_in_is_rate_limited(embedded):
    """Given a username, When the wrong password is tried more than 10 times in a minute, Then 429."""
    http = requests.Session()
    codes = []
    for _ in range(12):
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                          http.get(f"{embedded}/dashboard/sign-in", timeout=HTTP_TIMEOUT).text).group(1)
        codes.append(http.post(f"{embedded}/dashboard/sign-in", timeout=HTTP_TIMEOUT, data={
            "csrf_token": token, "username": "brute-force", "password": "guess-guess"}).status_code)
    assert codes[:10] == [401] * 10 and codes[-1] == 429


def test_english_is_available(embedded, page):
    """Given the Chinese dashboard, When the admin switches language, Then the pages are in English."""
    sign_in(page, embedded, ADMIN)
    page.click("header button:text('English')")
    page.wait_for_selector("header a:text('Overview')")
    assert "Bindings" in page.locator("header").inner_text()


def test_a_batch_by_filter_counts_first_then_runs_in_the_worker(embedded, page, xj):
    """Given three invitations in 阿克苏 (652900) stuck on a failed verification request, When an operator
    filters the list by that region and reason, opens the batch form, and confirms `expire` with a reason
    for the count shown, Then the worker expires all three, the batch page shows the progress to done,
    and the audit log has one entry per binding carrying the batch."""
    ids = []
    for _ in range(3):
        grantor = xj.person("652900")
        beneficiary = xj.person("652900", insurance_type="resident")
        b = xj.invited(grantor, beneficiary, "spouse", "XJ-2023-02")
        assert xj.command(b["id"], "verification", beneficiary).status_code == 202
        ids.append(b["id"])
    for bid in ids:
        poll(lambda bid=bid: xj.binding(bid)["verifications"][0]["provider_status"] == "error",
             what="the provider request to fail")
    sign_in(page, embedded, ADMIN)
    page.goto(f"{embedded}/dashboard/bindings?region=652900&stuck=verification_request_failed&state=invited")
    assert page.locator("#bindings tbody tr").count() == 3
    page.click("#batch-link")
    assert page.locator("#batch-count").get_attribute("data-count") == "3"
    page.select_option("select[name=action]", "expire")
    page.fill("#batch-form textarea[name=reason]", "阿克苏核验服务故障，批量过期后重新邀请")
    page.check("#batch-form input[name=confirm]")
    shot(page, "batch-confirm")
    page.click("#batch-form button[type=submit]")
    page.wait_for_selector("#batch-progress[data-state=done]", timeout=30_000)
    assert "3" in page.locator("#batch-progress").inner_text()
    shot(page, "batch-done")
    for bid in ids:
        assert xj.binding(bid)["state"] == "expired"
    page.goto(f"{embedded}/dashboard/audit")
    text = page.locator("table").inner_text()
    assert all(bid in text for bid in ids)
