"""Defects an operator found reviewing the running dashboard, each pinned by a test (Flask test client,
migrated SQLite file): a replayed delivery's newest tries, batch actions the filtered state allows, an ID
number pasted with separators, words instead of internal codes, policy durations, the layout at 1024 px,
the language kept across sign-out, and the delivery wording on the binding page."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage

from .support import invite
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
