"""Platforms: registration (`gongji platform add`), bearer-key authentication, webhook secrets.

Keys are looked up by SHA-256 digest; results are cached per process for `CACHE_S` seconds so an API
request costs no extra query (a revoked key stops working within that time)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import Platform
from models.types import utcnow

from . import platform_checks
from .errors import DomainError
from .ttl_cache import TTLCache

KINDS = ("national", "province", "verifier")
CACHE_S = 10.0
_cache = TTLCache()


@dataclass(frozen=True)
class PlatformInfo:
    id: str
    kind: str
    provinces: tuple[str, ...]
    webhook_secret: str
    webhook_url: str | None
    previous_webhook_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    def serves(self, province_code: str) -> bool:
        """Whether the platform speaks for the insured of that province: the national platform for all, a
        provincial one for its own. A face-verification provider (`verifier`) for none: its provinces say
        whose faces it checks, not whose registry it keeps."""
        return self.kind == "national" or (self.kind == "province" and province_code in self.provinces)

    def signing_secrets(self, now: datetime | None = None) -> tuple[str, ...]:
        """The current secret, then the previous one while its rotation overlap lasts: outbound webhooks
        carry a signature for each, inbound ones may use either (Standard Webhooks)."""
        now = now or utcnow()
        if self.previous_webhook_secret and self.previous_secret_expires_at and now < self.previous_secret_expires_at:
            return (self.webhook_secret, self.previous_webhook_secret)
        return (self.webhook_secret,)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(p: Platform) -> PlatformInfo:
    return PlatformInfo(id=p.id, kind=p.kind, provinces=tuple(p.provinces or ()),
                        webhook_secret=p.webhook_secret, webhook_url=p.webhook_url,
                        previous_webhook_secret=p.previous_webhook_secret,
                        previous_secret_expires_at=p.previous_secret_expires_at)


def _cached(key, load):
    """`load()`, kept `CACHE_S` seconds. A miss (None) is not kept: its key comes from whoever asks (any
    bearer key's digest, any `/webhooks/<platform>` path); what is kept is bounded by the platforms
    registered."""
    return _cache.get(key, load, CACHE_S)


def clear_cache() -> None:
    _cache.clear()


def authenticate(db, api_key: str) -> PlatformInfo:
    digest = hash_key(api_key or "")

    def load():
        with db() as s:
            p = s.query(Platform).filter_by(api_key_hash=digest).one_or_none()
            return _info(p) if p else None
    info = _cached(("key", digest), load)
    if info is None:
        raise DomainError("unauthorized", "unknown API key")
    return info


def get(db, platform_id: str) -> PlatformInfo:
    def load():
        with db() as s:
            p = s.get(Platform, platform_id)
            return _info(p) if p else None
    info = _cached(("id", platform_id), load)
    if info is None:
        raise DomainError("not_found", f"no platform {platform_id}")
    return info


def all_platforms(session) -> list[PlatformInfo]:
    """Every registered platform (cached like the rest); the outbound fan-out reads this per event.
    `session` is a Session or a Connection (the fan-out's; a Session joins its transaction)."""
    def read(s) -> list[PlatformInfo]:
        return [_info(p) for p in s.scalars(sa.select(Platform).order_by(Platform.id))]

    def load():
        if isinstance(session, Session):
            return read(session)
        with Session(bind=session) as s:
            return read(s)
    return _cached(("all",), load)


def get_in(session, platform_id: str) -> PlatformInfo:
    """`get` inside a caller's session."""
    info = _cached(("id", platform_id), lambda: (lambda p: _info(p) if p else None)(session.get(Platform, platform_id)))
    if info is None:
        raise DomainError("not_found", f"no platform {platform_id}")
    return info


def set_webhook_url(db, platform_id: str, url: str | None) -> None:
    """Point a platform's outbound webhooks (or a verifier's sessions) at `url` (None: push nothing)."""
    with db.begin() as s:
        p = s.get(Platform, platform_id)
        if p is None:
            raise DomainError("not_found", f"no platform {platform_id}")
        p.webhook_url = url
    clear_cache()


def rotate_secret(db, platform_id: str, new_secret: str, *, overlap_s: int = 86400, now=None) -> datetime:
    """Make `new_secret` current; the old one stays valid (signed with and accepted) for `overlap_s` seconds.
    Returns when the overlap ends."""
    platform_checks.check_secret(new_secret)
    platform_checks.check_overlap(overlap_s)
    now = now or utcnow()
    with db.begin() as s:
        p = s.get(Platform, platform_id)
        if p is None:
            raise DomainError("not_found", f"no platform {platform_id}")
        p.previous_webhook_secret, p.webhook_secret = p.webhook_secret, new_secret
        p.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
        until = p.previous_secret_expires_at
    clear_cache()
    return until


def add(db, platform_id: str, *, kind: str, api_key: str, webhook_secret: str, webhook_url: str | None = None,
        provinces: list[str] | None = None) -> bool:
    """Register a platform, or update one (returns True when it was created): its kind, API key (a new one
    replaces the old at once), provinces, and its webhook URL when one is given ('' removes it; None keeps
    it). Every field is checked first (`platform_checks`). The webhook secret of a registered platform
    changes only through `rotate_secret`, which keeps the old one valid for an overlap: an update that names
    another secret is refused, as is an API key another platform holds."""
    platform_checks.check_secret(webhook_secret)
    provinces = list(provinces or [])
    digest = hash_key(api_key) if isinstance(api_key, str) else ""
    with db.begin() as s:
        p = s.get(Platform, platform_id)
        kept = p.webhook_url if p is not None and webhook_url is None else None  # an update without --webhook-url
        platform_checks.check_registration(s, platform_id, kind=kind, kinds=KINDS, api_key=api_key,
                                           webhook_url=webhook_url if kept is None else kept, provinces=provinces)
        if s.scalar(sa.select(Platform.id).where(Platform.api_key_hash == digest, Platform.id != platform_id)):
            raise DomainError("conflict", "that API key is another platform's")
        created = p is None
        if created:
            p = Platform(id=platform_id, webhook_secret=webhook_secret)
            s.add(p)
        elif p.webhook_secret != webhook_secret:
            raise DomainError("conflict", f"platform {platform_id} has another webhook secret: change it with "
                                          "`gongji platform rotate-secret`, which keeps the old one valid meanwhile")
        p.kind, p.api_key_hash, p.provinces = kind, digest, provinces
        if webhook_url is not None:
            p.webhook_url = webhook_url or None
    clear_cache()
    return created
