"""Unit tests for workflows.rules and workflows.errors (DESIGN §3): each rule passes and fails with its code.

Policies and person facts are built directly (fixtures `make_policy` / `make_person` in conftest.py)."""
from __future__ import annotations

import pytest

from workflows import rules
from workflows.actors import SYSTEM_TIMER, Actor
from workflows.errors import CODES, DomainError


def raises(code: str, func, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as info:
        func(*args, **kwargs)
    assert info.value.code == code
    return info.value


# --- errors: the status each code maps to (DESIGN §3 and §5) ------------------------------------------

RULE_CODES = ["invalid_id_number", "grantor_not_eligible", "beneficiary_not_insured", "relationship_not_allowed",
              "relationship_mismatch", "self_binding", "duplicate_binding", "region_not_allowed", "commitment_required", "member_limit"]


@pytest.mark.parametrize("code, status", [
    *[(c, 422) for c in RULE_CODES],
    ("too_frequent", 429),
    ("not_your_binding", 403),
    ("illegal_transition", 409),
    ("reason_required", 422),
    ("validation_failed", 422),
    ("malformed", 400),
    ("unauthorized", 401),
    ("bad_signature", 401),
    ("not_found", 404),
    ("conflict", 409),
    ("stale", 409),
    ("deduction_order_fixed", 422),
])
def test_each_code_maps_to_its_design_status(code, status):
    """Given an error code from DESIGN §3/§5, when a DomainError is built with it, then .status is the
    documented HTTP status, the CODES table agrees, and the message starts with the code."""
    err = DomainError(code)
    assert err.status == status
    assert CODES[code][0] == status
    assert str(err).startswith(f"{code}: ")


def test_domain_error_defaults_detail_to_title_and_keeps_extra():
    """Given a code without a detail but with extra fields, when built, then detail == title and extra kept."""
    err = DomainError("too_frequent", retry_after_s=60)
    assert err.detail == err.title == CODES["too_frequent"][1]
    assert err.extra == {"retry_after_s": 60}


def test_domain_error_refuses_an_unknown_code():
    """Given a code not in CODES, when a DomainError is built, then ValueError (no unmapped codes escape)."""
    with pytest.raises(ValueError):
        DomainError("no_such_code")


# --- self_binding --------------------------------------------------------------------------------------

def test_self_binding_refused():
    """Given the same normalized number on both sides, when checked, then self_binding (422)."""
    err = raises("self_binding", rules.check_not_self, "320102199003071239", "320102199003071239")
    assert err.status == 422


def test_two_different_people_pass_self_check():
    """Given two different numbers, when checked, then no error."""
    assert rules.check_not_self("320102199003071239", "11010519491231002X") is None


# --- grantor_not_eligible ------------------------------------------------------------------------------

def test_eligible_grantor_passes(make_person):
    """Given a real-name verified, active, employee-insured living grantor, when checked, then no error."""
    assert rules.check_grantor(make_person()) is None


@pytest.mark.parametrize("overrides", [
    {"real_name_verified": False},
    {"insurance_type": "resident"},
    {"insurance_type": "none"},
    {"insurance_status": "suspended"},
    {"insurance_status": "ended"},
    {"deceased": True},
], ids=["not-real-name", "resident-insurance", "uninsured", "suspended", "ended", "deceased"])
def test_ineligible_grantor_refused(make_person, overrides):
    """Given a grantor failing one condition (not real-name, resident insurance, suspended, ended, deceased),
    when checked, then grantor_not_eligible (422)."""
    err = raises("grantor_not_eligible", rules.check_grantor, make_person(**overrides))
    assert err.status == 422


def test_unknown_grantor_refused():
    """Given no registry record for the grantor (None), when checked, then grantor_not_eligible naming the
    registry."""
    err = raises("grantor_not_eligible", rules.check_grantor, None)
    assert "registry" in err.detail


# --- beneficiary_not_insured ---------------------------------------------------------------------------

@pytest.mark.parametrize("insurance_type", ["employee", "resident"])
def test_insured_beneficiary_passes(make_person, insurance_type):
    """Given an active beneficiary under employee or resident insurance, when checked, then no error."""
    assert rules.check_beneficiary(make_person(id="psn_b", insurance_type=insurance_type)) is None


def test_beneficiary_need_not_be_real_name_verified(make_person):
    """Given an active insured beneficiary who is not real-name verified, when checked, then no error (the
    beneficiary proves identity by face or the guardian path, not by the registry flag)."""
    assert rules.check_beneficiary(make_person(id="psn_b", real_name_verified=False)) is None


@pytest.mark.parametrize("overrides", [
    {"insurance_type": "none"},
    {"insurance_status": "suspended"},
    {"insurance_status": "ended"},
    {"deceased": True},
], ids=["uninsured", "suspended", "ended", "deceased"])
def test_uninsured_beneficiary_refused(make_person, overrides):
    """Given a beneficiary who is uninsured, suspended, ended or deceased, when checked,
    then beneficiary_not_insured (422)."""
    err = raises("beneficiary_not_insured", rules.check_beneficiary, make_person(id="psn_b", **overrides))
    assert err.status == 422


def test_unknown_beneficiary_refused():
    """Given no registry record for the beneficiary (None), when checked, then beneficiary_not_insured."""
    err = raises("beneficiary_not_insured", rules.check_beneficiary, None)
    assert "registry" in err.detail


# --- relationship_not_allowed --------------------------------------------------------------------------

ALL_CLOSE = ("spouse", "parent", "child", "sibling", "grandparent", "grandchild")


@pytest.mark.parametrize("relationship", ["spouse", "parent", "child"])
def test_default_set_allows_spouse_parent_child(make_policy, relationship):
    """Given the default allowed set on both sides, when spouse/parent/child is checked (no guardian path),
    then no error."""
    assert rules.check_relationship(relationship, make_policy(), make_policy(id=2), guardian=False) is None


@pytest.mark.parametrize("relationship", ["sibling", "grandparent", "grandchild"])
def test_default_set_refuses_other_close_relatives(make_policy, relationship):
    """Given the default allowed set, when a sibling/grandparent/grandchild is checked,
    then relationship_not_allowed naming the region."""
    err = raises("relationship_not_allowed", rules.check_relationship, relationship, make_policy(),
                 make_policy(id=2), guardian=False)
    assert err.status == 422
    assert "320100" in err.detail


@pytest.mark.parametrize("relationship", ALL_CLOSE)
def test_region_allowing_all_close_relatives(make_policy, relationship):
    """Given both regions allow all close relatives, when any of them is checked, then no error."""
    policy = make_policy(allowed_relationships=ALL_CLOSE)
    assert rules.check_relationship(relationship, policy, make_policy(id=2, allowed_relationships=ALL_CLOSE),
                                    guardian=False) is None


def test_the_spouses_parents_only_where_the_region_says_so(make_policy):
    """Given DESIGN's "never the spouse's parents unless the region says so"
    When spouse_parent is checked under the default set and under all close relatives, Then it is refused
    (relationship_not_allowed) in both; where both regions list it, it is allowed; never on the guardian path."""
    for allowed in (None, ALL_CLOSE):
        kw = {} if allowed is None else {"allowed_relationships": allowed}
        raises("relationship_not_allowed", rules.check_relationship, "spouse_parent", make_policy(**kw),
               make_policy(id=2, **kw), guardian=False)
    with_in_laws = (*ALL_CLOSE, "spouse_parent")
    assert rules.check_relationship("spouse_parent", make_policy(allowed_relationships=with_in_laws),
                                    make_policy(id=2, allowed_relationships=with_in_laws), guardian=False) is None
    raises("relationship_not_allowed", rules.check_relationship, "spouse_parent",
           make_policy(allowed_relationships=with_in_laws), make_policy(id=2, allowed_relationships=with_in_laws),
           guardian=True)


def test_relationship_must_be_allowed_on_the_beneficiary_side_too(make_policy):
    """Given the grantor's region allows siblings but the beneficiary's (Xinjiang) does not, when a sibling
    is checked, then relationship_not_allowed naming the beneficiary's region."""
    grantor = make_policy(id=1, allowed_relationships=ALL_CLOSE)
    beneficiary = make_policy(id=2, region_code="650100", province_code="65")
    err = raises("relationship_not_allowed", rules.check_relationship, "sibling", grantor, beneficiary,
                 guardian=False)
    assert "650100" in err.detail


def test_relationship_must_be_allowed_on_the_grantor_side_too(make_policy):
    """Given the beneficiary's region allows siblings but the grantor's does not, when a sibling is checked,
    then relationship_not_allowed naming the grantor's region."""
    grantor = make_policy(id=1)
    beneficiary = make_policy(id=2, region_code="650100", province_code="65", allowed_relationships=ALL_CLOSE)
    err = raises("relationship_not_allowed", rules.check_relationship, "sibling", grantor, beneficiary,
                 guardian=False)
    assert "320100" in err.detail


@pytest.mark.parametrize("relationship", ["friend", "", "Spouse", "cousin"])
def test_unknown_relationship_refused(make_policy, relationship):
    """Given a value that is not a known relationship, when checked (even by an all-close region),
    then relationship_not_allowed saying it is unknown."""
    policy = make_policy(allowed_relationships=ALL_CLOSE)
    err = raises("relationship_not_allowed", rules.check_relationship, relationship, policy, policy,
                 guardian=False)
    assert "unknown" in err.detail


def test_a_relationship_outside_the_vocabulary_is_unknown_even_where_a_region_lists_it(make_policy):
    """Given parent_in_law (not a value: the spouse's parent is spouse_parent), when checked against the default
    set and against a region that lists it, then relationship_not_allowed as unknown."""
    listing = make_policy(allowed_relationships=ALL_CLOSE + ("parent_in_law",))
    for policy in (make_policy(), listing):
        err = raises("relationship_not_allowed", rules.check_relationship, "parent_in_law", policy, policy,
                     guardian=False)
        assert "unknown" in err.detail


@pytest.mark.parametrize("relationship", ["child", "grandchild"])
def test_guardian_path_accepts_child_or_grandchild(make_policy, relationship):
    """Given a beneficiary under 16 (guardian=True) who is the grantor's child or grandchild and both
    regions allow it, when checked, then no error."""
    policy = make_policy(allowed_relationships=ALL_CLOSE)
    assert rules.check_relationship(relationship, policy, make_policy(id=2, allowed_relationships=ALL_CLOSE),
                                    guardian=True) is None


@pytest.mark.parametrize("relationship", ["spouse", "parent", "sibling", "grandparent"])
def test_guardian_path_refuses_other_relationships(make_policy, relationship):
    """Given a beneficiary under 16 who is not the grantor's child or grandchild (even where the region
    allows the relationship), when checked with guardian=True, then relationship_not_allowed;
    the same relationship without the guardian path passes."""
    policy = make_policy(allowed_relationships=ALL_CLOSE)
    other = make_policy(id=2, allowed_relationships=ALL_CLOSE)
    err = raises("relationship_not_allowed", rules.check_relationship, relationship, policy, other, guardian=True)
    assert "16" in err.detail
    assert rules.check_relationship(relationship, policy, other, guardian=False) is None


def test_guardian_refusal_names_only_what_the_regions_allow(make_policy):
    """Given Xinjiang's set (spouse, parent, child: no grandchildren), when a sibling under 16 is checked,
    then the refusal says the relationship must be `child`, not "child or grandchild", and that it is about
    the guardian path (the region does allow what the regions allow: the age decides here)."""
    err = raises("relationship_not_allowed", rules.check_relationship, "parent", make_policy(),
                 make_policy(id=2), guardian=True)
    assert err.detail.endswith("must be child")
    assert "guardian path" in err.detail


def test_guardian_grandchild_still_needs_the_region_to_allow_grandchildren(make_policy):
    """Given the default set (no grandchildren), when a grandchild under 16 is checked, then refused."""
    raises("relationship_not_allowed", rules.check_relationship, "grandchild", make_policy(), make_policy(id=2),
           guardian=True)


# --- relationship_mismatch: the order of the two birth dates ------------------------------------------

from datetime import date  # noqa: E402

GRANTOR_BORN = date(1980, 6, 15)


@pytest.mark.parametrize("relationship, born", [
    ("child", date(2005, 1, 1)), ("grandchild", date(2015, 3, 3)), ("child", date(1980, 6, 16)),
    ("parent", date(1955, 2, 2)), ("grandparent", date(1930, 1, 1)), ("spouse_parent", date(1980, 6, 14)),
    ("spouse", date(1990, 1, 1)), ("spouse", date(1970, 1, 1)), ("sibling", date(1980, 6, 15)),
    ("sibling", date(1990, 1, 1)),
])
def test_birth_order_fits(relationship, born):
    """Given a child or grandchild born after the grantor, a parent, grandparent or spouse's parent born
    before, or a spouse or sibling born on any day, when checked, then no error (no minimum gap: a
    step-parent or an adoption can be close in age)."""
    assert rules.check_birth_order(relationship, GRANTOR_BORN, born) is None


@pytest.mark.parametrize("relationship, born", [
    ("child", GRANTOR_BORN), ("child", date(1970, 1, 1)), ("grandchild", date(1980, 6, 14)),
    ("parent", GRANTOR_BORN), ("parent", date(2000, 1, 1)), ("grandparent", date(1980, 6, 16)),
    ("spouse_parent", date(1999, 9, 9)),
])
def test_birth_order_refused(relationship, born):
    """Given a child born on or before the grantor's birthday, or a parent born on or after it, when
    checked, then relationship_mismatch, whose detail names the relationship and never a date."""
    err = raises("relationship_mismatch", rules.check_birth_order, relationship, GRANTOR_BORN, born)
    assert relationship.replace("_", " ") in err.detail and "19" not in err.detail and "20" not in err.detail


# --- region_not_allowed --------------------------------------------------------------------------------

def _pair(make_person, g_region, g_province, b_region, b_province):
    return (make_person(region_code=g_region, province_code=g_province),
            make_person(id="psn_b", region_code=b_region, province_code=b_province))


def test_same_pooling_region_always_allowed(make_person, make_policy):
    """Given both people in 320100 and a policy allowing neither intra- nor cross-province sharing,
    when checked, then no error (the same pooling region is always allowed)."""
    g, b = _pair(make_person, "320100", "32", "320100", "32")
    closed = make_policy(intra_province=False, cross_province=False)
    assert rules.check_regions(g, b, closed, closed) is None


def test_same_province_allowed_when_both_sides_allow_intra_province(make_person, make_policy):
    """Given Nanjing (320100) and Suzhou (320500), both policies intra_province=True, when checked,
    then no error."""
    g, b = _pair(make_person, "320100", "32", "320500", "32")
    assert rules.check_regions(g, b, make_policy(intra_province=True),
                               make_policy(id=2, region_code="320500", intra_province=True)) is None


@pytest.mark.parametrize("g_intra, b_intra", [(False, True), (True, False), (False, False)])
def test_same_province_refused_unless_both_allow_intra_province(make_person, make_policy, g_intra, b_intra):
    """Given Nanjing and Suzhou where at least one side's policy forbids intra-province sharing
    (cross_province True does not help), when checked, then region_not_allowed (422)."""
    g, b = _pair(make_person, "320100", "32", "320500", "32")
    err = raises("region_not_allowed", rules.check_regions, g, b,
                 make_policy(intra_province=g_intra, cross_province=True),
                 make_policy(id=2, region_code="320500", intra_province=b_intra, cross_province=True))
    assert err.status == 422
    assert "province" in err.detail


def test_cross_province_allowed_when_both_allow(make_person, make_policy):
    """Given Nanjing (32) and Urumqi (65), both policies cross_province=True, when checked, then no error."""
    g, b = _pair(make_person, "320100", "32", "650100", "65")
    assert rules.check_regions(g, b, make_policy(cross_province=True),
                               make_policy(id=2, region_code="650100", province_code="65",
                                           cross_province=True)) is None


@pytest.mark.parametrize("g_cross, b_cross", [(True, False), (False, True), (False, False)])
def test_cross_province_refused_unless_both_allow(make_person, make_policy, g_cross, b_cross):
    """Given Nanjing and Urumqi where at least one side forbids cross-province sharing (intra_province True
    on both does not help), when checked, then region_not_allowed mentioning both provinces."""
    g, b = _pair(make_person, "320100", "32", "650100", "65")
    err = raises("region_not_allowed", rules.check_regions, g, b,
                 make_policy(intra_province=True, cross_province=g_cross),
                 make_policy(id=2, region_code="650100", province_code="65", intra_province=True,
                             cross_province=b_cross))
    assert "across provinces" in err.detail


# --- commitment_required -------------------------------------------------------------------------------

def test_current_commitment_version_passes(make_policy):
    """Given the grantor accepted the region's current letter version, when checked, then no error."""
    assert rules.check_commitment("2024-01", make_policy(commitment_version="2024-01")) is None


@pytest.mark.parametrize("given", ["2023-01", "", None, "2024-01 "])
def test_wrong_or_missing_commitment_version_refused(make_policy, given):
    """Given an old, empty, missing or not-exactly-equal version, when checked, then commitment_required
    whose extra carries the current version (so a client can show the right letter)."""
    err = raises("commitment_required", rules.check_commitment, given, make_policy(commitment_version="2024-01"))
    assert err.status == 422
    assert err.extra == {"commitment_version": "2024-01"}
    assert "2024-01" in err.detail


# --- member_limit -------------------------------------------------------------------------------------

def _limits(make_policy):
    return (make_policy(id=1, max_beneficiaries_per_grantor=5, max_grantors_per_beneficiary=9),
            make_policy(id=2, region_code="650100", max_beneficiaries_per_grantor=9, max_grantors_per_beneficiary=2))


def test_one_below_both_caps_passes(make_policy):
    """Given the grantor has cap-1 active beneficiaries (4 of 5, cap from the grantor's policy) and the
    beneficiary cap-1 grantors (1 of 2, cap from the beneficiary's policy), when checked, then no error."""
    g_policy, b_policy = _limits(make_policy)
    assert rules.check_member_limits(4, 1, g_policy, b_policy) is None
    assert rules.check_member_limits(0, 0, g_policy, b_policy) is None


@pytest.mark.parametrize("grantor_active", [5, 6])
def test_grantor_cap_reached_refused(make_policy, grantor_active):
    """Given the grantor already has 5 (the grantor policy's cap) or more active beneficiaries,
    when checked, then member_limit naming 5."""
    g_policy, b_policy = _limits(make_policy)
    err = raises("member_limit", rules.check_member_limits, grantor_active, 0, g_policy, b_policy)
    assert err.status == 422
    assert "5" in err.detail and "grantor may share" in err.detail


@pytest.mark.parametrize("beneficiary_active", [2, 3])
def test_beneficiary_cap_reached_refused(make_policy, beneficiary_active):
    """Given the beneficiary already has 2 (the beneficiary policy's cap) or more grantors, when checked,
    then member_limit naming 2 (the grantor policy's 9 is not the one applied)."""
    g_policy, b_policy = _limits(make_policy)
    err = raises("member_limit", rules.check_member_limits, 0, beneficiary_active, g_policy, b_policy)
    assert "at most 2 grantors" in err.detail


# --- too_frequent --------------------------------------------------------------------------------------

def test_below_frequency_limit_passes(make_policy):
    """Given 2 changes in the window and a limit of 3, when checked, then no error (boundary limit-1)."""
    assert rules.check_frequency(2, make_policy(frequency_max_changes=3)) is None


@pytest.mark.parametrize("changes", [3, 4])
def test_frequency_limit_reached_refused_with_429(make_policy, changes):
    """Given 3 (the limit) or more changes in the window, when checked, then too_frequent with status 429
    and retry_after_s equal to the window."""
    err = raises("too_frequent", rules.check_frequency, changes,
                 make_policy(frequency_max_changes=3, frequency_window_s=3600))
    assert err.status == 429
    assert err.extra == {"retry_after_s": 3600}


# --- check_amount ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [None, 0, 1, 100_000_00, 10**15])
def test_amount_none_zero_and_positive_integers_pass(amount):
    """Given None (whole balance), 0 or a positive int of fen, when checked, then no error."""
    assert rules.check_amount(amount) is None


@pytest.mark.parametrize("amount", [-1, True, False, 1.0, 0.5, "100"],
                         ids=["negative", "true", "false", "float-integral", "float", "string"])
def test_amount_negative_bool_float_refused(amount):
    """Given a negative int, a bool, a float (even 1.0) or a string, when checked, then validation_failed."""
    err = raises("validation_failed", rules.check_amount, amount)
    assert err.status == 422


# --- role_of / check_actor -------------------------------------------------------------------------------

@pytest.mark.parametrize("actor, role", [
    (Actor("person", "psn_g"), "grantor"),
    (Actor("person", "psn_b"), "beneficiary"),
    (Actor("person", "psn_x"), "stranger"),
    (Actor("person", None), "stranger"),
    (Actor("operator", "psn_g"), "operator"),   # an operator is never a party, whatever its id
    (Actor("system", "timer"), "system"),
    (Actor("verifier", "face-sim"), "verifier"),
])
def test_role_of(actor, role):
    """Given an actor and a binding between psn_g and psn_b, when role_of is asked, then the expected role."""
    assert rules.role_of(actor, "psn_g", "psn_b") == role


def test_system_timer_actor_is_system():
    """Given the timer's actor constant, when role_of is asked, then system."""
    assert rules.role_of(SYSTEM_TIMER, "psn_g", "psn_b") == "system"


def test_stranger_refused_with_not_your_binding():
    """Given a person who is neither side, when they try to unbind, then not_your_binding (403)."""
    err = raises("not_your_binding", rules.check_actor, "unbind", "stranger",
                 frozenset({"grantor", "beneficiary", "operator", "system"}), "because")
    assert err.status == 403


@pytest.mark.parametrize("event, role, allowed", [
    ("cancel", "beneficiary", {"grantor"}),
    ("accept", "grantor", {"beneficiary"}),
    ("cancel", "operator", {"grantor"}),
    ("verification_passed", "beneficiary", {"verifier"}),
])
def test_wrong_role_refused_even_with_a_reason(event, role, allowed):
    """Given a role not in the event's allowed roles (with a reason given), when checked,
    then not_your_binding naming the role and event."""
    err = raises("not_your_binding", rules.check_actor, event, role, frozenset(allowed), "a reason")
    assert role in err.detail and event in err.detail


@pytest.mark.parametrize("role", ["operator", "system"])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_operator_or_system_without_reason_refused(role, reason):
    """Given an operator or the system firing an allowed event with no (or blank) reason, when checked,
    then reason_required (422)."""
    err = raises("reason_required", rules.check_actor, "unbind", role,
                 frozenset({"grantor", "beneficiary", "operator", "system"}), reason)
    assert err.status == 422


@pytest.mark.parametrize("role", ["operator", "system"])
def test_operator_or_system_with_reason_passes(role):
    """Given an operator or the system with a reason, when checked for unbind, then no error."""
    assert rules.check_actor("unbind", role, frozenset({"grantor", "beneficiary", "operator", "system"}),
                             "insurance ended") is None


@pytest.mark.parametrize("event, role, allowed", [
    ("unbind", "grantor", {"grantor", "beneficiary", "operator", "system"}),
    ("accept", "beneficiary", {"beneficiary"}),
    ("verification_passed", "verifier", {"verifier"}),
])
def test_parties_and_verifier_need_no_reason(event, role, allowed):
    """Given a party (or the verifier) allowed to fire the event, when checked without a reason,
    then no error."""
    assert rules.check_actor(event, role, frozenset(allowed), None) is None
