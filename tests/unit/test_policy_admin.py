"""Unit tests for workflows.policy_admin.parse_changes: the `--set field=value` pairs of `gongji policy
publish`, typed and checked before anything is written. No I/O."""
from __future__ import annotations

import pytest

from workflows import policy_admin
from workflows.errors import DomainError


def test_each_kind_of_field_is_typed():
    """Given one pair of each kind, when parsed, then flags are booleans, durations and caps integers,
    relationships a list, the rest strings."""
    assert policy_admin.parse_changes([
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
    (["invitation_ttl_s=0"], "at least 1"),
    (["invitation_ttl_s=-5"], "at least 1"),
    (["invitation_ttl_s=1.5"], "at least 1"),
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
        policy_admin.parse_changes(pairs)
    assert refused.value.code == "validation_failed" and says in refused.value.detail
