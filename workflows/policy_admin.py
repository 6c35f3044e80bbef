"""Publishing a region's policy: a new version, never an edit (DESIGN §3: region policies are data).

Why versions: a binding keeps the version it was made under (`bindings.policy_id`) for its own terms (the
face-verification timeout and attempt limit of its invitation), so a change applies to what happens from
its `effective_from` on: new invitations, and the checks that read the policy in force (a move's region
rule, the deduction order). Hence:
- a version is the region's latest one (a pending one included) with the named fields changed, checked
  whole (`policy_fields`);
- `effective_from` has a UTC offset, is not in the past (a time typed within the last minute counts as
  now, so the version is not recorded as having been in force before it was published) and not before
  the latest version's (versions take effect in order: `policy.in_force` picks the highest version
  already effective);
- a version takes effect `SWITCH_MARGIN` (policy.CACHE_S + CLOCK_SKEW, 90 s) after it is published at the
  earliest: every process has read it by then, so all switch at the same instant (from "now", a process
  whose cache was 29 s old would still refuse the new commitment letter that another already asks for);
- a pending version can be withdrawn (a typo in a date far ahead, or an urgent change that must come
  first) until shortly before it takes effect: `WITHDRAW_MARGIN` covers other processes' policy caches
  (`policy.CACHE_S`) and their clocks, so none can have made a binding under it;
- publishes and withdrawals for one region are ordered by the region row's lock (SQLite writes one
  transaction at a time anyway): the second builds on the first's version;
- each is an audit-log entry (`cli:<who>`, the reason, the fields);
- running processes cache policies for `policy.CACHE_S` (30 s), hence the margin."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Region, RegionPolicy
from models.types import utcnow

from . import free_text, operators, policy, policy_fields
from .errors import DomainError
from .policy_fields import refuse

CLOCK_SKEW = timedelta(minutes=1)
WITHDRAW_MARGIN = timedelta(seconds=policy.CACHE_S) + CLOCK_SKEW
SWITCH_MARGIN = WITHDRAW_MARGIN  # the earliest a version takes effect after it is published
MAX_WHO = 60  # the audit log's operator column holds 64 characters, "cli:" included

_LOCK_REGION = (sa.select(Region.code).where(Region.code == sa.bindparam("r"))
                .with_for_update(key_share=True))  # FOR NO KEY UPDATE: orders publishes, blocks no reader
_LATEST = (sa.select(RegionPolicy).where(RegionPolicy.region_code == sa.bindparam("r"))
           .order_by(RegionPolicy.version.desc()).limit(1))


def _latest_locked(s, code: str) -> RegionPolicy:
    s.execute(_LOCK_REGION, {"r": code})
    latest = s.scalars(_LATEST, {"r": code}).first()
    if latest is None:
        raise DomainError("not_found", f"no pooling region {code} with a policy")
    return latest


def _check_who_and_why(who: str, reason: str) -> str:
    if not who or not who.strip() or len(who.strip()) > MAX_WHO:
        refuse(f"say who you are (--by), 1 to {MAX_WHO} characters")
    if not reason or not reason.strip():
        refuse("give a reason")
    return f"cli:{who.strip()}"


def publish(db, regions: list[str], changes: dict, *, effective_from: datetime, who: str, reason: str,
            now: datetime | None = None) -> list[dict]:
    """A new policy version for each region (one transaction: all or none), effective from `effective_from`;
    each as `GET /api/v1/regions/{code}` shows a policy."""
    actor = _check_who_and_why(who, reason)
    if effective_from.tzinfo is None:
        refuse("effective_from needs a UTC offset (e.g. 2027-01-01T00:00:00+08:00)")
    if not regions:
        refuse("name at least one region")
    published = []
    with db.begin() as s:
        latest_of = {code: _latest_locked(s, code) for code in sorted(set(regions))}  # in code order: two
        now = now or utcnow()  # publishes never wait in a cycle; the time once the locks are held, so a wait
        if effective_from < now - CLOCK_SKEW:  # for them does not come off the margin
            refuse("effective_from is in the past: a policy is changed from now on, never backwards")
        effective_from = max(effective_from, now + SWITCH_MARGIN)
        for code, latest in latest_of.items():
            if effective_from < latest.effective_from:
                refuse(f"{code}: version {latest.version} takes effect at {latest.effective_from.isoformat()}; a "
                        f"later one cannot take effect before it (withdraw a pending version first)")
            fields = {**{f: getattr(latest, f) for f in policy_fields.FIELDS}, **changes}
            try:
                policy_fields.check_version(fields)
            except DomainError as exc:
                raise DomainError(exc.code, f"{code}: {exc.detail}") from None
            row = RegionPolicy(region_code=code, version=latest.version + 1, effective_from=effective_from,
                               created_at=now, **fields)
            s.add(row)
            s.flush()
            operators.record(s, actor, "policy_publish", reason=free_text.clean(reason), now=now, detail={
                "region_code": code, "version": row.version, "effective_from": effective_from.isoformat(),
                "changes": changes})
            published.append(policy.from_row(s.get(Region, code), row).as_api())
    policy.clear_cache()
    return published


def withdraw(db, region_code: str, version: int, *, who: str, reason: str, now: datetime | None = None) -> dict:
    """Withdraw a region's latest version while it is pending (not yet in force: nothing refers to it)."""
    now = now or utcnow()
    actor = _check_who_and_why(who, reason)
    try:
        with db.begin() as s:
            latest = _latest_locked(s, region_code)
            if latest.version != version:
                raise DomainError("illegal_transition", f"only the latest version of {region_code} can be "
                                  f"withdrawn (now {latest.version})")
            if withdrawable_until(latest.effective_from) <= now:
                raise DomainError("illegal_transition", f"version {version} of {region_code} takes effect at "
                                  f"{latest.effective_from.isoformat()}: less than {WITHDRAW_MARGIN.total_seconds():.0f}"
                                  " s from now (or already), other processes may have it: publish a new version "
                                  "to undo it")
            fields = {f: getattr(latest, f) for f in policy_fields.FIELDS}
            before = s.scalars(sa.select(RegionPolicy).where(RegionPolicy.region_code == region_code,
                                                             RegionPolicy.version == version - 1)).first()
            gone = {"region_code": region_code, "version": version,
                    "effective_from": latest.effective_from.isoformat(), "fields": fields,
                    # what the withdrawal undoes: the fields in which it differed from the version before it
                    "changes": {f: v for f, v in fields.items() if before is None or getattr(before, f) != v}}
            s.delete(latest)
            operators.record(s, actor, "policy_withdraw", reason=free_text.clean(reason), now=now, detail=gone)
    except sa.exc.IntegrityError:  # a process whose clock ran ahead made a binding under it
        raise DomainError("conflict", f"a binding was already made under version {version} of {region_code}; "
                          "publish a new version instead") from None
    policy.clear_cache()
    return gone


def withdrawable_until(effective_from: datetime) -> datetime:
    """The last moment a pending version taking effect at `effective_from` can be withdrawn: one published at
    the default (and earliest) time never can, which `gongji policy publish` says at once."""
    return effective_from - WITHDRAW_MARGIN


def regions_of_province(db, province_code: str) -> list[str]:
    """The pooling regions of a province, by code."""
    with db() as s:
        return list(s.scalars(sa.select(Region.code).where(Region.province_code == province_code)
                              .order_by(Region.code)))


def _marked(found: list[policy.Policy], now: datetime) -> list[tuple[policy.Policy, str]]:
    """Versions (newest first) with their status: `pending` (not yet), `in_force`, or `older`."""
    current = next((p.id for p in found if p.effective_from <= now), None)
    return [(p, "pending" if p.effective_from > now else "in_force" if p.id == current else "older") for p in found]


def versions(db, region_code: str, *, now: datetime | None = None) -> list[dict]:
    """Every version of a region's policy, newest first, the one in force marked (`in_force`)."""
    with db() as s:
        found = policy.versions_of(s, region_code)
    return [{**p.as_api(), "in_force": mark == "in_force", "pending": mark == "pending"}
            for p, mark in _marked(found, now or utcnow())]


def every_region(db, *, now: datetime | None = None) -> list[dict]:
    """Every pooling region, by code, with its versions and their status (the dashboard's policy page):
    two queries whatever the number of regions."""
    now = now or utcnow()
    with db() as s:
        regions = s.execute(sa.select(Region.__table__).order_by(Region.code)).all()
        by_region: dict[str, list] = {}
        for row in s.execute(sa.select(RegionPolicy.__table__).order_by(RegionPolicy.region_code,
                                                                         RegionPolicy.version.desc())):
            by_region.setdefault(row.region_code, []).append(row)
    return [{"code": r.code, "name": r.name, "province_code": r.province_code,
             "versions": _marked([policy.from_row(r, p) for p in by_region.get(r.code, [])], now)}
            for r in regions]
