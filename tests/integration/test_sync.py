"""Regional sync on real PostgreSQL: the pull feed a platform rebuilds its copy from, and the periodic
reconciliation that re-sends what a platform lacks (with the simulator's fake platforms over HTTP)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from workflows import deliveries, platforms, reconcile, sync

from .support import T0, accepted, drain, fan_out_all, invite

LATER = T0 + timedelta(hours=1)


def _pages(db, platform, *, limit, now, after=None):
    ids = []
    while True:
        page = sync.feed(db, platform, after=after, limit=limit, now=now)
        ids += [b["id"] for b in page["bindings"]]
        after = page["next"]
        if not page["has_more"]:
            return ids, after


def test_the_feed_pages_through_what_concerns_the_platform_each_binding_once(pg_db, family):
    # Given three Jiangsu bindings (one across Nanjing and Suzhou) and one Xinjiang binding
    js = [invite(pg_db, family(pg_db), now=T0 + timedelta(seconds=i))["id"] for i in range(2)]
    js.append(invite(pg_db, family(pg_db, beneficiary_region="320500"), now=T0 + timedelta(seconds=2))["id"])
    xj = invite(pg_db, family(pg_db, region="650100"), commitment_version="XJ-2023-02",
                now=T0 + timedelta(seconds=3))["id"]
    # When Jiangsu pages through the feed two at a time, and the national platform in one go
    seen, cursor = _pages(pg_db, platforms.get(pg_db, "jiangsu"), limit=2, now=LATER)
    # Then Jiangsu saw its three, each once, in change order; the national platform all four
    assert seen == js
    assert _pages(pg_db, platforms.get(pg_db, "national"), limit=500, now=LATER)[0] == js + [xj]
    # And the answers carry masked persons only
    page = sync.feed(pg_db, platforms.get(pg_db, "jiangsu"), now=LATER)
    assert all("*" in b["grantor"]["id_number_masked"] for b in page["bindings"])
    # And a later change shows up after the cursor, but only once it is older than the horizon
    fresh = invite(pg_db, family(pg_db), now=LATER)["id"]
    jiangsu = platforms.get(pg_db, "jiangsu")
    assert sync.feed(pg_db, jiangsu, after=cursor, now=LATER)["bindings"] == []
    after = sync.feed(pg_db, jiangsu, after=cursor, now=LATER + timedelta(seconds=sync.HORIZON_S))
    assert [b["id"] for b in after["bindings"]] == [fresh]


def test_a_bad_cursor_is_refused(pg_db):
    from workflows.errors import DomainError
    with pytest.raises(DomainError) as refused:
        sync.feed(pg_db, platforms.get(pg_db, "jiangsu"), after="not-a-cursor!")
    assert refused.value.code == "validation_failed"


def test_reconciliation_sends_the_latest_version_a_platform_never_got(pg_db, family, receivers):
    # Given a binding whose events were fanned out while Jiangsu had no webhook URL
    platforms.set_webhook_url(pg_db, "jiangsu", None)
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    platforms.set_webhook_url(pg_db, "jiangsu", receivers["jiangsu"].url)
    assert receivers["jiangsu"].versions(bid) == [] and receivers["national"].versions(bid) == [1, 2, 3, 4]
    # When reconciliation runs once the change has settled
    assert reconcile.reconcile(pg_db, now=T0 + timedelta(seconds=10)) == []  # not settled yet
    ready = reconcile.reconcile(pg_db, now=LATER)
    drain(pg_db, LATER, ready)
    # Then Jiangsu received the latest version only, acknowledged it, and a second pass sends nothing
    assert receivers["jiangsu"].versions(bid) == [4]
    assert sync.acked_versions(pg_db, bid) == {"national": 4, "jiangsu": 4}
    assert reconcile.reconcile(pg_db, now=LATER) == []


def test_reconciliation_leaves_dead_deliveries_to_the_operator(pg_db, family, receivers):
    # Given Jiangsu's first delivery dead
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    receivers["jiangsu"].set_mode("fail")
    first = fan_out_all(pg_db, T0)
    now = T0
    for delay in (0,) + deliveries.SCHEDULE_S:
        now += timedelta(seconds=delay)
        drain(pg_db, now, first)
        first = ()
    assert sync.lag(pg_db, now=now)["jiangsu"]["dead"] == 1
    # When reconciliation runs, it re-sends nothing (the dead one is the operator's to replay)
    assert reconcile.reconcile(pg_db, now=now + timedelta(hours=1)) == []
    assert receivers["jiangsu"].versions(bid) == []
