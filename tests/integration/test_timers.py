"""Durable timers on PostgreSQL: invitation TTL, verification timeouts, attempt limits, concurrent sweepers.

Time never passes for real: every command and sweep gets an explicit `now` (support.T0 + an offset)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Binding, OutboxMessage, Transition, VerificationAttempt
from workflows import policy, timers, verification
from workflows.errors import DomainError

from .support import (T0, TTL, VERIFY_TIMEOUT, assert_history_consistent, binding, history, invite, person, race,
                      table_snapshot)

pytestmark = pytest.mark.pg


def _timeout_the_open_attempt(db, bid, opened_at) -> None:
    assert timers.sweep(db, now=opened_at + VERIFY_TIMEOUT) == 1


def _fail_by_verifier(db, bid, vid, at) -> None:
    assert verification.record_verification_result(db, verification_id=vid, binding_id=bid, result="failed",
                                                   verifier_id="facecheck", reason="face_mismatch", now=at) == "failed"


def _many_invitations(db, family, n: int, *, per_grantor: int = 10):
    """n invitations from n/per_grantor grantors, created one second apart from T0 (distinct deadlines)."""
    ids = []
    grantor = None
    for i in range(n):
        if i % per_grantor == 0:
            fam = family(db, now=T0)
            grantor = (fam.grantor, fam.grantor_name)
        else:
            fam = family(db, grantor=grantor, now=T0)
        ids.append(invite(db, fam, now=T0 + timedelta(seconds=i))["id"])
    return ids


def test_two_sweepers_fire_each_due_timer_exactly_once(pg_db, family):
    """Given 300 invitations whose TTL has passed,
    when two sweepers (threads, small batches) sweep at the same moment,
    then 300 timers fired in total, every binding has exactly one expire row and is expired, and a later
    sweep finds nothing due."""
    n = 300
    ids = _many_invitations(pg_db, family, n)
    after = T0 + TTL + timedelta(seconds=n)

    outcomes = race(lambda: timers.sweep_all(pg_db, now=after, batch=25),
                    lambda: timers.sweep_all(pg_db, now=after, batch=25))

    assert sum(o.value for o in outcomes) == n
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Transition).where(Transition.event == "expire")) == n
        twice = s.execute(sa.select(Transition.binding_id).where(Transition.event == "expire")
                          .group_by(Transition.binding_id).having(sa.func.count() > 1)).all()
        assert twice == []
        states = dict(s.execute(sa.select(Binding.state, sa.func.count()).group_by(Binding.state)).all())
        assert states == {"expired": n}
        assert s.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.topic == "binding.expired")) == n
        assert s.scalar(sa.select(sa.func.count()).select_from(Binding)
                        .where(Binding.deadline_at.is_not(None))) == 0
    for bid in ids[:: n // 10]:
        assert [t.event for t in assert_history_consistent(pg_db, bid)] == ["invite", "expire"]
    assert timers.sweep_all(pg_db, now=after) == 0


def test_invitation_ttl_expires_the_binding_as_the_system_timer(pg_db, family):
    """Given an invitation created at T0 under Jiangsu's seeded 7-day TTL,
    when the sweeper runs one second before and then exactly at T0 + TTL,
    then nothing fires before; at the deadline the binding is expired by actor system/timer, with the
    reason invitation_ttl and a binding.expired outbox event."""
    with pg_db() as s:
        assert timedelta(seconds=policy.in_force(s, "320100", T0).invitation_ttl_s) == TTL
    bid = invite(pg_db, family(pg_db, now=T0))["id"]
    assert (binding(pg_db, bid).deadline_at, binding(pg_db, bid).deadline_event) == (T0 + TTL, "expire")

    assert timers.sweep(pg_db, now=T0 + TTL - timedelta(seconds=1)) == 0
    assert binding(pg_db, bid).state == "invited"
    assert timers.sweep(pg_db, now=T0 + TTL) == 1

    row = binding(pg_db, bid)
    assert (row.state, row.end_event, row.ended_at, row.deadline_at) == ("expired", "expire", T0 + TTL, None)
    last = assert_history_consistent(pg_db, bid)[-1]
    assert (last.event, last.from_state, last.to_state) == ("expire", "invited", "expired")
    assert (last.actor_kind, last.actor_id, last.reason) == ("system", "timer", "invitation_ttl")
    with pg_db() as s:
        topics = s.scalars(sa.select(OutboxMessage.topic).where(OutboxMessage.binding_id == bid)
                           .order_by(OutboxMessage.id)).all()
    assert topics == ["binding.invited", "binding.expired"]
    assert timers.sweep(pg_db, now=T0 + TTL + timedelta(days=30)) == 0  # fired once, never again


def test_face_verified_invitation_expires_too(pg_db, family):
    """Given a binding face_verified but never accepted,
    when the sweeper runs at the invitation's TTL,
    then it expires (the TTL covers the whole invitation, not only the verification)."""
    from .support import face_verified
    bid = face_verified(pg_db, family(pg_db, now=T0))
    assert binding(pg_db, bid).deadline_event == "expire"

    assert timers.sweep(pg_db, now=T0 + TTL) == 1

    rows = assert_history_consistent(pg_db, bid)
    assert (rows[-1].event, rows[-1].from_state, rows[-1].to_state) == ("expire", "face_verified", "expired")


def test_verification_timeout_counts_as_a_failed_attempt(pg_db, family):
    """Given an invitation and a face-verification attempt opened a minute later,
    when the sweeper runs at the attempt's deadline (verification_timeout_s = 600),
    then the attempt is timed_out, the binding stays invited with failed_verifications 1, the history
    records verification_failed by system/timer, and the next deadline is the invitation expiry again."""
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    opened = T0 + timedelta(minutes=1)
    started = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=opened)
    row = binding(pg_db, bid)
    assert (row.deadline_at, row.deadline_event) == (opened + VERIFY_TIMEOUT, "verification_timeout")

    assert timers.sweep(pg_db, now=opened + VERIFY_TIMEOUT - timedelta(seconds=1)) == 0
    assert timers.sweep(pg_db, now=opened + VERIFY_TIMEOUT) == 1

    row = binding(pg_db, bid)
    assert (row.state, row.failed_verifications) == ("invited", 1)
    assert (row.deadline_at, row.deadline_event) == (T0 + TTL, "expire")
    with pg_db() as s:
        attempt = s.get(VerificationAttempt, started["verification_id"])
        topics = s.scalars(sa.select(OutboxMessage.topic).where(OutboxMessage.binding_id == bid)
                           .order_by(OutboxMessage.id)).all()
    assert (attempt.status, attempt.completed_at) == ("timed_out", opened + VERIFY_TIMEOUT)
    last = assert_history_consistent(pg_db, bid)[-1]
    assert (last.event, last.from_state, last.to_state) == ("verification_failed", "invited", "invited")
    assert (last.actor_kind, last.actor_id, last.reason) == ("system", "timer", "verification_timeout")
    assert topics[-1] == "binding.verification_attempt_failed"


@pytest.mark.parametrize("failures", [("verifier", "timeout", "verifier"), ("timeout", "timeout", "verifier"),
                                      ("verifier", "verifier", "timeout")])
def test_max_attempts_mixing_failures_and_timeouts_ends_in_verification_failed(pg_db, family, failures):
    """Given the seeded limit of 3 verification attempts,
    when three attempts fail, each either by the verifier's 'failed' result or by a timeout,
    then after the first two the binding is still invited; the third ends it in verification_failed with
    no timer left, attempts numbered 1..3, and a binding.verification_failed outbox event."""
    with pg_db() as s:
        assert policy.in_force(s, "320100", T0).max_verification_attempts == len(failures) == 3
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    at = T0
    for i, how in enumerate(failures, start=1):
        at += timedelta(hours=1)
        vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=at)["verification_id"]
        if how == "verifier":
            _fail_by_verifier(pg_db, bid, vid, at + timedelta(seconds=30))
        else:
            _timeout_the_open_attempt(pg_db, bid, at)
        row = binding(pg_db, bid)
        assert row.failed_verifications == i
        assert row.state == ("invited" if i < 3 else "verification_failed")

    assert (row.deadline_at, row.deadline_event, row.end_event) == (None, None, "verification_failed")
    rows = assert_history_consistent(pg_db, bid)
    assert [t.event for t in rows] == ["invite"] + ["start_verification", "verification_failed"] * 3
    with pg_db() as s:
        attempts = s.execute(sa.select(VerificationAttempt.attempt_no, VerificationAttempt.status)
                             .where(VerificationAttempt.binding_id == bid)
                             .order_by(VerificationAttempt.attempt_no)).all()
        topics = s.scalars(sa.select(OutboxMessage.topic).where(OutboxMessage.binding_id == bid)
                           .order_by(OutboxMessage.id)).all()
    assert attempts == [(i, "failed" if how == "verifier" else "timed_out") for i, how in enumerate(failures, 1)]
    assert topics[-1] == "binding.verification_failed"
    assert topics.count("binding.verification_attempt_failed") == 2
    assert timers.sweep(pg_db, now=at + TTL) == 0


def _overdue_attempt(db, family) -> str:
    """An invitation (T0) with a verification attempt opened a day later: two timers, 10 min and 7 days."""
    fam = family(db, now=T0)
    bid = invite(db, fam)["id"]
    verification.start_verification(db, bid, person(fam.beneficiary), now=T0 + timedelta(days=1))
    return bid


def test_catching_up_after_downtime_fires_overdue_timers_in_order(pg_db, family):
    """Given an invitation with an open verification attempt, and a sweeper that was down for a month,
    when the sweeper catches up long after both the attempt's deadline and the TTL (sweeping until a
    sweep fires nothing),
    then the attempt times out first, then the invitation expires: each fired once, in deadline order."""
    bid = _overdue_attempt(pg_db, family)
    later = T0 + timedelta(days=30)

    fired = [timers.sweep(pg_db, now=later) for _ in range(3)]

    assert fired == [1, 1, 0]
    rows = assert_history_consistent(pg_db, bid)
    assert [t.event for t in rows] == ["invite", "start_verification", "verification_failed", "expire"]
    assert binding(pg_db, bid).state == "expired"


def test_sweep_all_leaves_nothing_due(pg_db, family):
    """Given an invitation with an open verification attempt, both deadlines long past,
    when the scheduler's sweep_all runs once,
    then nothing is due afterwards: the binding is expired."""
    bid = _overdue_attempt(pg_db, family)
    later = T0 + timedelta(days=30)

    timers.sweep_all(pg_db, now=later)

    assert binding(pg_db, bid).state == "expired"
    assert timers.sweep(pg_db, now=later) == 0


def test_one_inconsistent_timer_does_not_stop_the_others(pg_db, family):
    """Given a due invitation and, due earlier, a binding whose stored timer no longer fits its state
    (an accepted guardian binding carrying an 'expire' deadline, e.g. after a manual data repair),
    when the sweeper runs,
    then the invitation still expires and the inconsistent binding is left as it is (not expired)."""
    from datetime import date
    kid = family(pg_db, beneficiary_born=date(2016, 5, 5), now=T0)
    odd = invite(pg_db, kid, relationship="child")["id"]
    normal = invite(pg_db, family(pg_db, now=T0))["id"]
    with pg_db.begin() as s:
        s.execute(sa.update(Binding).where(Binding.id == odd).values(deadline_at=T0, deadline_event="expire")
                  .execution_options(synchronize_session=False))

    timers.sweep(pg_db, now=T0 + TTL)

    assert binding(pg_db, normal).state == "expired"
    assert binding(pg_db, odd).state == "accepted"
    assert [t.event for t in history(pg_db, odd)] == ["invite"]


def test_late_verifier_result_for_a_timed_out_attempt_changes_nothing(pg_db, family):
    """Given an attempt that the sweeper timed out,
    when the verifier's 'passed' result for that attempt arrives afterwards,
    then it is answered ignored_timed_out and no table changes (state, version, attempts, history, outbox)."""
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    _timeout_the_open_attempt(pg_db, bid, T0)
    before = table_snapshot(pg_db)

    outcome = verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid,
                                                      result="passed", verifier_id="facecheck",
                                                      now=T0 + VERIFY_TIMEOUT + timedelta(minutes=1))

    assert outcome == "ignored_timed_out"
    assert table_snapshot(pg_db) == before
    assert binding(pg_db, bid).state == "invited"


def test_a_result_arriving_after_the_deadline_times_the_attempt_out_though_the_sweeper_was_late(pg_db, family):
    """Given an open attempt whose deadline has passed and a sweeper that has not run yet
    When the verifier's 'passed' arrives one second after the deadline (and, on a second binding, exactly at it)
    Then the attempt is timed out as the sweeper would have (ignored_timed_out, verification_failed by the
    system timer, failed_verifications 1), not passed: the clock decides, not which comes first."""
    outcomes = []
    for late in (timedelta(seconds=1), timedelta(0)):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]
        vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
        outcomes.append(verification.record_verification_result(
            pg_db, verification_id=vid, binding_id=bid, result="passed", verifier_id="facecheck",
            now=T0 + VERIFY_TIMEOUT + late))
        row = binding(pg_db, bid)
        assert (row.state, row.failed_verifications) == ("invited", 1)
        last = assert_history_consistent(pg_db, bid)[-1]
        assert (last.event, last.actor_kind, last.actor_id, last.reason) == (
            "verification_failed", "system", "timer", "verification_timeout")
        with pg_db() as s:
            assert s.get(VerificationAttempt, vid).status == "timed_out"
        assert timers.sweep(pg_db, now=T0 + VERIFY_TIMEOUT + late) == 0  # nothing left for the sweeper
    assert outcomes == ["ignored_timed_out", "ignored_timed_out"]
    # a second before the deadline the same result passes
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    assert verification.record_verification_result(
        pg_db, verification_id=vid, binding_id=bid, result="passed", verifier_id="facecheck",
        now=T0 + VERIFY_TIMEOUT - timedelta(seconds=1)) == "passed"


def test_asking_again_while_the_open_attempt_is_overdue_times_it_out_and_opens_the_next(pg_db, family):
    """Given an open attempt past its deadline, the sweeper not run
    When the beneficiary starts verification again
    Then the overdue attempt is timed out (by the system timer) and attempt 2 is opened with a fresh deadline;
    at the region's last attempt the same request is 409 illegal_transition and the binding verification_failed."""
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    first = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    later = T0 + VERIFY_TIMEOUT + timedelta(minutes=1)
    second = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=later)
    assert second["verification_id"] != first["verification_id"] and second["attempt"]["attempt_no"] == 2
    assert binding(pg_db, bid).deadline_at == later + VERIFY_TIMEOUT
    events = [(t.event, t.actor_kind) for t in assert_history_consistent(pg_db, bid)]
    assert events[-2:] == [("verification_failed", "system"), ("start_verification", "person")]
    with pg_db() as s:
        assert s.get(VerificationAttempt, first["verification_id"]).status == "timed_out"
    at = later
    for _ in range(10):
        at += VERIFY_TIMEOUT
        try:
            verification.start_verification(pg_db, bid, person(fam.beneficiary), now=at)
        except DomainError as err:
            assert err.code == "illegal_transition"
            break
    else:
        pytest.fail("the attempts never ran out")
    with pg_db() as s:
        statuses = s.scalars(sa.select(VerificationAttempt.status).where(VerificationAttempt.binding_id == bid)).all()
    assert set(statuses) == {"timed_out"} and binding(pg_db, bid).failed_verifications == len(statuses)
    assert binding(pg_db, bid).state == "verification_failed"


def test_sweeping_is_due_first(pg_db, family):
    """Given five invitations created in shuffled order with deadlines one hour apart,
    when everything is due and the sweeper runs with a batch of 2, then 1, then the rest,
    then the earliest deadlines fire first, in deadline order."""
    offsets = [3, 0, 4, 1, 2]  # hours after T0, creation order != deadline order
    by_offset = {}
    for h in offsets:
        by_offset[h] = invite(pg_db, family(pg_db, now=T0), now=T0 + timedelta(hours=h))["id"]
    everything_due = T0 + TTL + timedelta(hours=10)

    def expired() -> set[str]:
        with pg_db() as s:
            return set(s.scalars(sa.select(Binding.id).where(Binding.state == "expired")))

    assert timers.sweep(pg_db, now=everything_due, batch=2) == 2
    assert expired() == {by_offset[0], by_offset[1]}
    assert timers.sweep(pg_db, now=everything_due, batch=1) == 1
    assert expired() == {by_offset[0], by_offset[1], by_offset[2]}
    assert timers.sweep_all(pg_db, now=everything_due, batch=1) == 2
    assert expired() == set(by_offset.values())


def test_sweeper_skips_a_binding_locked_by_a_running_command(pg_db, family):
    """Given two due invitations, one of them row-locked by another open transaction (a command in flight),
    when the sweeper runs,
    then it does not wait for the lock: it fires the other one and leaves the locked one for a later
    sweep, which fires it once the lock is released."""
    first = invite(pg_db, family(pg_db, now=T0))["id"]
    second = invite(pg_db, family(pg_db, now=T0), now=T0 + timedelta(seconds=1))["id"]
    after = T0 + TTL + timedelta(minutes=1)
    result = {}

    with pg_db() as holder:
        with holder.begin():
            holder.execute(sa.select(Binding.id).where(Binding.id == first).with_for_update())
            sweeper = threading.Thread(target=lambda: result.update(fired=timers.sweep(pg_db, now=after)))
            sweeper.start()
            sweeper.join(60)  # a hang guard only: without SKIP LOCKED the sweeper would wait on the lock
            assert not sweeper.is_alive(), "the sweeper waited on a locked row"
    assert result["fired"] == 1
    assert (binding(pg_db, first).state, binding(pg_db, second).state) == ("invited", "expired")
    assert timers.sweep(pg_db, now=after) == 1
    assert binding(pg_db, first).state == "expired"
    assert [t.event for t in history(pg_db, first)] == ["invite", "expire"]


def test_timers_on_sqlite(sqlite_db, family):
    """Given the embedded SQLite database with an invitation and another one with an open attempt,
    when the sweeper runs past both deadlines,
    then the attempt times out (still invited) and the other invitation expires, exactly as on PostgreSQL."""
    fam = family(sqlite_db, now=T0)
    expiring = invite(sqlite_db, fam)["id"]
    fam2 = family(sqlite_db, now=T0)
    verifying = invite(sqlite_db, fam2, now=T0 + timedelta(days=1))["id"]
    verification.start_verification(sqlite_db, verifying, person(fam2.beneficiary), now=T0 + timedelta(days=7))

    assert timers.sweep_all(sqlite_db, now=T0 + TTL + timedelta(minutes=30)) == 2

    assert binding(sqlite_db, expiring).state == "expired"
    row = binding(sqlite_db, verifying)
    assert (row.state, row.failed_verifications, row.deadline_event) == ("invited", 1, "expire")
    assert row.deadline_at == T0 + timedelta(days=1) + TTL
