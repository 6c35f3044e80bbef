"""Concurrency on PostgreSQL: real threads, released together by a barrier, committing for real.

Each race is repeated ROUNDS times on fresh bindings. Who wins is never asserted (timing decides that);
what is asserted holds for every interleaving: exactly the allowed outcomes, the loser refused with a
409-class or rule code, the history one row per version (seq 1..version), the final state the winner's."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from models import ACTIVE_STATES, Binding, VerificationAttempt
from workflows import commands, policy, timers, verification

from .support import (CONFLICT_CODES, T0, TTL, VERIFY_TIMEOUT, accepted, assert_history_consistent, binding,
                      face_verified, invite, person, race)

pytestmark = pytest.mark.pg

ROUNDS = 20


def _one_winner(outcomes, loser_codes=CONFLICT_CODES):
    winners = [i for i, o in enumerate(outcomes) if o.ok]
    assert len(winners) == 1, f"exactly one command must win, got {[o.code or 'ok' for o in outcomes]}"
    loser = outcomes[1 - winners[0]]
    assert loser.code in loser_codes, f"the loser must be refused with {loser_codes}, got {loser.error!r}"
    return winners[0]


def test_accept_and_decline_race_on_a_face_verified_binding(pg_db, family):
    """Given a face_verified binding,
    when the beneficiary's accept and decline run at the same moment,
    then exactly one wins, the other is refused (illegal_transition/conflict), the final state is the
    winner's and the history holds exactly one row per version."""
    later = T0 + timedelta(minutes=5)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = face_verified(pg_db, fam)
        who = person(fam.beneficiary)

        outcomes = race(lambda: commands.accept(pg_db, bid, who, now=later),
                        lambda: commands.decline(pg_db, bid, who, now=later))

        won = _one_winner(outcomes)
        expected_state, expected_event = [("accepted", "accept"), ("declined", "decline")][won]
        assert outcomes[won].value["state"] == expected_state
        row = binding(pg_db, bid)
        assert (row.state, row.version) == (expected_state, 4)
        rows = assert_history_consistent(pg_db, bid)
        assert [t.event for t in rows] == ["invite", "start_verification", "verification_passed", expected_event]


def test_grantor_and_beneficiary_unbind_race(pg_db, family):
    """Given an accepted binding,
    when the grantor and the beneficiary both unbind at the same moment,
    then exactly one unbind is recorded (by the winner), the other is refused, the binding is unbound."""
    later = T0 + timedelta(hours=1)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = accepted(pg_db, fam)

        outcomes = race(lambda: commands.unbind(pg_db, bid, person(fam.grantor), now=later),
                        lambda: commands.unbind(pg_db, bid, person(fam.beneficiary), now=later))

        won = _one_winner(outcomes)
        row = binding(pg_db, bid)
        assert (row.state, row.version) == ("unbound", 5)
        rows = assert_history_consistent(pg_db, bid)
        assert [t.event for t in rows].count("unbind") == 1
        assert rows[-1].actor_kind == "person"
        assert rows[-1].actor_id == (row.grantor_id, row.beneficiary_id)[won]


def test_cancel_and_decline_race_on_an_invitation(pg_db, family):
    """Given an invited binding,
    when the grantor cancels while the beneficiary declines,
    then exactly one terminal event is recorded and the state is the winner's."""
    later = T0 + timedelta(minutes=1)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]

        outcomes = race(lambda: commands.cancel(pg_db, bid, person(fam.grantor), now=later),
                        lambda: commands.decline(pg_db, bid, person(fam.beneficiary), now=later))

        won = _one_winner(outcomes)
        row = binding(pg_db, bid)
        assert (row.state, row.version) == (("cancelled", "declined")[won], 2)
        assert [t.event for t in assert_history_consistent(pg_db, bid)] == ["invite", ("cancel", "decline")[won]]


def test_cancel_and_start_verification_race(pg_db, family):
    """Given an invited binding,
    when the grantor cancels while the beneficiary opens a face verification,
    then the result is one of the two serial orders: cancel first (start_verification refused) or
    start_verification then cancel (both succeed, still invited in between). The binding ends cancelled,
    its history has one row per version and no timer is left on it."""
    later = T0 + timedelta(minutes=1)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]

        cancel, start = race(lambda: commands.cancel(pg_db, bid, person(fam.grantor), now=later),
                             lambda: verification.start_verification(pg_db, bid, person(fam.beneficiary),
                                                                     now=later))

        assert cancel.ok, f"cancel is legal in both orders, got {cancel.error!r}"
        events = [t.event for t in assert_history_consistent(pg_db, bid)]
        if start.ok:
            assert events == ["invite", "start_verification", "cancel"]
        else:
            assert start.code in CONFLICT_CODES
            assert events == ["invite", "cancel"]
        row = binding(pg_db, bid)
        assert row.state == "cancelled" and row.deadline_at is None


def test_invitation_ttl_timer_and_cancel_race(pg_db, family):
    """Given an invitation past its TTL that the sweeper has not fired yet,
    when a sweeper and the grantor's cancel run at the same moment,
    then the cancel is refused (an expired invitation takes no command), and the binding ends expired —
    by this sweep, or by the next one when this sweep skipped the row the cancel held locked — with one
    history row per transition."""
    after = T0 + TTL + timedelta(seconds=1)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]

        sweep, cancel = race(lambda: timers.sweep(pg_db, now=after),
                             lambda: commands.cancel(pg_db, bid, person(fam.grantor), now=after))

        assert sweep.ok and sweep.value in (0, 1)
        assert cancel.code in CONFLICT_CODES
        assert timers.sweep(pg_db, now=after) == 1 - sweep.value  # the skipped row fires now
        row = binding(pg_db, bid)
        events = [t.event for t in assert_history_consistent(pg_db, bid)]
        assert row.state == "expired" and events == ["invite", "expire"]
        assert timers.sweep(pg_db, now=after) == 0  # nothing left to fire


def test_invitation_ttl_timer_and_start_verification_race(pg_db, family):
    """Given an invitation past its TTL that the sweeper has not fired yet,
    when a sweeper and the beneficiary's start_verification run at the same moment,
    then every interleaving is serial and consistent, the verification attempt does not extend the
    invitation, and after one more sweep the binding is expired with exactly one expire row."""
    after = T0 + TTL + timedelta(seconds=1)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]

        sweep, start = race(lambda: timers.sweep(pg_db, now=after),
                            lambda: verification.start_verification(pg_db, bid, person(fam.beneficiary),
                                                                    now=after))

        assert sweep.ok and (start.ok or start.code in CONFLICT_CODES)
        assert_history_consistent(pg_db, bid)
        timers.sweep(pg_db, now=after)
        row = binding(pg_db, bid)
        events = [t.event for t in assert_history_consistent(pg_db, bid)]
        assert row.state == "expired"
        assert events == (["invite", "start_verification", "expire"] if start.ok else ["invite", "expire"])


def test_verification_timeout_timer_and_verifier_result_race(pg_db, family):
    """Given an open verification attempt past its timeout,
    when the sweeper and the verifier's 'passed' result (sent after the deadline) arrive together,
    then the timeout wins whichever runs first, exactly once: the attempt is timed_out, failed_verifications
    1, still invited, one verification_failed in history, the result answered ignored_timed_out; the
    sweeper fired it (1) or found it already timed out by the result's own command (0).
    With the result sent a second before the deadline, either may win: passed (the sweeper then finds
    nothing) or timed out (the sweeper first), never both."""
    for n in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]
        vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
        late = T0 + VERIFY_TIMEOUT + timedelta(seconds=1)
        sent = late if n % 2 == 0 else T0 + VERIFY_TIMEOUT - timedelta(seconds=1)

        sweep, result = race(
            lambda: timers.sweep(pg_db, now=late),
            lambda: verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid,
                                                            result="passed", verifier_id="facecheck", now=sent))

        assert sweep.ok and result.ok
        row = binding(pg_db, bid)
        events = [t.event for t in assert_history_consistent(pg_db, bid)]
        with pg_db() as s:
            attempt = s.get(VerificationAttempt, vid)
        if result.value == "passed":
            assert sent < late and sweep.value == 0
            assert row.state == "face_verified" and attempt.status == "passed"
            assert events == ["invite", "start_verification", "verification_passed"]
            assert row.failed_verifications == 0 and row.deadline_event == "expire"
        else:
            assert result.value == "ignored_timed_out" and sweep.value in (0, 1)
            assert row.state == "invited" and attempt.status == "timed_out" and row.failed_verifications == 1
            assert events == ["invite", "start_verification", "verification_failed"]
            assert events.count("verification_failed") == 1 and timers.sweep(pg_db, now=late) == 0


def test_two_identical_invitations_race(pg_db, family):
    """Given an eligible grantor and beneficiary with no binding,
    when the same invitation is sent twice at the same moment,
    then exactly one binding exists and the other invitation is refused with duplicate_binding."""
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)

        outcomes = race(lambda: invite(pg_db, fam), lambda: invite(pg_db, fam))

        won = _one_winner(outcomes, loser_codes={"duplicate_binding"})
        made = outcomes[won].value
        with pg_db() as s:
            ids = s.scalars(sa.select(Binding.id).where(Binding.grantor_id == made["grantor"]["id"],
                                                        Binding.beneficiary_id == made["beneficiary"]["id"])).all()
        assert ids == [made["id"]]
        assert outcomes[1 - won].error.extra.get("existing_binding_id") in (None, made["id"])
        assert len(assert_history_consistent(pg_db, made["id"])) == 1


def _active_as_grantor(db, person_id: str) -> int:
    with db() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Binding).where(
            Binding.grantor_id == person_id, Binding.state.in_(ACTIVE_STATES)))


def test_member_cap_under_concurrency(pg_db, family):
    """Given the seeded Jiangsu policy (a grantor may have at most 10 family members) and a grantor with
    cap-1 live bindings made outside the frequency window,
    when the grantor invites two different new beneficiaries at the same moment,
    then exactly one invitation succeeds and the other is refused with member_limit."""
    with pg_db() as s:
        pol = policy.in_force(s, "320100", T0)
    assert pol.max_beneficiaries_per_grantor == 10
    cap = pol.max_beneficiaries_per_grantor
    earlier = T0 - timedelta(seconds=pol.frequency_window_s) - timedelta(hours=1)
    for _ in range(ROUNDS):
        first = family(pg_db, now=earlier)
        grantor = (first.grantor, first.grantor_name)
        for i in range(cap - 1):
            fam = first if i == 0 else family(pg_db, grantor=grantor, now=earlier)
            invite(pg_db, fam, now=earlier)
        one, two = family(pg_db, grantor=grantor, now=T0), family(pg_db, grantor=grantor, now=T0)

        outcomes = race(lambda: invite(pg_db, one), lambda: invite(pg_db, two))

        won = _one_winner(outcomes, loser_codes={"member_limit"})
        assert _active_as_grantor(pg_db, outcomes[won].value["grantor"]["id"]) == cap


def test_grantors_per_beneficiary_cap_under_concurrency(pg_db, family, new_person):
    """Given the seeded Jiangsu policy (at most 3 grantors per beneficiary) and a beneficiary with cap-1
    live bindings,
    when two more grantors invite that beneficiary at the same moment,
    then exactly one succeeds and the other is refused with member_limit."""
    with pg_db() as s:
        pol = policy.in_force(s, "320100", T0)
    assert pol.max_grantors_per_beneficiary == 3
    cap = pol.max_grantors_per_beneficiary
    earlier = T0 - timedelta(seconds=pol.frequency_window_s) - timedelta(hours=1)
    for _ in range(ROUNDS):
        base = family(pg_db, now=earlier)
        beneficiary = (base.beneficiary, base.beneficiary_name)
        for i in range(cap - 1):
            g = base.grantor if i == 0 else new_person(pg_db, insurance_type="employee", born=date(1960, 1, 1),
                                                   now=earlier)[0]
            invite(pg_db, base._replace(grantor=g), relationship="sibling", now=earlier)
        others = [base._replace(grantor=new_person(pg_db, insurance_type="employee", born=date(1960, 1, 1), now=T0)[0])
                  for _ in range(2)]
        assert beneficiary == (others[0].beneficiary, others[0].beneficiary_name)

        outcomes = race(lambda: invite(pg_db, others[0], relationship="sibling"),
                        lambda: invite(pg_db, others[1], relationship="sibling"))

        won = _one_winner(outcomes, loser_codes={"member_limit"})
        with pg_db() as s:
            live = s.scalar(sa.select(sa.func.count()).select_from(Binding).where(
                Binding.beneficiary_id == outcomes[won].value["beneficiary"]["id"],
                Binding.state.in_(ACTIVE_STATES)))
        assert live == cap


def test_two_start_verifications_open_one_attempt(pg_db, family):
    """Given an invited binding,
    when the beneficiary opens a face verification twice at the same moment (a double tap, two devices),
    then both answers carry the same attempt, exactly one attempt exists and one history row was added."""
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]
        who = person(fam.beneficiary)

        outcomes = race(lambda: verification.start_verification(pg_db, bid, who, now=T0),
                        lambda: verification.start_verification(pg_db, bid, who, now=T0))

        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        assert outcomes[0].value["verification_id"] == outcomes[1].value["verification_id"]
        with pg_db() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(VerificationAttempt)
                            .where(VerificationAttempt.binding_id == bid)) == 1
        assert [t.event for t in assert_history_consistent(pg_db, bid)] == ["invite", "start_verification"]


def test_duplicate_verifier_results_race(pg_db, family):
    """Given an open verification attempt,
    when the verifier's result is delivered twice at the same moment (at-least-once delivery),
    then one delivery applies it ('passed') and the other is answered ignored_passed; one history row."""
    for _ in range(ROUNDS):
        fam = family(pg_db, now=T0)
        bid = invite(pg_db, fam)["id"]
        vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]

        def deliver():
            return verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid,
                                                           result="passed", verifier_id="facecheck", now=T0)
        outcomes = race(deliver, deliver)

        assert sorted(o.value for o in outcomes) == ["ignored_passed", "passed"]
        assert [t.event for t in assert_history_consistent(pg_db, bid)] == [
            "invite", "start_verification", "verification_passed"]


def test_two_identical_invitations_race_on_sqlite(sqlite_db, family):
    """Given the embedded SQLite database (writers queue on BEGIN IMMEDIATE),
    when the same invitation is sent twice at the same moment,
    then exactly one binding exists and the other is refused with duplicate_binding."""
    for _ in range(5):
        fam = family(sqlite_db, now=T0)

        outcomes = race(lambda: invite(sqlite_db, fam), lambda: invite(sqlite_db, fam))

        won = _one_winner(outcomes, loser_codes={"duplicate_binding"})
        assert len(assert_history_consistent(sqlite_db, outcomes[won].value["id"])) == 1


def test_frequency_limit_under_concurrency(pg_db, family):
    """Given the seeded Jiangsu policy (at most 10 binding changes per person per 86400 s) and a grantor
    who made limit-1 invitations in the window and cancelled them all (no live binding, so no member cap),
    when the grantor invites two new beneficiaries at the same moment,
    then exactly one invitation succeeds and the other is refused with too_frequent."""
    with pg_db() as s:
        pol = policy.in_force(s, "320100", T0)
    assert (pol.frequency_max_changes, pol.frequency_window_s) == (10, 86400)
    for _ in range(ROUNDS // 2):
        first = family(pg_db, now=T0)
        grantor = (first.grantor, first.grantor_name)
        for i in range(pol.frequency_max_changes - 1):
            fam = first if i == 0 else family(pg_db, grantor=grantor, now=T0)
            made = invite(pg_db, fam, now=T0 - timedelta(hours=2))
            commands.cancel(pg_db, made["id"], person(fam.grantor), now=T0 - timedelta(hours=1))
        one, two = family(pg_db, grantor=grantor, now=T0), family(pg_db, grantor=grantor, now=T0)

        outcomes = race(lambda: invite(pg_db, one), lambda: invite(pg_db, two))

        _one_winner(outcomes, loser_codes={"too_frequent"})
