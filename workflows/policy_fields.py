"""The fields of a region policy an operator may change, typed and checked (`gongji policy publish --set`).

Pure functions, no I/O. A version is checked whole (its fields after the change), because some limits
only make sense together: a face-verification session must be able to end before the invitation does,
and the relationships every region allows (DESIGN §3: spouse, parent, child; the guardian path needs
child) cannot be taken away. Bounds keep every value inside what the database column (32-bit) and the
date arithmetic of an invitation can hold. Durations are seconds."""
from __future__ import annotations

from .errors import DomainError
from .rules import RELATIONSHIPS

DEDUCTION_ORDERS = ("user_order", "latest_bound_first", "single_grantor")
DURATIONS = ("invitation_ttl_s", "verification_timeout_s", "frequency_window_s")
COUNTS = ("max_verification_attempts", "max_beneficiaries_per_grantor", "max_grantors_per_beneficiary",
          "frequency_max_changes")
FLAGS = ("intra_province", "cross_province", "in_person_verification")
FIELDS = ("commitment_version", "allowed_relationships", "deduction_order_policy", *FLAGS, *DURATIONS, *COUNTS)
MAX_DURATION_S = 10 * 366 * 86400  # ten years
MAX_COUNT = 1000
ALWAYS_ALLOWED = ("spouse", "parent", "child")  # DESIGN §3's default set: a region may add, never remove
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


def refuse(detail: str):
    """validation_failed with `detail`: every refusal of a policy change, here and in `policy_admin`."""
    raise DomainError("validation_failed", detail)


def _whole(name: str, raw: str, ceiling: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= ceiling:
        refuse(f"{name} is a whole number from 1 to {ceiling}")
    return int(raw)


def _value(name: str, raw: str):
    if name in FLAGS:
        if raw.lower() not in TRUE + FALSE:
            refuse(f"{name} is true or false")
        return raw.lower() in TRUE
    if name in DURATIONS:
        return _whole(name, raw, MAX_DURATION_S)
    if name in COUNTS:
        return _whole(name, raw, MAX_COUNT)
    if name == "allowed_relationships":
        chosen = [r.strip() for r in raw.split(",") if r.strip()]
        if not chosen or set(chosen) - set(RELATIONSHIPS) or len(set(chosen)) != len(chosen):
            refuse(f"allowed_relationships: distinct ones of {', '.join(RELATIONSHIPS)}")
        return chosen
    if name == "deduction_order_policy":
        if raw not in DEDUCTION_ORDERS:
            refuse(f"deduction_order_policy is one of {', '.join(DEDUCTION_ORDERS)}")
        return raw
    if not 1 <= len(raw) <= 32 or not raw.isprintable():  # commitment_version
        refuse("commitment_version has 1 to 32 printable characters")
    return raw


def parse_changes(pairs: list[str]) -> dict:
    """`["field=value", …]` as typed values, each checked; lists comma-separated."""
    changes = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or name not in FIELDS:
            refuse(f"{pair!r}: set one of {', '.join(FIELDS)} as field=value")
        if name in changes:
            refuse(f"{name} is set twice")
        changes[name] = _value(name, raw)
    if not changes:
        refuse("nothing to change: name at least one field=value")
    return changes


def check_version(fields: dict) -> None:
    """A whole version (every field of FIELDS) that may be published, or validation_failed saying why."""
    missing = [r for r in ALWAYS_ALLOWED if r not in fields["allowed_relationships"]]
    if missing:
        refuse(f"allowed_relationships must keep {', '.join(ALWAYS_ALLOWED)} (missing: {', '.join(missing)})")
    if fields["verification_timeout_s"] >= fields["invitation_ttl_s"]:
        refuse("verification_timeout_s must be shorter than invitation_ttl_s")
