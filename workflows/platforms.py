"""Platforms: registration (`gongji platform add`), bearer-key authentication, webhook secrets.

Keys are looked up by SHA-256 digest; results are cached per process for `CACHE_S` seconds so an API
request costs no extra query (a revoked key stops working within that time)."""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from models import Platform

from .errors import DomainError

KINDS = ("national", "province", "verifier")
CACHE_S = 10.0
_cache: dict = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PlatformInfo:
    id: str
    kind: str
    provinces: tuple[str, ...]
    webhook_secret: str
    webhook_url: str | None

    def serves(self, province_code: str) -> bool:
        return self.kind == "national" or province_code in self.provinces


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(p: Platform) -> PlatformInfo:
    return PlatformInfo(id=p.id, kind=p.kind, provinces=tuple(p.provinces or ()),
                        webhook_secret=p.webhook_secret, webhook_url=p.webhook_url)


def _cached(key, load):
    with _lock:
        hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    value = load()
    with _lock:
        _cache[key] = (time.monotonic(), value)
    return value


def clear_cache() -> None:
    with _lock:
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


def add(db, platform_id: str, *, kind: str, api_key: str, webhook_secret: str, webhook_url: str | None = None,
        provinces: list[str] | None = None) -> bool:
    """Register or update a platform (idempotent). Returns True when it was created."""
    if kind not in KINDS:
        raise DomainError("validation_failed", f"kind is one of {', '.join(KINDS)}")
    if not webhook_secret.startswith("whsec_"):
        raise DomainError("validation_failed", "webhook secrets look like whsec_<base64>")
    with db.begin() as s:
        p = s.get(Platform, platform_id)
        created = p is None
        if created:
            p = Platform(id=platform_id)
            s.add(p)
        p.kind, p.api_key_hash, p.webhook_secret = kind, hash_key(api_key), webhook_secret
        p.webhook_url, p.provinces = webhook_url, list(provinces or [])
    clear_cache()
    return created
