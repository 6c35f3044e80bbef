"""Unit tests for workflows.consequences: which bindings a registry fact ends, with which event and reason
(DESIGN §3 "Events from platforms end bindings by themselves"). Plain values only, no I/O."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from workflows import consequences, machine

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=1)


@pytest.fixture
def pair(make_person):
    """An eligible grantor (employee, active) and beneficiary (resident, active), both in 南京."""
    return make_person(), make_person(id="psn_beneficiary", insurance_type="resident")


@pytest.mark.parametrize("side, change, reason", [
    ("grantor", dict(deceased=True), "grantor_deceased"),
    ("beneficiary", dict(deceased=True), "beneficiary_deceased"),
    ("grantor", dict(insurance_status="suspended"), "grantor_insurance_suspended"),
    ("grantor", dict(insurance_status="ended"), "grantor_insurance_ended"),
    ("beneficiary", dict(insurance_status="suspended"), "beneficiary_insurance_suspended"),
    ("beneficiary", dict(insurance_status="ended"), "beneficiary_insurance_ended"),
    ("grantor", dict(insurance_type="none"), "grantor_insurance_ended"),
    ("beneficiary", dict(insurance_type="none"), "beneficiary_insurance_ended"),
    ("grantor", dict(insurance_type="resident"), "grantor_left_employee_insurance"),
])
def test_each_person_fact_that_ends_a_binding_has_its_reason(pair, side, change, reason):
    """Given an eligible pair, when one side's fact changes as listed, then the reason is the one listed."""
    g, b = pair
    g, b = (replace(g, **change), b) if side == "grantor" else (g, replace(b, **change))
    assert consequences.reason_to_end(g, b) == reason


def test_an_eligible_pair_keeps_its_binding(pair):
    """Given an eligible pair (also a beneficiary under employee insurance, or not real-name verified),
    when asked, then no reason: those facts do not end a binding."""
    g, b = pair
    assert consequences.reason_to_end(g, b) is None
    assert consequences.reason_to_end(g, replace(b, insurance_type="employee")) is None
    assert consequences.reason_to_end(g, replace(b, real_name_verified=False)) is None


def test_a_death_outranks_an_insurance_change(make_person):
    """Given a grantor whose insurance ended and a beneficiary who died, then the reason is the death."""
    g = make_person(insurance_status="ended")
    b = make_person(id="psn_b", insurance_type="resident", deceased=True)
    assert consequences.reason_to_end(g, b) == "beneficiary_deceased"


def test_region_rule_only_when_policies_are_given(make_person, make_policy):
    """Given a grantor in Jiangsu (cross-province allowed) and a beneficiary who moved to Xinjiang (not),
    when the policies in force are given, then region_not_allowed; without policies (no move) no reason."""
    g = make_person()
    b = make_person(id="psn_b", insurance_type="resident", region_code="650100", province_code="65")
    js = make_policy(cross_province=True)
    xj = make_policy(id=2, region_code="650100", province_code="65", cross_province=False)
    assert consequences.reason_to_end(g, b, js, xj) == "region_not_allowed"
    assert consequences.reason_to_end(g, b) is None
    both = make_policy(id=3, region_code="650100", province_code="65", cross_province=True)
    assert consequences.reason_to_end(g, b, js, both) is None


def test_intra_province_moves_follow_the_policy(make_person, make_policy):
    """Given a beneficiary who moved to 苏州 (same province, another pooling region), then the move stands when
    both policies allow intra-province sharing and ends the binding when one does not."""
    g = make_person()
    b = make_person(id="psn_b", insurance_type="resident", region_code="320500")
    yes = make_policy(intra_province=True)
    no = make_policy(id=2, region_code="320500", intra_province=False)
    assert consequences.reason_to_end(g, b, yes, yes) is None
    assert consequences.reason_to_end(g, b, yes, no) == "region_not_allowed"


@pytest.mark.parametrize("state, event", [
    ("accepted", "unbind"), ("authorized", "unbind"), ("invited", "reject"), ("face_verified", "reject"),
    *[(s, None) for s in sorted(machine.TERMINAL)],
])
def test_live_bindings_are_unbound_pending_ones_rejected(state, event):
    """Given a binding in `state`, then the system ends it with `event` (terminal ones are left alone), and
    that event is legal from that state in the shared machine."""
    assert consequences.ending_event(state, LATER, NOW) == event
    if event is not None:
        assert machine.allowed(state, event)


def test_a_pending_invitation_past_its_ttl_is_left_to_the_timer():
    """Given an invitation whose TTL has passed (the sweeper has not fired yet), then no event: the timer
    expires it, and a system reject would be refused there anyway."""
    assert consequences.ending_event("invited", NOW, NOW) is None
    assert consequences.ending_event("face_verified", NOW - timedelta(seconds=1), NOW) is None
    assert consequences.ending_event("accepted", NOW - timedelta(days=9), NOW) == "unbind"  # TTL irrelevant
    assert consequences.ending_event("invited", None, NOW) == "reject"


def test_decide_combines_event_and_reason(pair):
    """Given a dead grantor, then an authorized binding → (unbind, grantor_deceased), an invited one →
    (reject, grantor_deceased), an unbound one → None; a healthy pair → None."""
    g, b = pair
    dead = replace(g, deceased=True)
    assert consequences.decide("authorized", None, NOW, dead, b) == ("unbind", "grantor_deceased")
    assert consequences.decide("invited", LATER, NOW, dead, b) == ("reject", "grantor_deceased")
    assert consequences.decide("unbound", None, NOW, dead, b) is None
    assert consequences.decide("authorized", None, NOW, g, b) is None


def test_relationship_ended():
    """Given the registry says the relationship ended, then live → unbind, pending → reject, both with the
    reason relationship_ended; terminal → None."""
    assert consequences.relationship_ended("accepted", None, NOW) == ("unbind", "relationship_ended")
    assert consequences.relationship_ended("face_verified", LATER, NOW) == ("reject", "relationship_ended")
    assert consequences.relationship_ended("declined", None, NOW) is None


@pytest.mark.parametrize("held, current, reason", [
    (("320100", "320100"), ("320100", "320500"), "beneficiary_region 320100→320500"),
    (("320100", "320100"), ("320500", "320100"), "grantor_region 320100→320500"),
    (("320100", "320500"), ("650100", "650100"),
     "grantor_region 320100→650100; beneficiary_region 320500→650100"),
    (("320100", "320500"), ("320100", "320500"), None),  # nothing moved
])
def test_a_standing_binding_follows_its_persons_regions(held, current, reason):
    """Given a standing (accepted) binding holding `held` regions, when its persons are insured in
    `current`, then the relocation's reason names each side that moved, or there is none."""
    assert consequences.relocation("accepted", None, NOW, held, current) == reason


@pytest.mark.parametrize("state, expires_at", [
    ("unbound", None), ("expired", None), ("invited", NOW - timedelta(seconds=1)),
])
def test_an_ended_or_lapsed_binding_is_not_relocated(state, expires_at):
    """Given a terminal binding, or an invitation past its TTL (the timer's), when its persons moved, then no
    relocation (the system may not act on it)."""
    assert consequences.relocation(state, expires_at, NOW, ("320100", "320100"), ("320500", "320100")) is None


@pytest.mark.parametrize("state", sorted(machine.ACTIVE))
def test_every_standing_state_can_be_relocated(state):
    """Given a binding in any non-terminal state within its TTL, then a move relocates it, and the machine has a
    `relocate` self-transition from that state for the system (and for no one else)."""
    assert consequences.relocation(state, LATER, NOW, ("320100", "320100"), ("320500", "320100")) is not None
    assert machine.allowed(state, "relocate") and machine.EVENT_ROLES["relocate"] == {"system"}
