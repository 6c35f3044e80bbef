"""Outbound webhooks on real PostgreSQL to real HTTP receivers (the simulator's fake platform): who gets
what, per-binding order, the retry schedule, dead letters and replay, secret rotation.

The dispatch is driven here step by step with an explicit clock (`drain`), exactly as the `deliver` actor
and the scheduler's delivery pass do it, so no test waits for a retry delay."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Delivery, DeliveryAttempt, OutboxMessage
from workers import outbound
from workers.simulator.platform import FakePlatform
from workflows import commands, deliveries, platforms, sync

from .support import T0, accepted, drain, fan_out_all, person

pytestmark = pytest.mark.usefixtures("pg_db")


def statuses(db) -> dict[str, int]:
    with db() as s:
        return dict(s.execute(sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)).all())


def test_binding_events_reach_the_national_platform_and_its_province_in_version_order(pg_db, family, receivers):
    # Given a Jiangsu family taken to `accepted` (versions 1..4) and then unbound (version 5)
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    commands.unbind(pg_db, bid, person(fam.grantor), now=T0 + timedelta(seconds=4))
    # When the events are fanned out and dispatched
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    # Then the national platform and Jiangsu received every version once, in order; Xinjiang nothing
    assert receivers["national"].versions(bid) == [1, 2, 3, 4, 5]
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4, 5]
    assert receivers["xinjiang"].events == []
    assert [e.type for e in receivers["jiangsu"].events] == [
        "binding.invited", "binding.verification_requested", "binding.face_verified", "binding.accepted",
        "binding.unbound"]
    # And the events carry masked persons only, and each platform's acknowledged version is recorded
    body = outbound.encode(receivers["jiangsu"].events[0].payload)
    assert fam.grantor not in body and fam.beneficiary not in body
    assert sync.acked_versions(pg_db, bid) == {"national": 5, "jiangsu": 5}
    assert statuses(pg_db) == {"delivered": 10}


def test_a_later_version_waits_until_the_earlier_one_is_acknowledged(pg_db, family, receivers):
    # Given Jiangsu answering 503
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    receivers["jiangsu"].set_mode("fail", status=503)
    # When dispatching: version 1 fails and versions 2..4 are not even tried
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    assert receivers["jiangsu"].versions(bid) == []
    with pg_db() as s:
        tried = s.scalars(sa.select(Delivery.binding_version).where(
            Delivery.platform_id == "jiangsu", Delivery.attempts > 0)).all()
    assert tried == [1]
    # And after Jiangsu recovers, nothing goes before the retry is due ...
    receivers["jiangsu"].set_mode("ok")
    assert drain(pg_db, T0 + timedelta(seconds=6)) == 0
    # ... then everything goes, in order
    drain(pg_db, T0 + timedelta(seconds=5 + deliveries.SCHEDULE_S[0]))
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4]
    assert statuses(pg_db) == {"delivered": 8}


def test_retries_follow_the_schedule_then_the_delivery_is_dead_until_replayed(pg_db, family, receivers):
    # Given an invitation whose Jiangsu delivery always fails
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    receivers["jiangsu"].set_mode("fail", status=500)
    first = fan_out_all(pg_db, T0)
    # When every retry is made exactly when it is due
    now = T0 + timedelta(seconds=1)
    for delay in (0,) + deliveries.SCHEDULE_S:
        now += timedelta(seconds=delay)
        assert drain(pg_db, now, first) >= 1
        first = ()
    # Then version 1 was tried MAX_ATTEMPTS times, spaced by the schedule, and is dead
    with pg_db() as s:
        head = s.scalars(sa.select(Delivery).where(Delivery.platform_id == "jiangsu")
                         .order_by(Delivery.binding_version)).first()
        tries = s.scalars(sa.select(DeliveryAttempt.at).where(DeliveryAttempt.delivery_id == head.id)
                          .order_by(DeliveryAttempt.attempt_no)).all()
    assert head.status == "dead" and head.attempts == deliveries.MAX_ATTEMPTS
    assert [int((b - a).total_seconds()) for a, b in zip(tries, tries[1:])] == list(deliveries.SCHEDULE_S)
    assert sum(deliveries.DEFAULT_SCHEDULE_S) >= 3 * 86400  # retried for (at least) three days
    assert drain(pg_db, now + timedelta(days=30)) == 0  # dead stays dead, and blocks what follows
    assert sync.lag(pg_db, now=now)["jiangsu"]["dead"] == 1
    # When an operator replays it after Jiangsu recovers
    receivers["jiangsu"].set_mode("ok")
    replayed = deliveries.replay(pg_db, platform_id="jiangsu", now=now)
    assert replayed == [head.id]
    drain(pg_db, now + timedelta(seconds=1), replayed)
    # Then the dead event and everything behind it arrive, in order
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4]
    assert "jiangsu" not in sync.lag(pg_db, now=now)


def test_during_a_secret_rotation_both_secrets_sign_and_afterwards_only_the_new_one(pg_db, family, receivers):
    # Given Jiangsu rotated its secret with a one-hour overlap, and two receivers: one knowing only the old
    # secret, one only the new
    old = receivers["jiangsu"].secrets[0]
    new = "whsec_" + "bmV3LXNlY3JldC1mb3ItdGVzdHMtMzItYnl0ZXMhIQ=="
    until = platforms.rotate_secret(pg_db, "jiangsu", new, overlap_s=3600, now=T0)
    old_only, new_only = FakePlatform([old]).start(), FakePlatform([new]).start()
    try:
        info = platforms.get(pg_db, "jiangsu")
        payload = {"type": "binding.invited", "id": "evt_rotation", "data": {}}
        # When signing during the overlap, both receivers accept
        headers_during = info.signing_secrets(until - timedelta(seconds=1))
        assert outbound.post_signed(old_only.url, headers_during, "msg_1", payload).ok
        assert outbound.post_signed(new_only.url, headers_during, "msg_2", payload).ok
        # And after it, only the new secret signs: the old-only receiver refuses
        headers_after = info.signing_secrets(until)
        assert headers_after == (new,)
        assert outbound.post_signed(old_only.url, headers_after, "msg_3", payload).status_code == 401
        assert outbound.post_signed(new_only.url, headers_after, "msg_4", payload).ok
    finally:
        old_only.stop()
        new_only.stop()


def test_events_fanned_out_newest_first_still_leave_in_version_order(pg_db, family, receivers):
    # Given a binding's four events, handled by the outbox actors in reverse order (actors run concurrently,
    # in any order: the fault test with Redis down once delivered version 3 after 6)
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    with pg_db() as s:
        ids = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid)
                        .order_by(OutboxMessage.id.desc())).all()
    # When the newest is fanned out and dispatched before the actors of the others have run, then the others
    drain(pg_db, T0 + timedelta(seconds=1), deliveries.fan_out(pg_db, ids[0], now=T0).ready)
    rest = [d for outbox_id in ids[1:] for d in deliveries.fan_out(pg_db, outbox_id, now=T0).ready]
    drain(pg_db, T0 + timedelta(seconds=2), rest)
    # Then every platform still received the versions in order, each once
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4]
    assert receivers["national"].versions(bid) == [1, 2, 3, 4]
