"""Loads `regions.json` (regions + versioned policies) and, in development, the seeded platforms.

Idempotent: existing regions, policies and platforms are left as they are; a region that has a policy gets
none from the file (its later versions are published with `gongji policy publish`)."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..regions import Platform, Region, RegionPolicy

DATA = Path(__file__).with_name("regions.json")


def dev_credentials(platform_id: str) -> tuple[str, str]:
    """The development API key and webhook secret of a seeded platform (embedded mode only)."""
    digest = hashlib.sha256(f"gongji-dev-webhook:{platform_id}".encode()).digest()
    return f"gk_dev_{platform_id}", "whsec_" + base64.b64encode(digest).decode()


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def seed_regions(session: Session) -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    defaults = data["policy_defaults"]
    for prov in data["provinces"]:
        policy = {**defaults, **prov["policy"]}
        for reg in prov["regions"]:
            if session.get(Region, reg["code"]) is None:
                session.add(Region(code=reg["code"], name=reg["name"], province_code=prov["code"],
                                   platform_id=prov["platform"]))
                session.flush()
            # the file gives a region its first policy only: later versions are published (`gongji policy
            # publish`), and a file version numbered or timed like a published one would shadow or skip it
            exists = session.scalar(sa.select(RegionPolicy.id).where(RegionPolicy.region_code == reg["code"])
                                    .limit(1))
            if exists is None:
                fields = {k: v for k, v in policy.items() if k != "effective_from"}
                session.add(RegionPolicy(region_code=reg["code"],
                                         effective_from=datetime.fromisoformat(policy["effective_from"]),
                                         **fields))


def seed_dev_platforms(session: Session) -> dict[str, tuple[str, str]]:
    """Register the seeded platforms with development credentials; returns {id: (api key, secret)}."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    creds = {}
    for p in data["platforms"]:
        key, secret = dev_credentials(p["id"])
        creds[p["id"]] = (key, secret)
        if session.get(Platform, p["id"]) is None:
            session.add(Platform(id=p["id"], kind=p["kind"], api_key_hash=hash_api_key(key),
                                 webhook_secret=secret, provinces=p["provinces"]))
    return creds
