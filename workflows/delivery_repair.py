"""Unsticking deliveries: what the scheduler and operators do when the normal flow of
`workflows.deliveries` cannot go on by itself.

`release_orphans` (the scheduler, each minute) makes due a delivery left blocked although nothing blocks it
any more; `replay` (`gongji deliveries replay`, the dashboard's retry) gives dead deliveries a fresh retry
schedule, in version order, each still waiting behind an unacknowledged predecessor."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import Binding
from models.types import utcnow

from . import free_text, operators, platforms
from .deliveries import D, OPEN
from .routing import blocked, first_try
from .errors import DomainError
from .delivery_statements import BLOCKED

AUDIT_IDS = 100  # a console replay's audit row names at most this many of the deliveries it replayed
_ORPHANS = (sa.select(D.c.id).where(D.c.status.in_(OPEN), D.c.next_attempt_at.is_(None), ~BLOCKED)
            .order_by(D.c.id).limit(sa.bindparam("batch", type_=sa.Integer)).with_for_update(of=D, skip_locked=True))


def release_orphans(db, *, now: datetime | None = None, batch: int = 500) -> int:
    """Make due the open deliveries left blocked although nothing blocks them any more: their predecessor
    was acknowledged, but the worker died between that acknowledgement and the release of its successor
    (two statements on PostgreSQL, see `deliveries.record`). The scheduler runs this each minute; the next
    delivery pass sends them. Returns how many."""
    now = now or utcnow()
    with db.begin() as s:
        ids = list(s.scalars(_ORPHANS, {"batch": batch}))
        if ids:
            s.execute(sa.update(D).where(D.c.id.in_(ids)).values(next_attempt_at=now))
    return len(ids)


def _dead(ids: list[int] | None, platform_id: str | None, binding_id: str | None) -> sa.Select:
    query = sa.select(D.c.id, D.c.platform_id, D.c.binding_id, D.c.binding_version).where(D.c.status == "dead")
    if ids:
        query = query.where(D.c.id.in_(ids))
    if platform_id:
        query = query.where(D.c.platform_id == platform_id)
    if binding_id:
        query = query.where(D.c.binding_id == binding_id)
    return query


def replay(db, *, ids: list[int] | None = None, platform_id: str | None = None, binding_id: str | None = None,
           now: datetime | None = None) -> list[int]:
    """An operator sends dead deliveries again (a fresh retry schedule); returns the ids to send now."""
    with db.begin() as s:
        return replay_in(s, _dead(ids, platform_id, binding_id), now or utcnow())


def replay_from_console(db, who: str, *, ids: list[int] | None = None, platform_id: str | None = None,
                        binding_id: str | None = None, now: datetime | None = None) -> dict:
    """`gongji deliveries replay`: `replay`, audited like the dashboard's replay (`who`: the console user):
    one delivery by its id as `delivery_replay`, any other selection as `deliveries_replay`, naming the
    deliveries replayed (the first AUDIT_IDS of them). A platform, binding or delivery id that does not exist
    is not_found (a typo must not read as "nothing to do"); nothing dead among what exists is
    nothing_to_replay, as on the dashboard; either refusal is audited too.
    {"replayed": how many, "ready": ids to send now}."""
    now = now or utcnow()
    action = "delivery_replay" if ids and len(set(ids)) == 1 and not platform_id and not binding_id \
        else "deliveries_replay"
    try:
        with db.begin() as s:
            if platform_id:
                platforms.get_in(s, platform_id)
            if binding_id and s.get(Binding, binding_id) is None:
                raise DomainError("not_found", f"no binding {binding_id}")
            replayed: list[int] = []
            ready = replay_in(s, _dead(ids, platform_id, binding_id), now, replayed)
            if not replayed:  # as the dashboard's replay answers it; an id nobody has is a typo: not_found
                unknown = ids and s.scalar(sa.select(sa.func.count()).select_from(D).where(D.c.id.in_(ids))) == 0
                raise DomainError("not_found" if unknown else "nothing_to_replay", "no dead delivery matches")
            detail = {"platform_id": platform_id, "ids": list(ids or [])[:AUDIT_IDS], "dead": len(replayed),
                      "sent_now": len(ready), "replayed": replayed[:AUDIT_IDS]}
            if action == "delivery_replay":  # as the dashboard's: the delivery, its platform and its binding
                one = s.execute(sa.select(D.c.platform_id, D.c.binding_id).where(D.c.id == replayed[0])).one()
                binding_id = one.binding_id
                detail = {"delivery_id": replayed[0], "platform_id": one.platform_id, "sent_now": len(ready)}
            operators.record(s, who, action, binding_id=binding_id, reason=None, now=now, detail=detail)
    except DomainError as exc:  # what was named, masked and cut (a typo may be long, or an ID number)
        asked = {"platform_id": free_text.clean(platform_id, limit=64),
                 "binding_id": free_text.clean(binding_id, limit=64), "ids": list(ids or [])[:AUDIT_IDS]}
        operators.record_refusal(db, who, action, DomainError(exc.code, free_text.clean(exc.detail)), reason=None,
                                 now=now, detail=asked)
        raise
    return {"replayed": len(replayed), "ready": ready}


def replay_in(s, query: sa.Select, now: datetime, replayed: list[int] | None = None) -> list[int]:
    """Replay the dead deliveries `query` selects (id, platform_id, binding_id, binding_version) in the
    caller's transaction; the ids that may leave now (every one replayed is appended to `replayed`)."""
    ready = []
    for row in s.execute(query.order_by(D.c.binding_version, D.c.id).with_for_update()).all():
        held = blocked(s, row.platform_id, row.binding_id, row.binding_version)
        s.execute(sa.update(D).where(D.c.id == row.id).values(
            status="pending", attempts=0, dead_at=None, next_attempt_at=first_try(held, now)))
        if replayed is not None:
            replayed.append(row.id)
        if not held:
            ready.append(row.id)
    return ready


def dead_of(binding_id: str) -> sa.Select:
    return sa.select(D.c.id, D.c.platform_id, D.c.binding_id, D.c.binding_version).where(
        D.c.status == "dead", D.c.binding_id == binding_id)
