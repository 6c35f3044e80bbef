"""Publishing a region's policy: a new version, never an edit (DESIGN §3: region policies are data).

Why versions: a binding keeps the version it was made under (`bindings.policy_id`), so a change applies to
what happens from its `effective_from` on (new invitations, the checks that read the policy in force) and
never rewrites the terms of a binding already made. Hence:
- a version starts from the region's latest one with the named fields changed, each checked as the seed's;
- `effective_from` is not in the past and not before the latest version's (versions take effect in order:
  `policy.in_force` picks the highest version already effective), and it has a UTC offset;
- two publishes for one region at once: the region's row lock orders them, the second builds on the first's
  version (on SQLite, without row locks, the unique (region_code, version) refuses the second: 409);
- each published version is an audit-log entry (who, why, what changed);
- running processes cache policies for `policy.CACHE_S` (30 s): a version effective now applies everywhere
  within that time.
Durations are seconds."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Region, RegionPolicy
from models.types import utcnow

from . import operators, policy
from .errors import DomainError
from .rules import RELATIONSHIPS

DEDUCTION_ORDERS = ("user_order", "latest_bound_first", "single_grantor")
POSITIVE = ("invitation_ttl_s", "verification_timeout_s", "max_verification_attempts",
            "max_beneficiaries_per_grantor", "max_grantors_per_beneficiary", "frequency_max_changes",
            "frequency_window_s")
FLAGS = ("intra_province", "cross_province")
FIELDS = ("commitment_version", "allowed_relationships", "deduction_order_policy", *FLAGS, *POSITIVE)
CLOCK_SKEW = timedelta(minutes=1)  # an effective_from of "now" typed a moment ago is still now
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _refuse(detail: str):
    raise DomainError("validation_failed", detail)


def parse_changes(pairs: list[str]) -> dict:
    """`["field=value", …]` (the command line's `--set`) as typed values, each checked; lists comma-separated."""
    changes = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or name not in FIELDS:
            _refuse(f"{pair!r}: set one of {', '.join(FIELDS)} as field=value")
        if name in changes:
            _refuse(f"{name} is set twice")
        if name in FLAGS:
            if raw.lower() not in TRUE + FALSE:
                _refuse(f"{name} is true or false")
            changes[name] = raw.lower() in TRUE
        elif name in POSITIVE:
            if not raw.isdigit() or int(raw) < 1:
                _refuse(f"{name} is a whole number of at least 1")
            changes[name] = int(raw)
        elif name == "allowed_relationships":
            chosen = [r.strip() for r in raw.split(",") if r.strip()]
            if not chosen or set(chosen) - set(RELATIONSHIPS) or len(set(chosen)) != len(chosen):
                _refuse(f"allowed_relationships: distinct ones of {', '.join(RELATIONSHIPS)}")
            changes[name] = chosen
        elif name == "deduction_order_policy":
            if raw not in DEDUCTION_ORDERS:
                _refuse(f"deduction_order_policy is one of {', '.join(DEDUCTION_ORDERS)}")
            changes[name] = raw
        else:  # commitment_version
            if not 1 <= len(raw) <= 32:
                _refuse("commitment_version has 1 to 32 characters")
            changes[name] = raw
    if not changes:
        _refuse("nothing to change: name at least one field=value")
    return changes


_LOCK_REGION = (sa.select(Region.code).where(Region.code == sa.bindparam("r"))
                .with_for_update(key_share=True))  # FOR NO KEY UPDATE: orders publishes, blocks no reader
_LATEST = (sa.select(RegionPolicy).where(RegionPolicy.region_code == sa.bindparam("r"))
           .order_by(RegionPolicy.version.desc()).limit(1))


def publish(db, regions: list[str], changes: dict, *, effective_from: datetime, who: str, reason: str,
            now: datetime | None = None) -> list[dict]:
    """A new policy version for each region (one transaction: all or none), effective from `effective_from`;
    each as `GET /api/v1/regions/{code}` shows a policy."""
    now = now or utcnow()
    if effective_from.tzinfo is None:
        _refuse("effective_from needs a UTC offset (e.g. 2027-01-01T00:00:00+08:00)")
    if effective_from < now - CLOCK_SKEW:
        _refuse("effective_from is in the past: a policy is changed from now on, never backwards")
    if not reason or not reason.strip():
        _refuse("give a reason")
    if not regions:
        _refuse("name at least one region")
    published = []
    try:
        with db.begin() as s:
            for code in sorted(set(regions)):  # locked in code order: two publishes never wait in a cycle
                s.execute(_LOCK_REGION, {"r": code})
                latest = s.scalars(_LATEST, {"r": code}).first()
                if latest is None:
                    raise DomainError("not_found", f"no pooling region {code} with a policy")
                if effective_from < latest.effective_from:
                    _refuse(f"{code}: version {latest.version} takes effect at {latest.effective_from.isoformat()};"
                            " a later version cannot take effect before it")
                columns = {c.name: getattr(latest, c.name) for c in RegionPolicy.__table__.columns
                           if c.name not in ("id", "created_at")}
                row = RegionPolicy(**{**columns, **changes, "version": latest.version + 1,
                                      "effective_from": effective_from, "created_at": now})
                s.add(row)
                s.flush()
                operators.record(s, who, "policy_publish", reason=reason.strip(), now=now, detail={
                    "region_code": code, "version": row.version, "effective_from": effective_from.isoformat(),
                    "changes": changes})
                published.append((code, row.id))
    except sa.exc.IntegrityError:
        raise DomainError("conflict", "another version of that region was published at the same moment") from None
    policy.clear_cache()
    with db() as s:
        return [next(p for p in policy.versions_of(s, code) if p.id == pid).as_api() for code, pid in published]


def regions_of_province(db, province_code: str) -> list[str]:
    """The pooling regions of a province, by code."""
    with db() as s:
        return list(s.scalars(sa.select(Region.code).where(Region.province_code == province_code)
                              .order_by(Region.code)))


def versions(db, region_code: str, *, now: datetime | None = None) -> list[dict]:
    """Every version of a region's policy, newest first, the one in force marked (`in_force`)."""
    now = now or utcnow()
    with db() as s:
        found = policy.versions_of(s, region_code)
    current = next((p.id for p in found if p.effective_from <= now), None)
    return [{**p.as_api(), "in_force": p.id == current} for p in found]
