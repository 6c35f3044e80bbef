"""Unit tests for workflows.policy_fields: the `--set field=value` pairs of `gongji policy publish`, typed
and checked before anything is written, and the checks of a whole version. No I/O."""
from __future__ import annotations

import pytest

from workflows import policy_fields
from workflows.errors import DomainError


def test_each_kind_of_field_is_typed():
    """Given one pair of each kind, when parsed, then flags are booleans, durations and caps integers,
    relationships a list, the rest strings."""
    assert policy_fields.parse_changes([
        "cross_province=true", "intra_province=No", "invitation_ttl_s=86400", "max_verification_attempts=5",
        "allowed_relationships=spouse, child,parent", "deduction_order_policy=single_grantor",
        "commitment_version=XJ-2027-01",
    ]) == {"cross_province": True, "intra_province": False, "invitation_ttl_s": 86400,
           "max_verification_attempts": 5, "allowed_relationships": ["spouse", "child", "parent"],
           "deduction_order_policy": "single_grantor", "commitment_version": "XJ-2027-01"}


@pytest.mark.parametrize("pairs, says", [
    ([], "nothing to change"),
    (["cross_province"], "field=value"),
    (["province_code=65"], "field=value"),  # not a policy field: a region's province is not a policy
    (["version=9"], "field=value"),  # the version is the next one, never chosen
    (["cross_province=maybe"], "true or false"),
    (["invitation_ttl_s=0"], "from 1 to"),
    (["invitation_ttl_s=-5"], "from 1 to"),
    (["invitation_ttl_s=1.5"], "from 1 to"),
    (["invitation_ttl_s=²"], "from 1 to"),  # a digit to str.isdigit, not to int()
    (["frequency_window_s=100000000000"], "from 1 to"),  # past a 32-bit column and an invitation's dates
    (["max_verification_attempts=1001"], "from 1 to 1000"),
    (["commitment_version=JS\n2027"], "printable"),
    (["allowed_relationships=spouse,cousin"], "distinct ones"),
    (["allowed_relationships=spouse,spouse"], "distinct ones"),
    (["allowed_relationships="], "distinct ones"),
    (["deduction_order_policy=richest_first"], "one of"),
    (["commitment_version="], "1 to 32"),
    (["commitment_version=" + "x" * 33], "1 to 32"),
    (["cross_province=true", "cross_province=false"], "twice"),
])
def test_a_bad_pair_is_refused_with_what_is_expected(pairs, says):
    """Given a pair naming no policy field, a value of the wrong kind, or a field twice, when parsed, then
    422 validation_failed saying what is expected."""
    with pytest.raises(DomainError) as refused:
        policy_fields.parse_changes(pairs)
    assert refused.value.code == "validation_failed" and says in refused.value.detail


SEEDED = {"commitment_version": "JS-2024-01", "allowed_relationships": ["spouse", "parent", "child"],
          "deduction_order_policy": "user_order", "intra_province": True, "cross_province": True,
          "invitation_ttl_s": 604800, "verification_timeout_s": 600, "frequency_window_s": 86400,
          "max_verification_attempts": 3, "max_beneficiaries_per_grantor": 10, "max_grantors_per_beneficiary": 3,
          "frequency_max_changes": 10, "in_person_verification": False}


def test_a_seeded_version_passes_as_a_whole():
    """Given the seed's fields, when checked as a whole version, then nothing is refused."""
    assert set(SEEDED) == set(policy_fields.FIELDS)
    policy_fields.check_version(SEEDED)


@pytest.mark.parametrize("change, says", [
    ({"allowed_relationships": ["spouse", "parent"]}, "missing: child"),  # the guardian path needs child
    ({"allowed_relationships": ["sibling", "child"]}, "missing: spouse, parent"),
    ({"verification_timeout_s": 604800}, "shorter than invitation_ttl_s"),
    ({"invitation_ttl_s": 300}, "shorter than invitation_ttl_s"),
])
def test_a_version_that_takes_away_what_every_region_allows_or_cannot_finish_is_refused(change, says):
    """Given the seed's fields with one change that drops DESIGN's always-allowed relationships or lets a
    face session outlast the invitation, when checked as a whole version, then validation_failed."""
    with pytest.raises(DomainError) as refused:
        policy_fields.check_version({**SEEDED, **change})
    assert refused.value.code == "validation_failed" and says in refused.value.detail
