"""Long free text on the binding page, in real headless Chromium: whether text wraps is the browser's
layout, which the test client cannot see. Operator review 2, item 4 (a platform's reason without spaces
ran across the page). No screenshot is saved (docs/screenshots/ belongs to test_dashboard.py)."""
from __future__ import annotations

from .test_dashboard import ADMIN, browser, page, sign_in  # noqa: F401  (fixtures)


def test_a_long_reason_without_spaces_stays_inside_the_history_box(embedded, page, js):  # noqa: F811
    """Given an invitation the grantor withdrew with a 500-character reason without a space (the API's most)
    When an admin opens the binding at 1400 px, and unfolds the reason
    Then the page does not scroll sideways and the reason stays inside the History box, folded and unfolded."""
    grantor, beneficiary = js.person("320100"), js.person("320500", insurance_type="resident")
    bid = js.invited(grantor, beneficiary, "spouse")["id"]
    js.ok(bid, "cancel", grantor, reason="因" * 250 + "X" * 250)
    sign_in(page, embedded, ADMIN)
    page.goto(f"{embedded}/dashboard/bindings/{bid}")
    page.wait_for_selector("#history details.long-text")
    inside = """() => { const box = document.querySelector('#history').closest('section.box').getBoundingClientRect();
        return [...document.querySelectorAll('#history .long-text, #history .long-text *')].every(e => {
            const r = e.getBoundingClientRect(); return r.right <= box.right + 1; })
          && document.documentElement.scrollWidth <= window.innerWidth; }"""
    assert page.evaluate(inside)
    page.click("#history details.long-text summary")
    assert page.locator("#history details.long-text[open]").count() == 1 and page.evaluate(inside)
