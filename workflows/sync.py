"""Regional sync: which binding version each platform holds, and how far behind each platform is.

A platform acknowledges a version by answering 2xx to its delivery (`acknowledge`, called by
`deliveries.record` in the same transaction). Lag is computed from data: per platform, the deliveries
it has not acknowledged (count, the oldest one's age in seconds, how many of them are dead)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import Delivery, PlatformSync
from models.types import utcnow

S = PlatformSync.__table__
D = Delivery.__table__
_ACKED = sa.select(S.c.acked_version).where(S.c.platform_id == sa.bindparam("p"),
                                            S.c.binding_id == sa.bindparam("b")).with_for_update()


def acknowledge(session, platform_id: str, binding_id: str, version: int, now: datetime) -> None:
    """Raise the platform's acknowledged version of a binding (never lower it)."""
    held = session.execute(_ACKED, {"p": platform_id, "b": binding_id}).scalar()
    if held is None:
        session.execute(sa.insert(S), dict(platform_id=platform_id, binding_id=binding_id, acked_version=version,
                                           acked_at=now))
    elif version > held:
        session.execute(sa.update(S).where(S.c.platform_id == platform_id, S.c.binding_id == binding_id)
                        .values(acked_version=version, acked_at=now))


def acked_versions(db, binding_id: str) -> dict[str, int]:
    """platform id → acknowledged version, for one binding."""
    with db() as s:
        return dict(s.execute(sa.select(S.c.platform_id, S.c.acked_version).where(S.c.binding_id == binding_id)).all())


def lag(db, *, now: datetime | None = None) -> dict[str, dict]:
    """Per platform: unacknowledged deliveries, the oldest one's age (s), dead ones, failing ones."""
    now = now or utcnow()
    query = (sa.select(D.c.platform_id, sa.func.count().label("behind"), sa.func.min(D.c.created_at).label("oldest"),
                       sa.func.count().filter(D.c.status == "dead").label("dead"),
                       sa.func.count().filter(D.c.status == "failing").label("failing"))
             .where(D.c.status != "delivered").group_by(D.c.platform_id))
    with db() as s:
        rows = s.execute(query).all()
    return {r.platform_id: {"behind": r.behind, "dead": r.dead, "failing": r.failing,
                            "oldest_age_s": round((now - r.oldest).total_seconds(), 3) if r.oldest else 0.0}
            for r in rows}
