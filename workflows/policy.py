"""Region policies as values: the version in force for a pooling region at a given time.

Read-mostly data, cached per process for `CACHE_S` seconds (a new policy version takes effect within
that time); commands then do no policy query on the hot path."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import Region, RegionPolicy

from .errors import DomainError

CACHE_S = 30.0


@dataclass(frozen=True)
class Policy:
    id: int
    region_code: str
    region_name: str
    province_code: str
    platform_id: str | None
    version: int
    effective_from: datetime
    commitment_version: str
    allowed_relationships: tuple[str, ...]
    intra_province: bool
    cross_province: bool
    invitation_ttl_s: int
    verification_timeout_s: int
    max_verification_attempts: int
    max_beneficiaries_per_grantor: int
    max_grantors_per_beneficiary: int
    frequency_max_changes: int
    frequency_window_s: int
    deduction_order_policy: str
    in_person_verification: bool = False  # the service hall may check identity in person (in_person.py)

    def as_api(self) -> dict:
        """The shape of `GET /api/v1/regions/{code}` (API.md)."""
        return {
            "code": self.region_code, "name": self.region_name, "province_code": self.province_code,
            "platform": self.platform_id, "policy_version": self.version, "policy_id": self.id,
            "effective_from": self.effective_from.isoformat(),
            "commitment_version": self.commitment_version,
            "allowed_relationships": list(self.allowed_relationships),
            "intra_province": self.intra_province, "cross_province": self.cross_province,
            "invitation_ttl_s": self.invitation_ttl_s, "verification_timeout_s": self.verification_timeout_s,
            "max_verification_attempts": self.max_verification_attempts,
            "member_limits": {"beneficiaries_per_grantor": self.max_beneficiaries_per_grantor,
                              "grantors_per_beneficiary": self.max_grantors_per_beneficiary},
            "frequency_limit": {"max_changes": self.frequency_max_changes, "window_s": self.frequency_window_s},
            "deduction_order_policy": self.deduction_order_policy,
            "in_person_verification": self.in_person_verification,
        }


_cache: dict = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _home.clear()


def versions_of(session: Session, region_code: str) -> list[Policy]:
    """Every version of a region's policy, newest first (uncached)."""
    region = session.execute(sa.select(Region.__table__).where(Region.code == region_code)).first()
    if region is None:
        raise DomainError("unknown_region", f"no pooling region {region_code}")
    rows = session.execute(sa.select(RegionPolicy.__table__).where(RegionPolicy.region_code == region_code)
                           .order_by(RegionPolicy.version.desc())).all()
    return [from_row(region, r) for r in rows]


def from_row(region, r) -> Policy:
    """A Policy from a `regions` row and one of its `region_policies` rows."""
    return Policy(id=r.id, region_code=region.code, region_name=region.name,
                  province_code=region.province_code, platform_id=region.platform_id, version=r.version,
                  effective_from=r.effective_from, commitment_version=r.commitment_version,
                  allowed_relationships=tuple(r.allowed_relationships), intra_province=r.intra_province,
                  cross_province=r.cross_province, invitation_ttl_s=r.invitation_ttl_s,
                  verification_timeout_s=r.verification_timeout_s,
                  max_verification_attempts=r.max_verification_attempts,
                  max_beneficiaries_per_grantor=r.max_beneficiaries_per_grantor,
                  max_grantors_per_beneficiary=r.max_grantors_per_beneficiary,
                  frequency_max_changes=r.frequency_max_changes, frequency_window_s=r.frequency_window_s,
                  deduction_order_policy=r.deduction_order_policy,
                  in_person_verification=bool(r.in_person_verification))


def _engine(session) -> sa.Engine:
    return session.engine if isinstance(session, sa.Connection) else session.get_bind().engine


def _cached(session: Session, region_code: str) -> list[Policy]:
    """The region's versions, newest first, as this process read them at most CACHE_S seconds ago."""
    key = (id(_engine(session)), region_code)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None or time.monotonic() - hit[0] > CACHE_S:
        hit = (time.monotonic(), versions_of(session, region_code))
        with _cache_lock:
            _cache[key] = hit
    return hit[1]


def in_force(session: Session, region_code: str, at: datetime) -> Policy:
    """The highest policy version of the region already effective at `at`."""
    for policy in _cached(session, region_code):
        if policy.effective_from <= at:
            return policy
    raise DomainError("unknown_region", f"no policy in force for region {region_code}")


_REGION_OF = sa.select(RegionPolicy.region_code).where(RegionPolicy.id == sa.bindparam("id"))
_home: dict = {}  # (engine, policy id) -> its region: a version never changes region


def by_id(session: Session, policy_id: int, region_code: str, at: datetime) -> Policy:
    """The policy a binding was created under: among this process's cached versions of `region_code` (the
    binding's grantor region), else of the region the version belongs to (a relocated grantor's old
    region: its region is read once, then remembered), else read fresh there (published after this process
    cached that region); the one in force in `region_code` if it is gone."""
    found = _among(_cached(session, region_code), policy_id)
    if found is None:
        key = (id(_engine(session)), policy_id)
        home = _home.get(key) or session.execute(_REGION_OF, {"id": policy_id}).scalar()
        if home is not None:
            _home[key] = home
            found = _among(_cached(session, home), policy_id) or _among(versions_of(session, home), policy_id)
    return found or in_force(session, region_code, at)


def _among(versions: list[Policy], policy_id: int) -> Policy | None:
    return next((p for p in versions if p.id == policy_id), None)
