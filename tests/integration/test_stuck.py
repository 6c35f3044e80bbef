"""Stuck bindings on real PostgreSQL: each reason produced by a real scenario through the workflows' own
commands (timers, verification, face sessions, deliveries, reconciliation, the outbox worker's run_once),
counted by `stuck.counts`, listed by `finder.find(stuck=...)` and explained by `stuck.of_binding`.

Deliveries are claimed and recorded with the deliveries module directly, the platform's answer given by the
test (no HTTP); every call gets an explicit `now`, so no test waits."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Binding, OutboxMessage
from workflows import (deliveries, delivery_repair, face_sessions, finder, platforms, reconcile, stuck, timers,
                       verification)
from workflows.idnumbers import mask
from workflows.once import run_once

from .support import T0, TTL, accepted, fan_out_all, invite, person

pytestmark = pytest.mark.pg
HOOK = "http://127.0.0.1:9/never-called"  # deliveries are recorded by the test: nothing is sent there


@pytest.fixture
def push(pg_db):
    """National, Jiangsu and Xinjiang take pushed events (a webhook URL): they are the sync targets."""
    for pid in ("national", "jiangsu", "xinjiang"):
        platforms.set_webhook_url(pg_db, pid, HOOK)


def answer(db, ids, now, status_of) -> None:
    """Claim and record each delivery (and whatever its success releases) as the deliver actor would, the
    platform answering `status_of[platform_id]` (default 200)."""
    queue = list(ids)
    while queue:
        claim = deliveries.claim(db, queue.pop(0), now=now)
        if claim is None:
            continue
        status = status_of.get(claim.platform_id, 200)
        queue += deliveries.record(db, claim, status_code=status, error=None if status < 300 else f"HTTP {status}",
                                   duration_ms=5, now=now)


def reasons(db, binding_id, now) -> list[str]:
    with db() as s:
        return [r["reason"] for r in stuck.of_binding(s, binding_id, now)]


def counted(db, now) -> dict[str, int]:
    """The non-zero counts (every reason is present in `counts`, zeros included)."""
    found = stuck.counts(db, now)
    assert tuple(found) == stuck.REASONS
    return {r: n for r, n in found.items() if n}


def listed(db, reason, now) -> list[str]:
    return [item["id"] for item in finder.find(db, stuck=reason, now=now)["items"]]


def test_a_healthy_binding_is_stuck_for_nothing(pg_db, family, push):
    """Given an accepted binding whose four events every concerned platform acknowledged,
    when stuck is computed well after it settled,
    then no reason holds, every count is 0 and no list has it."""
    bid = accepted(pg_db, family(pg_db))
    answer(pg_db, fan_out_all(pg_db, T0 + timedelta(seconds=4)), T0 + timedelta(seconds=4), {})
    later = T0 + timedelta(days=1)
    assert reasons(pg_db, bid, later) == []
    assert stuck.counts(pg_db, later) == dict.fromkeys(stuck.REASONS, 0)
    assert all(listed(pg_db, r, later) == [] for r in stuck.REASONS)


def test_a_timer_the_sweeper_did_not_fire_is_overdue_after_the_grace(pg_db, family):
    """Given an invitation whose TTL timer is due at T0 + TTL,
    when nobody sweeps and `now` moves past the deadline,
    then it is timer_overdue only once the grace has passed, with the event and since when; a sweep ends it."""
    bid = invite(pg_db, family(pg_db))["id"]
    due = T0 + TTL
    assert reasons(pg_db, bid, due + timedelta(seconds=stuck.GRACE_S - 1)) == []
    late = due + timedelta(seconds=stuck.GRACE_S + 1)
    assert counted(pg_db, late) == {"timer_overdue": 1}
    assert listed(pg_db, "timer_overdue", late) == [bid]
    with pg_db() as s:
        assert stuck.of_binding(s, bid, late) == [
            {"reason": "timer_overdue", "since": due, "platform_id": None, "detail": "expire",
             "parts": {"event": "expire"}}]
    assert timers.sweep(pg_db, now=late) == 1
    assert counted(pg_db, late) == {}


def test_a_pending_binding_with_nothing_scheduled_is_past_its_service_level(pg_db, family):
    """Given an invitation whose timer carried an event this release does not know (written by an older one),
    when the sweeper clears that timer, leaving the binding invited with nothing scheduled,
    then it is past_service_level once it sat unchanged longer than the invited service level."""
    bid = invite(pg_db, family(pg_db))["id"]
    with pg_db.begin() as s:
        s.execute(sa.update(Binding).where(Binding.id == bid).values(
            deadline_event="legacy_reminder", deadline_at=T0 + timedelta(hours=1)))
    assert timers.sweep(pg_db, now=T0 + timedelta(hours=1)) == 1
    level = timedelta(seconds=stuck.SERVICE_LEVEL_S["invited"])
    assert reasons(pg_db, bid, T0 + level - timedelta(seconds=1)) == []
    late = T0 + level + timedelta(seconds=1)
    assert counted(pg_db, late) == {"past_service_level": 1}
    assert listed(pg_db, "past_service_level", late) == [bid]
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, late)
    assert (item["reason"], item["since"]) == ("past_service_level", T0)


def test_a_failed_or_stale_provider_request_is_a_failed_verification_request(pg_db, family):
    """Given two invitations each with an open face-verification attempt, and a registered provider,
    when the provider refused the first session (session_failed) and the second was requested and never opened,
    then the first is stuck at once, the second after REQUEST_STALE_S; an opened session is stuck no more."""
    platforms.set_webhook_url(pg_db, "facecheck", HOOK)
    fam1, fam2 = family(pg_db), family(pg_db)
    opened = T0 + timedelta(seconds=1)
    b1, b2 = invite(pg_db, fam1)["id"], invite(pg_db, fam2)["id"]
    v1 = verification.start_verification(pg_db, b1, person(fam1.beneficiary), now=opened)["verification_id"]
    v2 = verification.start_verification(pg_db, b2, person(fam2.beneficiary), now=opened)["verification_id"]
    assert face_sessions.session_request(pg_db, v1, callback_base="http://gongji.test", now=opened) is not None
    assert face_sessions.session_failed(pg_db, v1, "HTTP 503 from the provider") is True
    assert face_sessions.session_request(pg_db, v2, callback_base="http://gongji.test", now=opened) is not None
    assert counted(pg_db, opened + timedelta(seconds=2)) == {"verification_request_failed": 1}
    stale = opened + timedelta(seconds=stuck.REQUEST_STALE_S + 1)
    assert counted(pg_db, stale) == {"verification_request_failed": 2}
    assert sorted(listed(pg_db, "verification_request_failed", stale)) == sorted([b1, b2])
    with pg_db() as s:
        (item,) = stuck.of_binding(s, b1, stale)
    assert item["since"] == opened and "HTTP 503 from the provider" in item["detail"]
    face_sessions.session_opened(pg_db, v2, "sess_2")
    assert listed(pg_db, "verification_request_failed", stale) == [b1]


def test_a_failed_provider_request_stays_stuck_while_the_worker_asks_again(pg_db, family):
    """Given an attempt whose session request the provider refused (HTTP 503),
    when the worker asks again (the attempt is `requested` once more, a second later),
    then the binding stays stuck with the last error shown, not untagged until REQUEST_STALE_S (an operator
    saw the tag come and go with each retry); once a session opens it is not stuck."""
    platforms.set_webhook_url(pg_db, "facecheck", HOOK)
    fam = family(pg_db)
    opened = T0 + timedelta(seconds=1)
    bid = invite(pg_db, fam)["id"]
    vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=opened)["verification_id"]
    assert face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test", now=opened) is not None
    assert face_sessions.session_failed(pg_db, vid, "HTTP 503 from the provider") is True
    again = opened + timedelta(seconds=2)
    assert face_sessions.session_request(pg_db, vid, callback_base="http://gongji.test", now=again) is not None
    assert counted(pg_db, again) == {"verification_request_failed": 1}
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, again)
    assert item["parts"]["provider"] == "error" and "HTTP 503 from the provider" in item["detail"]
    face_sessions.session_opened(pg_db, vid, "sess_1")
    assert counted(pg_db, again) == {}


def test_a_delivery_failing_three_times_is_failing_and_after_the_last_try_dead(pg_db, family, push):
    """Given an invitation in Jiangsu whose province platform answers 503 to every try,
    when its delivery is retried on schedule,
    then after FAILING_ATTEMPTS tries the binding is delivery_failing (the national platform got it), and
    after the last try delivery_dead, naming the platform and the answer; a replay ends both."""
    bid = invite(pg_db, family(pg_db))["id"]
    now, ready = T0, fan_out_all(pg_db, T0)
    for tries, delay in enumerate((0,) + deliveries.SCHEDULE_S, start=1):
        now += timedelta(seconds=delay)
        answer(pg_db, ready + deliveries.due(pg_db, now=now), now, {"jiangsu": 503})
        ready = []
        if tries == stuck.FAILING_ATTEMPTS - 1:
            assert counted(pg_db, now) == {}
        if tries == stuck.FAILING_ATTEMPTS:
            assert counted(pg_db, now) == {"delivery_failing": 1}
            assert listed(pg_db, "delivery_failing", now) == [bid]
    assert counted(pg_db, now) == {"delivery_dead": 1}
    assert listed(pg_db, "delivery_dead", now) == [bid]
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, now)
    assert (item["reason"], item["platform_id"], item["since"]) == ("delivery_dead", "jiangsu", now)
    assert f"{deliveries.MAX_ATTEMPTS} tries" in item["detail"] and "503" in item["detail"]
    delivery_repair.replay(pg_db, platform_id="jiangsu", now=now)
    assert counted(pg_db, now) == {}


def test_a_failing_delivery_nothing_tries_again_is_stuck_and_retry_tries_it_now(pg_db, family, push):
    """Given an invitation whose Jiangsu delivery failed once (503) and whose next try, due SCHEDULE_S[0]
    later, is never made (no scheduler or worker running),
    when stuck is computed before and after GRACE_S past that due time,
    then it is not stuck before (a try is merely due), and delivery_failing after, its detail saying the
    try was not made; an operator's retry makes it due now and hands it to the worker, which ends it."""
    from workflows import operators, repair
    bid = invite(pg_db, family(pg_db))["id"]
    answer(pg_db, fan_out_all(pg_db, T0), T0, {"jiangsu": 503})
    due = T0 + timedelta(seconds=deliveries.SCHEDULE_S[0])
    assert counted(pg_db, due + timedelta(seconds=stuck.GRACE_S - 1)) == {}
    late = due + timedelta(seconds=stuck.GRACE_S + 1)
    assert counted(pg_db, late) == {"delivery_failing": 1}
    assert listed(pg_db, "delivery_failing", late) == [bid]
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, late)
    assert (item["reason"], item["platform_id"]) == ("delivery_failing", "jiangsu")
    assert "not made" in item["detail"] and "503" in item["detail"]
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    done = repair.retry(pg_db, operator, bid, "the scheduler was down", now=late)
    assert done["reasons"] == ["delivery_failing"] and len(done["deliveries"]) == 1
    assert deliveries.due(pg_db, now=late) == done["deliveries"]
    answer(pg_db, done["deliveries"], late, {})
    assert counted(pg_db, late) == {}


def test_retry_never_makes_due_a_delivery_a_worker_is_sending(pg_db, family, push):
    """Given an invitation whose Jiangsu delivery failed once and is overdue (stuck), and whose national
    delivery, also never tried in time, a worker has just claimed (its try in flight, under a lease),
    when an operator retries the binding,
    then only Jiangsu's is made due: the national one keeps its lease (a second claim finds nothing), so it
    is not sent twice; the retry lists each delivery once."""
    from workflows import operators, repair
    bid = invite(pg_db, family(pg_db))["id"]
    ready = fan_out_all(pg_db, T0)
    with pg_db() as s:
        platform_of = dict(s.execute(sa.select(deliveries.D.c.id, deliveries.D.c.platform_id)
                                     .where(deliveries.D.c.id.in_(ready))).all())
    jiangsu = next(d for d in ready if platform_of[d] == "jiangsu")
    national = next(d for d in ready if platform_of[d] == "national")
    answer(pg_db, [jiangsu], T0, {"jiangsu": 503})
    late = T0 + timedelta(seconds=deliveries.SCHEDULE_S[0] + stuck.GRACE_S + 1)
    assert deliveries.claim(pg_db, national, now=late - timedelta(seconds=10)) is not None  # in flight
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    done = repair.retry(pg_db, operator, bid, "the scheduler was down", now=late)
    assert done["deliveries"] == [jiangsu]
    assert deliveries.claim(pg_db, national, now=late) is None  # the lease holds: no second send


def test_retry_never_makes_due_a_failing_delivery_a_worker_is_trying_again(pg_db, family, push):
    """Given an invitation whose Jiangsu delivery failed FAILING_ATTEMPTS times (stuck: delivery_failing) and
    whose next try a worker has just claimed (in flight, under its lease; its next_attempt_at is in the
    future, as a failing delivery's waiting for its next try is)
    When an operator retries the binding
    Then it is refused as nothing_to_retry: the delivery keeps its lease (a second claim finds nothing), so it
    is not sent twice, and the binding's page shows it being sent; once the try is recorded as failed
    again, a retry makes it due now."""
    from workflows import operators, repair
    from workflows.errors import DomainError
    bid = invite(pg_db, family(pg_db))["id"]
    now, ready = T0, fan_out_all(pg_db, T0)
    for delay in (0,) + deliveries.SCHEDULE_S[:stuck.FAILING_ATTEMPTS - 1]:
        now += timedelta(seconds=delay)
        answer(pg_db, ready + deliveries.due(pg_db, now=now), now, {"jiangsu": 503})
        ready = []
    assert counted(pg_db, now) == {"delivery_failing": 1}
    now += timedelta(seconds=deliveries.SCHEDULE_S[stuck.FAILING_ATTEMPTS - 1])
    [jiangsu] = deliveries.due(pg_db, now=now)
    in_flight = deliveries.claim(pg_db, jiangsu, now=now)
    assert in_flight is not None and counted(pg_db, now) == {"delivery_failing": 1}
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    with pytest.raises(DomainError) as refused:
        repair.retry(pg_db, operator, bid, "江苏平台已恢复", now=now + timedelta(seconds=5))
    assert refused.value.code == "nothing_to_retry"
    assert deliveries.claim(pg_db, jiangsu, now=now + timedelta(seconds=5)) is None  # the lease holds
    from workflows import casefile  # the binding's page says why: a worker is sending it
    shown = casefile.casefile(pg_db, bid, now=now + timedelta(seconds=5))["deliveries"]
    assert [d["sending"] for d in shown if d["id"] == jiangsu] == [True]
    deliveries.record(pg_db, in_flight, status_code=503, error="HTTP 503", duration_ms=5, now=now + timedelta(seconds=6))
    done = repair.retry(pg_db, operator, bid, "江苏平台已恢复", now=now + timedelta(seconds=7))
    assert done["deliveries"] == [jiangsu]
    assert deliveries.claim(pg_db, jiangsu, now=now + timedelta(seconds=7)) is not None


def test_a_late_failure_of_a_try_whose_lease_ran_out_leaves_the_next_claim_alone(pg_db, family, push):
    """Given Jiangsu's delivery of an invitation claimed by worker A (no other claim takes it while A's lease
    holds, even within the scheduler's horizon of its end), whose lease ran out, and claimed again by worker B
    When A's try then fails late (503)
    Then its try is recorded, but the delivery is B's still: leased until B's lease ends, not made due
    (which would let a third worker send it beside B) nor rescheduled; B's success then delivers it."""
    from models import DeliveryAttempt
    invite(pg_db, family(pg_db))
    ready = fan_out_all(pg_db, T0)
    with pg_db() as s:
        [jiangsu] = s.scalars(sa.select(deliveries.D.c.id).where(deliveries.D.c.id.in_(ready),
                                                                 deliveries.D.c.platform_id == "jiangsu")).all()
    a = deliveries.claim(pg_db, jiangsu, now=T0)
    within = T0 + timedelta(seconds=deliveries.LEASE_S - deliveries.GRACE_S / 2)  # in reach of the horizon
    assert deliveries.claim(pg_db, jiangsu, now=within) is None  # A's lease holds to its end
    later = T0 + timedelta(seconds=deliveries.LEASE_S + 1)
    b = deliveries.claim(pg_db, jiangsu, now=later)
    assert (a.attempt_no, b.attempt_no) == (1, 2)
    deliveries.record(pg_db, a, status_code=503, error="HTTP 503", duration_ms=5, now=later + timedelta(seconds=1))
    with pg_db() as s:
        row = s.execute(sa.select(deliveries.D).where(deliveries.D.c.id == jiangsu)).mappings().one()
        tried = s.scalar(sa.select(sa.func.count()).select_from(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id == jiangsu))
    b_lease = later + timedelta(seconds=deliveries.LEASE_S)
    assert (row["status"], row["attempts"], row["leased_until"], row["next_attempt_at"]) == (
        "pending", 2, b_lease, b_lease)
    assert tried == 1 and deliveries.claim(pg_db, jiangsu, now=later + timedelta(seconds=2)) is None
    deliveries.record(pg_db, b, status_code=200, error=None, duration_ms=5, now=later + timedelta(seconds=3))
    with pg_db() as s:
        assert s.scalar(sa.select(deliveries.D.c.status).where(deliveries.D.c.id == jiangsu)) == "delivered"


def test_a_retry_that_replays_a_dead_delivery_held_behind_another_is_done(pg_db, family, push):
    """Given Jiangsu's deliveries of an invitation (v1) and its verification request (v2), v1 still pending
    (not acknowledged) and v2 dead (made so by hand: the order of real tries never leaves it so)
    When an operator retries the binding (delivery_dead)
    Then it is done: v2 is pending again, held behind v1 (nothing to send now), not refused as
    nothing_to_retry with the replay rolled back."""
    from workflows import operators, repair
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
    fan_out_all(pg_db, T0 + timedelta(seconds=2))
    D = deliveries.D
    with pg_db.begin() as s:
        mine = dict(s.execute(sa.select(D.c.binding_version, D.c.id).where(D.c.platform_id == "jiangsu",
                                                                           D.c.binding_id == bid)).all())
        s.execute(sa.update(D).where(D.c.id == mine[2]).values(status="dead", dead_at=T0 + timedelta(minutes=1),
                                                              next_attempt_at=None, attempts=9))
    now = T0 + timedelta(minutes=2)
    assert "delivery_dead" in reasons(pg_db, bid, now)
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    done = repair.retry(pg_db, operator, bid, "江苏平台已恢复", now=now)
    assert "delivery_dead" in done["reasons"] and "delivery_dead" not in done.get("idle", [])
    with pg_db() as s:
        v2 = s.execute(sa.select(D.c.status, D.c.next_attempt_at).where(D.c.id == mine[2])).one()
    assert tuple(v2) == ("pending", None)  # replayed, held behind v1


def test_a_platform_that_never_got_the_latest_version_is_behind_until_reconciled(pg_db, family, push):
    """Given an accepted Jiangsu binding whose events were fanned out while Jiangsu had no webhook URL (the
    national platform acknowledged version 4), and Jiangsu registered afterwards,
    when stuck is computed before and after the change settled,
    then it is sync_behind for Jiangsu only after SETTLE_S; once reconciliation queued the latest version it is
    not (a delivery is on its way), and older than WINDOW_S it is not counted either."""
    platforms.set_webhook_url(pg_db, "jiangsu", None)
    bid = accepted(pg_db, family(pg_db))
    changed = T0 + timedelta(seconds=3)
    answer(pg_db, fan_out_all(pg_db, T0 + timedelta(seconds=4)), T0 + timedelta(seconds=4), {})
    platforms.set_webhook_url(pg_db, "jiangsu", HOOK)
    assert counted(pg_db, changed + timedelta(seconds=stuck.SETTLE_S - 1)) == {}
    settled = changed + timedelta(seconds=stuck.SETTLE_S + 1)
    assert counted(pg_db, settled) == {"sync_behind": 1}
    assert listed(pg_db, "sync_behind", settled) == [bid]
    with pg_db() as s:
        assert stuck.of_binding(s, bid, settled) == [
            {"reason": "sync_behind", "since": changed, "platform_id": "jiangsu", "detail": "acknowledged v0 of v4",
             "parts": {"acked": 0, "version": 4}}]
    assert counted(pg_db, changed + timedelta(seconds=stuck.WINDOW_S + 1)) == {}
    assert reconcile.reconcile(pg_db, now=settled) != []
    assert counted(pg_db, settled) == {}


def test_an_outbox_event_a_worker_failed_on_is_a_worker_error_without_the_id_number(pg_db, family):
    """Given an invitation whose outbox event a worker handled and failed on, the error naming the ID number,
    when stuck is computed,
    then it is worker_error with the error masked (never the ID number); a later success ends it."""
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    with pg_db() as s:
        event = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid))

    def fails(_row):
        raise RuntimeError(f"registry refused {fam.beneficiary}")
    with pytest.raises(RuntimeError):
        run_once(pg_db, OutboxMessage, event, fails)
    assert counted(pg_db, T0) == {"worker_error": 1}
    assert listed(pg_db, "worker_error", T0) == [bid]
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, T0)
    assert item["reason"] == "worker_error" and mask(fam.beneficiary) in item["detail"]
    assert fam.beneficiary not in str(item) and fam.beneficiary_name not in str(item)
    run_once(pg_db, OutboxMessage, event, lambda _row: "recorded")
    assert counted(pg_db, T0) == {}


def test_the_list_tags_each_row_with_its_reasons_and_a_filter_combines_with_state(pg_db, family):
    """Given one overdue invitation and one fresh one,
    when the list is read with and without the stuck filter,
    then the overdue row carries its reason, the filter combines with state, and the counts agree."""
    late_one = invite(pg_db, family(pg_db))["id"]
    fresh = invite(pg_db, family(pg_db), now=T0 + TTL)["id"]
    now = T0 + TTL + timedelta(seconds=stuck.GRACE_S + 1)
    tags = {i["id"]: i["stuck"] for i in finder.find(pg_db, now=now)["items"]}
    assert tags == {late_one: ["timer_overdue"], fresh: []}
    assert listed(pg_db, "timer_overdue", now) == [late_one]
    assert finder.find(pg_db, stuck="timer_overdue", state="accepted", now=now)["items"] == []
    assert finder.count(pg_db, stuck="timer_overdue", now=now) == stuck.counts(pg_db, now)["timer_overdue"] == 1


def test_an_attempt_whose_provider_was_never_asked_is_a_failed_verification_request(pg_db, family):
    """Given an open face-verification attempt whose worker message to ask the provider was lost (nothing
    requested), and so was the scheduler's second ask, when REQUEST_STALE_S have passed, then the binding is
    stuck as verification_request_failed (before that it is not: the request may still be on its way)."""
    platforms.set_webhook_url(pg_db, "facecheck", HOOK)
    fam = family(pg_db)
    opened = T0 + timedelta(seconds=1)
    bid = invite(pg_db, fam)["id"]
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=opened)
    assert counted(pg_db, opened + timedelta(seconds=stuck.REQUEST_STALE_S - 1)) == {}
    # the scheduler's second ask was lost too
    assert len(face_sessions.unasked(pg_db, now=opened + timedelta(seconds=face_sessions.UNASKED_S + 1))) == 1
    stale = opened + timedelta(seconds=stuck.REQUEST_STALE_S + 1)
    assert counted(pg_db, stale) == {"verification_request_failed": 1}
    assert listed(pg_db, "verification_request_failed", stale) == [bid]
    with pg_db() as s:
        (item,) = stuck.of_binding(s, bid, stale)
    assert item["since"] == opened and item["detail"].endswith("provider not asked")


def _behind_with_nothing_to_resend(pg_db, family):
    """A binding sync_behind for Jiangsu (registered after the fan-out) whose latest event Jiangsu was
    nevertheless sent once, delivered (its acknowledged version not raised): re-sending it adds nothing,
    the delivery of that event to Jiangsu exists. Returns (binding id, a time after it settled)."""
    platforms.set_webhook_url(pg_db, "jiangsu", None)
    bid = accepted(pg_db, family(pg_db))
    answer(pg_db, fan_out_all(pg_db, T0 + timedelta(seconds=4)), T0 + timedelta(seconds=4), {})
    platforms.set_webhook_url(pg_db, "jiangsu", HOOK)
    with pg_db.begin() as s:
        latest = s.execute(sa.select(OutboxMessage).where(OutboxMessage.binding_id == bid)
                           .order_by(OutboxMessage.binding_version.desc()).limit(1)).scalar_one()
        s.execute(sa.insert(deliveries.D).values(
            outbox_id=latest.id, platform_id="jiangsu", event_id=f"evt_copy_{latest.id}", topic=latest.topic,
            binding_id=bid, binding_version=latest.binding_version, status="delivered", attempts=1,
            created_at=T0 + timedelta(seconds=5), delivered_at=T0 + timedelta(seconds=5)))
    settled = T0 + timedelta(seconds=stuck.SETTLE_S + 10)
    assert counted(pg_db, settled) == {"sync_behind": 1}
    return bid, settled


def test_a_retry_that_finds_nothing_to_try_again_is_refused_and_writes_nothing(pg_db, family, push):
    """Given a binding stuck only as sync_behind whose latest event Jiangsu already has a delivery of
    When an operator retries it
    Then it is refused as nothing_to_retry (it used to answer done), audited as that refusal, and nothing
    is written: no retry event, the binding still stuck."""
    from models import AuditEntry
    from workflows import operators, repair
    from workflows.errors import DomainError
    bid, settled = _behind_with_nothing_to_resend(pg_db, family)
    with pg_db() as s:
        events = s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    with pytest.raises(DomainError) as refused:
        repair.retry(pg_db, operator, bid, "江苏说没收到", now=settled)
    assert refused.value.code == "nothing_to_retry" and refused.value.status == 409
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == events
        audit = s.execute(sa.select(AuditEntry.action, AuditEntry.outcome, AuditEntry.binding_id)
                          .order_by(AuditEntry.id.desc()).limit(1)).one()
    assert tuple(audit) == ("retry", "nothing_to_retry", bid)
    assert counted(pg_db, settled) == {"sync_behind": 1}


def test_a_retry_that_repairs_one_reason_and_not_another_says_which(pg_db, family, push):
    """Given that binding also stuck as worker_error (a worker failed on an outbox event of it)
    When an operator retries it, Then it is done, the worker_error repaired (the event handed to the worker
    again) and sync_behind named as the reason nothing was left to try again for."""
    from workflows import operators, repair
    bid, settled = _behind_with_nothing_to_resend(pg_db, family)
    with pg_db() as s:
        event = s.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid).limit(1))
    with pg_db.begin() as s:
        s.execute(sa.update(OutboxMessage).where(OutboxMessage.id == event)
                  .values(processed_at=None, last_error="registry timed out", attempts=1))
    assert counted(pg_db, settled) == {"sync_behind": 1, "worker_error": 1}
    operator = operators.add(pg_db, "operator1", "correct horse battery", "operator")
    done = repair.retry(pg_db, operator, bid, "江苏说没收到", now=settled)
    assert done["reasons"] == ["sync_behind", "worker_error"] and done["idle"] == ["sync_behind"]
    assert "deliveries" not in done
