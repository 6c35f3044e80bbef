"""Outbound deliveries per platform, for the dashboard: counts per platform and status, and one platform's
dead deliveries (what `gongji deliveries replay --platform` would send again).

Why: the binding list's platform filter means "the bindings that platform is concerned with" and its
`delivery_dead` reason means "dead to any platform", so a batch retry from it also replays the deliveries
of a platform still down. Here each platform's dead deliveries are its own, and their replay
(`platform_repair.replay_dead`) is the command line's.

Cost: the counts are those of what is not delivered (`pending`, `failing`, `dead`), read from the partial
index ix_deliveries_undelivered (platform_id, status, created_at), so they cost what is undelivered, not
the table; delivered deliveries are not counted (every event ever sent: a scan of the whole table). The
dead list walks the same index for one platform, newest event first, in keyset pages. Receivers' answers
(`last_error`) are masked free text. Times are aware UTC datetimes; ages are seconds."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import Delivery, OutboxMessage
from models.types import seconds_since, utcnow

from . import free_text, platforms, sync

D = Delivery.__table__
O = OutboxMessage.__table__
STATUSES = ("pending", "failing", "dead")  # not delivered: what the counts show
MAX_LIMIT = 200


def counts(db, *, now: datetime | None = None) -> dict[str, dict]:
    """Per platform that takes deliveries (every registered one but face-verification providers): per status
    in STATUSES {n, oldest_age_s}, and `dead_since` (the oldest dead one's dead_at, None without)."""
    now = now or utcnow()
    with db() as s:
        out = {p.id: _empty() for p in platforms.all_platforms(s) if p.kind != "verifier"}
        found = s.execute(sa.select(D.c.platform_id, D.c.status, sa.func.count(), sa.func.min(D.c.created_at),
                                    sa.func.min(D.c.dead_at))
                          .where(D.c.status != "delivered").group_by(D.c.platform_id, D.c.status)).all()
    for pid, status, n, oldest, dead_since in found:
        row = out.setdefault(pid, _empty())
        row[status] = {"n": n, "oldest_age_s": seconds_since(oldest, now)}
        if status == "dead":
            row["dead_since"] = dead_since
    return dict(sorted(out.items()))


def _empty() -> dict:
    return {**{st: {"n": 0, "oldest_age_s": 0.0} for st in STATUSES}, "dead_since": None}


def _settlement_of(payload) -> dict:
    """A settlement event's settlement id and reference (a binding event: neither), read from its outbox row
    (gone once retention purged it: then neither either)."""
    settled = ((payload or {}).get("data") or {}).get("settlement") or {}
    return {"settlement_id": settled.get("id"), "settlement_reference": settled.get("reference")}


def dead(db, platform_id: str, *, after: str | None = None, limit: int = 50) -> dict:
    """One page of the platform's dead deliveries, newest event first: {"items": [...], "next": cursor or
    None}; an item: id, binding_id, topic (the event type), binding_version, attempts, last_status_code,
    last_error (masked), created_at, dead_at, and for a settlement event settlement_id and its reference."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    conds = [D.c.platform_id == platform_id, D.c.status != "delivered", D.c.status == "dead"]
    if after:
        conds.append(sync.rows_before(after, D.c.created_at, D.c.id))
    with db() as s:
        platforms.get_in(s, platform_id)  # not_found for a platform nobody registered
        found = s.execute(sa.select(D.c.id, D.c.binding_id, D.c.topic, D.c.binding_version, D.c.attempts,
                                    D.c.last_status_code, D.c.last_error, D.c.created_at, D.c.dead_at,
                                    O.c.payload)
                          .join(O, O.c.id == D.c.outbox_id, isouter=True)
                          .where(*conds).order_by(D.c.created_at.desc(), D.c.id.desc()).limit(limit + 1)
                          ).mappings().all()
    items = [{**{k: v for k, v in r.items() if k != "payload"}, **_settlement_of(r["payload"]),
              "last_error": free_text.clean(r["last_error"], limit=2000)} for r in found[:limit]]
    last = found[limit - 1] if len(found) > limit else None
    return {"items": items, "next": sync._cursor(last["created_at"], str(last["id"])) if last else None}
