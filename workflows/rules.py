"""The eligibility rules of DESIGN §3 as pure functions over plain facts (no I/O), each raising its code.

Commands gather the facts (persons, the policy in force, counts) inside their transaction and call these;
unit tests call them directly. Policies are `workflows.policy.Policy` values: data, never code branches."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from .errors import DomainError

# the relation of the beneficiary to the grantor; `spouse_parent` (the grantor's spouse's parent) is added to
# API.md's list: DESIGN allows it where a region's policy says so (no seeded region does)
RELATIONSHIPS = ("spouse", "parent", "child", "sibling", "grandparent", "grandchild", "spouse_parent")
# the relationships that need the beneficiary born after the grantor (a generation below) or before (above);
# siblings and spouses may be born in either order
YOUNGER, OLDER = ("child", "grandchild"), ("parent", "grandparent", "spouse_parent")
GUARDIAN_RELATIONSHIPS = YOUNGER  # the beneficiary is the grantor's child or grandchild
GUARDIAN_AGE = 16
MAX_FEN = 10**13  # the largest amount or balance taken, in fen (1,000 亿 yuan): within BIGINT and JSON's 2^53
INSURED_TYPES = ("employee", "resident")  # basic medical insurance a beneficiary may hold


@dataclass(frozen=True)
class PersonFacts:
    id: str
    insurance_type: str
    insurance_status: str
    real_name_verified: bool
    deceased: bool
    region_code: str
    province_code: str


def check_not_self(grantor_number: str, beneficiary_number: str) -> None:
    if grantor_number == beneficiary_number:
        raise DomainError("self_binding")


def grantor_eligible(g) -> bool:
    """DESIGN §3 `grantor_not_eligible`, as a test (`g`: PersonFacts or a persons row)."""
    return not g.deceased and g.real_name_verified and g.insurance_type == "employee" and g.insurance_status == "active"


def check_grantor(g: PersonFacts | None) -> None:
    if g is None:
        raise DomainError("grantor_not_eligible", "the grantor is not in the insurance registry")
    if not grantor_eligible(g):
        raise DomainError("grantor_not_eligible")


def check_beneficiary(b: PersonFacts | None) -> None:
    if b is None:
        raise DomainError("beneficiary_not_insured", "the beneficiary is not in the insurance registry")
    if b.deceased or b.insurance_type not in INSURED_TYPES or b.insurance_status != "active":
        raise DomainError("beneficiary_not_insured")


def check_relationship(relationship: str, grantor_policy, beneficiary_policy, *, guardian: bool) -> None:
    if relationship not in RELATIONSHIPS:
        # the value is not echoed (a detail never repeats what was sent: 16 characters hold an old ID number)
        raise DomainError("relationship_not_allowed", f"unknown relationship: one of {', '.join(RELATIONSHIPS)}")
    for policy in {grantor_policy.id: grantor_policy, beneficiary_policy.id: beneficiary_policy}.values():
        if relationship not in policy.allowed_relationships:
            raise DomainError("relationship_not_allowed",
                              f"{relationship} is not allowed in region {policy.region_code}")
    if guardian and relationship not in GUARDIAN_RELATIONSHIPS:
        # name only what the regions allow: "child or grandchild" where grandchildren are not allowed misleads
        fits = [r for r in GUARDIAN_RELATIONSHIPS
                if all(r in p.allowed_relationships for p in (grantor_policy, beneficiary_policy))]
        raise DomainError("relationship_not_allowed",
                          "a beneficiary under 16 joins on the guardian path, through a parent or grandparent: "
                          "the relationship must be " + (" or ".join(fits) or "child"))


def check_birth_order(relationship: str, grantor_born, beneficiary_born) -> None:
    """A child or grandchild is born after the grantor, a parent, grandparent or spouse's parent before
    (dates from the two ID numbers). Only the order, no minimum gap: step-parents and adoption make any
    fixed gap refuse real families, while the order refuses no one. It matters most on the guardian path,
    where an under-16's binding takes effect on the grantor's word alone."""
    if relationship in YOUNGER and not beneficiary_born > grantor_born:
        raise DomainError("relationship_mismatch", f"a {relationship} is born after the grantor")
    if relationship in OLDER and not beneficiary_born < grantor_born:
        raise DomainError("relationship_mismatch", f"a {relationship.replace('_', ' ')} is born before the grantor")


def check_regions(g: PersonFacts, b: PersonFacts, grantor_policy, beneficiary_policy) -> None:
    if g.region_code == b.region_code:
        return
    if g.province_code == b.province_code:
        if grantor_policy.intra_province and beneficiary_policy.intra_province:
            return
        raise DomainError("region_not_allowed", "the province does not allow sharing across its pooling regions")
    if grantor_policy.cross_province and beneficiary_policy.cross_province:
        return
    raise DomainError("region_not_allowed", "sharing across provinces needs both provinces to allow it")


def check_commitment(given: str | None, policy) -> None:
    if given != policy.commitment_version:
        raise DomainError("commitment_required",
                          f"accept commitment letter version {policy.commitment_version} first",
                          commitment_version=policy.commitment_version)


def check_member_limits(grantor_active: int, beneficiary_active: int, grantor_policy, beneficiary_policy) -> None:
    if grantor_active >= grantor_policy.max_beneficiaries_per_grantor:
        raise DomainError("member_limit", f"a grantor may share with at most "
                          f"{grantor_policy.max_beneficiaries_per_grantor} family members")
    if beneficiary_active >= beneficiary_policy.max_grantors_per_beneficiary:
        raise DomainError("member_limit", f"a beneficiary may have at most "
                          f"{beneficiary_policy.max_grantors_per_beneficiary} grantors")


def seconds_until_one_fits(moments: list, policy, now) -> int:
    """Whole seconds until one more change fits the policy's window, given the times of the changes in it:
    until the oldest ones beyond the limit have left it (at least 1)."""
    over = len(moments) - policy.frequency_max_changes
    if over < 0:
        return 1
    leaves = sorted(moments)[over] + timedelta(seconds=policy.frequency_window_s)
    return max(1, math.ceil((leaves - now).total_seconds()))


def check_frequency(changes_in_window: int, policy, retry_after_s: int | None = None) -> None:
    """`retry_after_s`: when one more change will fit (the caller knows the changes' times); else the window."""
    if changes_in_window >= policy.frequency_max_changes:
        raise DomainError("too_frequent", f"at most {policy.frequency_max_changes} binding changes per "
                          f"{policy.frequency_window_s} s",
                          retry_after_s=policy.frequency_window_s if retry_after_s is None else retry_after_s)


def check_amount(amount_fen: int | None) -> None:
    if amount_fen is not None and (not isinstance(amount_fen, int) or isinstance(amount_fen, bool)
                                   or amount_fen < 0):
        raise DomainError("validation_failed", "amount_fen is a non-negative integer number of fen, or null")


def role_of(actor, grantor_id: str, beneficiary_id: str) -> str:
    """The actor's role in a binding: grantor, beneficiary, or its kind for non-person actors."""
    if actor.kind != "person":
        return actor.kind
    if actor.id == grantor_id:
        return "grantor"
    if actor.id == beneficiary_id:
        return "beneficiary"
    return "stranger"


def check_actor(event: str, role: str, allowed_roles, reason: str | None) -> None:
    if role not in allowed_roles:
        raise DomainError("not_your_binding", f"{role} may not {event} this binding")
    if role in ("operator", "system", "staff") and not (reason or "").strip():
        raise DomainError("reason_required")
