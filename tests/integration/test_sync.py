"""Regional sync on real PostgreSQL: the pull feed a platform rebuilds its copy from, and the periodic
reconciliation that re-sends what a platform lacks (with the simulator's fake platforms over HTTP)."""
from __future__ import annotations

from datetime import timedelta

import pytest

import sqlalchemy as sa

from models import Binding
from workflows import commands, deliveries, platforms, reconcile, routing, sync

from .support import T0, accepted, drain, fan_out_all, invite, person

B = Binding.__table__

LATER = T0 + timedelta(hours=1)


def _pages(db, platform, *, limit, after=None):
    ids = []
    while True:
        page = sync.feed(db, platform, after=after, limit=limit)
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
    seen, cursor = _pages(pg_db, platforms.get(pg_db, "jiangsu"), limit=2)
    # Then Jiangsu saw its three, each once, in change order; the national platform all four
    assert seen == js
    assert _pages(pg_db, platforms.get(pg_db, "national"), limit=500)[0] == js + [xj]
    # And the answers carry masked persons only
    page = sync.feed(pg_db, platforms.get(pg_db, "jiangsu"))
    assert all("*" in b["grantor"]["id_number_masked"] for b in page["bindings"])
    # And a later change shows up after the cursor as soon as it committed; the cursor then moves past it
    jiangsu = platforms.get(pg_db, "jiangsu")
    assert sync.feed(pg_db, jiangsu, after=cursor)["bindings"] == []
    fresh = invite(pg_db, family(pg_db), now=LATER)["id"]
    after = sync.feed(pg_db, jiangsu, after=cursor)
    assert [b["id"] for b in after["bindings"]] == [fresh]
    assert sync.feed(pg_db, jiangsu, after=after["next"]) == {"bindings": [], "next": after["next"],
                                                               "has_more": False}


def test_a_change_that_commits_late_is_not_passed_over_by_a_cursor(pg_db, family):
    """Given bindings A and B, and a transaction that changed A first and has not committed yet
    When B changes and commits meanwhile, and Jiangsu pages the feed to its end
    Then B is not served yet (a write begun before it is still open), so the cursor stops before it;
    and once A's change commits, the same cursor continues with A's change, then B's: nothing is passed over.
    (Paged by the time each change was stamped, B's would come after A's stamp and a cursor taken at B
    would skip A for good: that was the former feed's hazard, which a minute's wait only made unlikely.)"""
    a = invite(pg_db, family(pg_db), now=T0)["id"]
    b = invite(pg_db, family(pg_db), now=T0 + timedelta(seconds=1))["id"]
    jiangsu = platforms.get(pg_db, "jiangsu")
    _, cursor = _pages(pg_db, jiangsu, limit=10)
    engine = pg_db.kw["bind"]
    with engine.connect() as late:
        late.begin()
        late.execute(sa.update(B).where(B.c.id == a).values(updated_at=LATER))  # A's writer begins first
        with engine.begin() as early:
            early.execute(sa.update(B).where(B.c.id == b).values(updated_at=LATER + timedelta(seconds=1)))
        page = sync.feed(pg_db, jiangsu, after=cursor)
        assert page["bindings"] == [] and page["next"] == cursor
        late.commit()
    page = sync.feed(pg_db, jiangsu, after=cursor)
    assert [x["id"] for x in page["bindings"]] == [a, b]


def test_the_feed_on_sqlite_serves_changes_in_commit_order_and_a_binding_again_after_its_next_change(
        sqlite_db, family):
    """Given two bindings on the embedded default's SQLite, A invited before B
    When Jiangsu reads one page of one, then A changes (its invitation is cancelled), then Jiangsu goes on
    Then it reads A, then B, then A again in its new state: the order the changes committed in"""
    fam_a = family(sqlite_db)
    a = invite(sqlite_db, fam_a, now=T0)["id"]
    b = invite(sqlite_db, family(sqlite_db), now=T0)["id"]
    jiangsu = platforms.get(sqlite_db, "jiangsu")
    first = sync.feed(sqlite_db, jiangsu, limit=1)
    assert [x["id"] for x in first["bindings"]] == [a] and first["has_more"]
    commands.cancel(sqlite_db, a, person(fam_a.grantor), now=T0)
    rest, _ = _pages(sqlite_db, jiangsu, limit=1, after=first["next"])
    assert rest == [b, a]
    assert sync.feed(sqlite_db, jiangsu)["bindings"][-1]["state"] == "cancelled"


def test_a_cursor_of_the_former_feed_continues_from_the_changes_made_since(pg_db, family):
    """Given a cursor the feed gave before its cursors were commit-ordered (updated_at, id), at T0
    When Jiangsu continues from it
    Then it gets every binding changed since shortly before T0 (some may come again), and then new cursors"""
    old = invite(pg_db, family(pg_db), now=T0 - timedelta(hours=1))["id"]
    new = invite(pg_db, family(pg_db), now=T0 + timedelta(seconds=5))["id"]
    jiangsu = platforms.get(pg_db, "jiangsu")
    legacy = sync._cursor(T0, old)
    seen, cursor = _pages(pg_db, jiangsu, limit=10, after=legacy)
    assert new in seen and old not in seen and cursor != legacy
    assert sync.feed(pg_db, jiangsu, after=cursor)["bindings"] == []


def _b64(text: str) -> str:
    import base64
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("after", ["not-a-cursor!", _b64("0001-01-01T00:00:00+00:00|x"),
                                   _b64("c99999999999999999999999|x"), _b64("c9223372036854775808|x"),
                                   _b64("c١٢|x"), _b64("2026-01-01T00:00:00|x")])
def test_a_bad_cursor_is_refused(pg_db, after):
    """Given cursors the feed never issued (garbage; the former feed's at year 1, which has no minute before
    it; a change stamp beyond a BIGINT; Arabic-Indic digits; a time without its zone)
    Then each is 422 validation_failed, never a 500 the platform would retry for ever."""
    from workflows.errors import DomainError
    with pytest.raises(DomainError) as refused:
        sync.feed(pg_db, platforms.get(pg_db, "jiangsu"), after=after)
    assert refused.value.code == "validation_failed"


def test_the_largest_stamp_a_cursor_may_hold_is_read_as_the_end(pg_db):
    """Given a cursor at the largest BIGINT stamp, Then the page is empty and the cursor stays."""
    after = _b64(f"c{2 ** 63 - 1}|x")
    assert sync.feed(pg_db, platforms.get(pg_db, "jiangsu"), after=after) == {"bindings": [], "next": after,
                                                                              "has_more": False}


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


def test_reconciliation_during_a_fan_out_backlog_leaves_the_binding_to_its_fan_out(pg_db, family, receivers):
    """Given a binding whose four events were never fanned out (the workers down longer than settle_s)
    When reconciliation runs, and then the workers come back and fan out each event in order
    Then reconciliation sent nothing ahead of the fan-out, every event reaches each platform in version order,
    and every outbox event was processed (none stalls on a delivery made by reconciliation)."""
    from models import OutboxMessage

    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    assert reconcile.reconcile(pg_db, now=LATER) == []
    with pg_db() as s:
        ids = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid)
                        .order_by(OutboxMessage.id)).all()
    for outbox_id in ids:
        drain(pg_db, LATER, routing.fan_out(pg_db, outbox_id, now=LATER).ready)
    assert receivers["national"].versions(bid) == receivers["jiangsu"].versions(bid) == [1, 2, 3, 4]
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).where(OutboxMessage.binding_id == bid,
                                                         OutboxMessage.processed_at.is_(None))) == 0


def test_a_delivery_already_made_for_an_event_does_not_stall_its_fan_out(pg_db, family, receivers):
    """Given an event whose delivery to one platform already exists (an operator's re-send ran first)
    When the event is fanned out, Then the fan-out completes (the other platforms get theirs) and the
    existing delivery stays the only one for that platform."""
    from models import Delivery, OutboxMessage

    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    with pg_db.begin() as s:
        msg = s.scalar(sa.select(OutboxMessage).where(OutboxMessage.binding_id == bid))
        routing.add(s, msg, "jiangsu", T0)
    out = routing.fan_out(pg_db, msg.id, now=T0)
    drain(pg_db, T0, out.ready)
    assert receivers["national"].versions(bid) == [1]
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).where(Delivery.outbox_id == msg.id,
                                                         Delivery.platform_id == "jiangsu")) == 1
