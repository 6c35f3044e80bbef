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
from workflows import commands, deliveries, delivery_repair, platforms, routing, sync

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


def test_a_watcher_at_the_fake_platform_hears_its_binding_s_events_once_in_version_order(pg_db, family, receivers):
    # Given two accepted families, and a watch on the first one's binding at the national fake platform (what
    # the driver of bench/webhooks.py waits on for a verification's result, as a platform's app would)
    fam = family(pg_db)
    first, other = accepted(pg_db, fam), accepted(pg_db, family(pg_db))
    national = receivers["national"]
    heard = national.watch(first)
    # When every event is fanned out and delivered, and the first event is then sent once more
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    again = national.events[0]
    assert outbound.post_signed(national.url, tuple(national.secrets), again.webhook_id, again.payload).ok
    # Then the watch got each event of its binding once, in version order, and nothing of the other binding
    got = []
    while not heard.empty():
        got.append(heard.get_nowait())
    assert got == ["binding.invited", "binding.verification_requested", "binding.face_verified", "binding.accepted"]
    assert national.versions(other) == [1, 2, 3, 4] and national.duplicates == 1
    # And once unwatched, a later event is received but queued for nobody
    national.unwatch(first)
    commands.unbind(pg_db, first, person(fam.grantor), now=T0 + timedelta(seconds=6))
    drain(pg_db, T0 + timedelta(seconds=7), fan_out_all(pg_db, T0 + timedelta(seconds=6)))
    assert national.versions(first) == [1, 2, 3, 4, 5] and heard.empty()


def test_an_event_of_another_kind_that_names_a_binding_fans_out_nothing_of_that_binding(pg_db, family, receivers):
    # Given an invited binding whose event is not fanned out yet, and an outbox row of another topic that
    # names the binding (none does today; the fan-out must not take it for a binding event)
    from workflows import outbox
    from .support import invite
    bid = invite(pg_db, family(pg_db))["id"]
    with pg_db.begin() as s:
        other = outbox.write(s, "webhook.received", T0, {"received_webhook_id": 0}, binding_id=bid, version=1)
    # When that row is fanned out
    done = routing.fan_out(pg_db, other, now=T0)
    # Then it is not handled as a binding event, and the binding's own event is still waiting for its fan-out
    assert (done.handled, done.topic, done.ready) == (False, "webhook.received", [])
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.binding_id == bid, OutboxMessage.fanned_out_at.is_(None))) == 2
        assert s.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.binding_id == bid)) == 0


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
    replayed = delivery_repair.replay(pg_db, platform_id="jiangsu", now=now)
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
    drain(pg_db, T0 + timedelta(seconds=1), routing.fan_out(pg_db, ids[0], now=T0).ready)
    rest = [d for outbox_id in ids[1:] for d in routing.fan_out(pg_db, outbox_id, now=T0).ready]
    drain(pg_db, T0 + timedelta(seconds=2), rest)
    # Then every platform still received the versions in order, each once
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4]
    assert receivers["national"].versions(bid) == [1, 2, 3, 4]


def test_a_claim_and_an_acknowledgement_run_outside_a_transaction(pg_db, pg_engine, family, receivers):
    """Given a binding at version 2 whose two national deliveries exist (version 2 blocked behind 1),
    when version 1 is claimed, sent and acknowledged,
    then the claim is one statement and the record two (the acknowledgement, then the release), all on an
    autocommit connection (no BEGIN/COMMIT),
    the national platform's acknowledged version is 1, and version 2 is released to be sent now."""
    fam = family(pg_db)
    from .support import invite
    bid = invite(pg_db, fam)["id"]
    from workflows import verification
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    ready = fan_out_all(pg_db, T0)
    with pg_db() as s:
        first = s.scalar(sa.select(Delivery.id).where(Delivery.platform_id == "national",
                                                      Delivery.binding_version == 1))
        second = s.scalar(sa.select(Delivery.id).where(Delivery.platform_id == "national",
                                                       Delivery.binding_version == 2))
    assert first in ready and second not in ready
    platforms.get(pg_db, "national")  # the platform cache is warm in a running worker
    seen = []

    def hear(conn, cursor, statement, params, context, executemany):
        seen.append((statement.split(None, 1)[0].upper(), conn.connection.dbapi_connection.autocommit))
    sa.event.listen(pg_engine, "before_cursor_execute", hear)
    try:
        claim = deliveries.claim(pg_db, first, now=T0)
        answer = outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload)
        released = deliveries.record(pg_db, claim, status_code=answer.status_code, error=answer.error,
                                     duration_ms=answer.duration_ms, now=T0)
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", hear)

    assert claim.attempt_no == 1 and claim.payload["data"]["binding"]["version"] == 1
    assert seen == [("UPDATE", True), ("WITH", True), ("UPDATE", True)]
    assert released == [second]
    assert sync.acked_versions(pg_db, bid)["national"] == 1
    assert deliveries.claim(pg_db, first, now=T0) is None  # delivered: nothing left to take


def test_an_acknowledgement_that_waited_for_a_fan_out_releases_what_the_fan_out_inserted(pg_db, family,
                                                                                         receivers, monkeypatch):
    """Given version 1's national delivery sent, and the fan-out of version 2 holding version 1's row lock
    (it is deciding that version 2 must wait for version 1),
    when version 1's acknowledgement is recorded meanwhile (it waits for that lock) and the fan-out then
    commits version 2 as blocked,
    then the acknowledgement still releases version 2: it is due now, not left waiting for a periodic pass."""
    import threading

    from workflows import verification
    from .support import invite, wait_for_a_lock_wait
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    with pg_db() as s:
        first_event = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid))
    ready = routing.fan_out(pg_db, first_event, now=T0).ready
    with pg_db() as s:
        v1 = s.scalar(sa.select(Delivery.id).where(Delivery.id.in_(ready), Delivery.platform_id == "national"))
    claim = deliveries.claim(pg_db, v1, now=T0)
    assert outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload).ok
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    with pg_db() as s:
        second_event = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid,
                                                                  OutboxMessage.binding_version == 2))
    holding, go, real = threading.Event(), threading.Event(), routing.add

    def add_then_hold(s, msg, platform_id, now):
        found = real(s, msg, platform_id, now)  # locked version 1's delivery rows, inserted version 2 held
        if platform_id == "national":
            holding.set()
            go.wait(30)
        return found
    monkeypatch.setattr(routing, "add", add_then_hold)
    released = []
    fan = threading.Thread(target=routing.fan_out, args=(pg_db, second_event), kwargs={"now": T0})
    fan.start()
    assert holding.wait(30)
    record = threading.Thread(target=lambda: released.extend(deliveries.record(
        pg_db, claim, status_code=200, error=None, duration_ms=1, now=T0)))
    record.start()
    wait_for_a_lock_wait(pg_db, on="deliveries")  # the acknowledgement is waiting for the fan-out's lock
    go.set()
    fan.join(30)
    record.join(30)

    with pg_db() as s:
        v2 = s.execute(sa.select(Delivery.id, Delivery.next_attempt_at).where(
            Delivery.platform_id == "national", Delivery.binding_id == bid, Delivery.binding_version == 2)).one()
    assert released == [v2.id] and v2.next_attempt_at is not None


def test_a_fan_out_that_waited_for_the_fan_out_of_the_version_before_holds_its_delivery_behind_it(pg_db, family,
                                                                                                  receivers,
                                                                                                  monkeypatch):
    """Given versions 1 and 2 of a binding in the outbox, neither fanned out, and the fan-out of version 1
    holding its outbox lock (about to insert version 1's deliveries)
    when the fan-out of version 2 starts meanwhile (it waits for that lock) and version 1's then commits,
    then version 2's deliveries are held behind version 1's (no next_attempt_at) and only version 1's may
    leave: after its wait, version 2's fan-out sees the deliveries version 1's inserted."""
    import threading

    from workflows import verification
    from .support import invite, wait_for_a_lock_wait
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    with pg_db() as s:
        first, second = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid)
                                  .order_by(OutboxMessage.binding_version)).all()
    holding, go, real = threading.Event(), threading.Event(), routing.add
    owner = {}

    def hold_then_add(s, msg, platform_id, now):
        if owner.get(threading.get_ident()) == "first" and not holding.is_set():
            holding.set()
            go.wait(30)
        return real(s, msg, platform_id, now)
    monkeypatch.setattr(routing, "add", hold_then_add)
    results = {}

    def fan(name, outbox_id):
        owner[threading.get_ident()] = name
        results[name] = routing.fan_out(pg_db, outbox_id, now=T0)
    one = threading.Thread(target=fan, args=("first", first))
    one.start()
    assert holding.wait(30)
    two = threading.Thread(target=fan, args=("second", second))
    two.start()
    wait_for_a_lock_wait(pg_db, on="outbox")  # the second fan-out is waiting for the first one's lock
    go.set()
    one.join(30)
    two.join(30)

    with pg_db() as s:
        rows = s.execute(sa.select(Delivery.binding_version, Delivery.platform_id, Delivery.next_attempt_at)
                         .where(Delivery.binding_id == bid)
                         .order_by(Delivery.binding_version, Delivery.platform_id)).all()
    assert [(v, p) for v, p, _ in rows] == [(1, "jiangsu"), (1, "national"), (2, "jiangsu"), (2, "national")]
    assert [at is None for _, _, at in rows] == [False, False, True, True]
    assert len(results["first"].ready) == 2 and results["second"].ready == []


def test_a_successor_left_blocked_by_a_worker_that_died_is_released_by_the_scheduler(pg_db, family, receivers,
                                                                                       monkeypatch):
    """Given version 1's national delivery acknowledged by a worker that died before releasing version 2
    (the release is a statement of its own on PostgreSQL),
    when the scheduler's minute pass runs, then version 2 is due and the delivery pass sends it;
    a version still behind an unacknowledged one is left blocked."""
    from workflows import verification
    from .support import invite
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    fan_out_all(pg_db, T0)
    with pg_db() as s:
        v1, v2 = s.scalars(sa.select(Delivery.id).where(Delivery.platform_id == "national", Delivery.binding_id == bid)
                           .order_by(Delivery.binding_version)).all()
    claim = deliveries.claim(pg_db, v1, now=T0)

    def died(*args, **kwargs):
        raise SystemExit("the worker died between acknowledgement and release")
    monkeypatch.setattr(deliveries, "_release", died)
    with pytest.raises(SystemExit):
        deliveries.record(pg_db, claim, status_code=200, error=None, duration_ms=1, now=T0)
    monkeypatch.undo()
    assert v2 not in deliveries.due(pg_db, now=T0 + timedelta(minutes=5))  # nothing would ever send it
    assert delivery_repair.release_orphans(pg_db, now=T0) == 1  # Jiangsu's version 2 still waits for its version 1

    assert deliveries.due(pg_db, now=T0) == [v2]
