"""What `gongji platform add` and `rotate-secret` accept, checked before anything is written.

Why: a platform's registration is typed by hand at a bureau, and a slip there broke live traffic later, far
from its cause: a webhook secret that is not base64 made every signature check of that platform a 500 (in
and out, for the whole rotation overlap); `--regions 320100` (a pooling region where a province code is
meant) registered a province platform that serves nobody, refused on every call with `region_not_served`.
Each is refused here with a message that names the slip. Secrets follow Standard Webhooks: `whsec_` and the
base64 of 24 to 64 random bytes."""
from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

import sqlalchemy as sa

from models import Region

from .errors import DomainError

PLATFORM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", re.ASCII)  # it is a path segment of /webhooks/<id>
MIN_API_KEY = 12  # characters; production keys should be long random strings (`secrets.token_urlsafe(32)`)
SECRET_BYTES = (24, 64)  # Standard Webhooks' bounds for a secret's key
MAX_OVERLAP_S = 30 * 86400  # a rotation's overlap: both secrets valid at most this long


def _refuse(message: str) -> DomainError:
    return DomainError("validation_failed", message)


def check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise _refuse("a webhook secret is whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise _refuse("the webhook secret after whsec_ is not base64") from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise _refuse(f"a webhook secret holds {SECRET_BYTES[0]} to {SECRET_BYTES[1]} random bytes "
                      f"(this one {len(key)}); e.g. whsec_$(openssl rand -base64 32)")


def check_overlap(overlap_s: float) -> None:
    if not 0 <= overlap_s <= MAX_OVERLAP_S:  # also NaN
        raise _refuse(f"the overlap is 0 to {MAX_OVERLAP_S // 3600} hours")


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})  # hosts a plain http:// provider may be on


def check_registration(session, platform_id: str, *, kind: str, kinds: tuple[str, ...], api_key: str,
                       webhook_url: str | None, provinces: list[str]) -> None:
    """Every field of `add`; the provinces against the regions registered (`gongji db upgrade` seeds them)."""
    if not isinstance(platform_id, str) or not PLATFORM_ID.fullmatch(platform_id):
        raise _refuse("a platform id is 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if kind not in kinds:
        raise _refuse(f"kind is one of {', '.join(kinds)}")
    if not isinstance(api_key, str) or len(api_key) < MIN_API_KEY:
        raise _refuse(f"an API key has at least {MIN_API_KEY} characters")
    if webhook_url:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refuse("the webhook URL is an http:// or https:// address")
        if kind == "verifier" and parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise _refuse("a face-verification provider is sent ID numbers and names: its URL is https:// "
                          "(http:// only on this machine: 127.0.0.1, ::1, localhost)")
    known = set(session.scalars(sa.select(Region.province_code).distinct()))
    unknown = [p for p in provinces if p not in known]
    if unknown:
        hint = " (province codes are 2 digits: 32, not 320100)" if any(len(p) != 2 for p in unknown) else ""
        raise _refuse(f"no province {', '.join(unknown)} among the regions{hint}; known: {', '.join(sorted(known))}")
    if kind == "province" and not provinces:
        raise _refuse("a province platform names the provinces it serves (--regions 32)")
    if kind == "national" and provinces:
        raise _refuse("the national platform serves every province: give it no --regions")
