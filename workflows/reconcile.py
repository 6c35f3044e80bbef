"""Periodic reconciliation: re-send to each platform what it lacks and nothing is on its way to fix.

A platform lacks a binding's latest version when its acknowledged version (`platform_sync`) is lower and
no delivery of that version exists for it — e.g. it registered its webhook URL after the events, or a
row was removed by hand. Such a binding gets a delivery of its latest event (ordered after any earlier
one still open). Dead deliveries are left to operators (`gongji deliveries replay`): re-sending them here
would undo the dead letter. Only bindings changed between `window_s` and `settle_s` seconds ago are
scanned (through the `(updated_at, id)` index), at most `batch` per platform per pass.

A province platform is also owed a binding's move out of its provinces (`relocate`): the binding no
longer concerns it, so its current version is none of its business, but the `binding.relocated` event
that says where it went is. Those come from `binding_departures` (a move between `window_s` and
`settle_s` seconds ago, through its (province, time) index); such a platform gets that event.

A binding with an event not yet fanned out (the workers were down, or behind, for longer than `settle_s`)
is left to that fan-out, which makes every delivery in version order: a re-sent latest version would
leave ahead of the earlier ones. And the binding's row is locked (shared) while its latest version is
re-sent, so a transition cannot commit a newer version whose fan-out would not see this delivery; a row
another transaction holds is skipped this pass (never waited for: the pass holds its locks to its end, and
writers lock bindings in id order, so waiting could deadlock with them)."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, Departure, OutboxMessage, PlatformSync
from models.types import utcnow

from . import deliveries, platforms, routing, rows, sync

B, D, S, X, O = rows.B, Delivery.__table__, PlatformSync.__table__, Departure.__table__, OutboxMessage.__table__


def _unfanned(binding_id) -> sa.sql.ColumnElement:
    """The binding has an event its fan-out has not handled yet (through ix_outbox_binding_id)."""
    return sa.exists().where(O.c.binding_id == binding_id, O.c.fanned_out_at.is_(None), O.c.topic.like("binding.%"))


_STILL = sa.select(B.c.id).where(B.c.id == sa.bindparam("b"), B.c.version == sa.bindparam("v"),
                                 ~_unfanned(B.c.id)).with_for_update(read=True, skip_locked=True)


def _lacking(platform, now: datetime, window_s: float, settle_s: float, batch: int) -> sa.Select:
    acked = (sa.select(S.c.acked_version).where(S.c.platform_id == platform.id, S.c.binding_id == B.c.id)
             .scalar_subquery())
    has_delivery = sa.exists().where(D.c.platform_id == platform.id, D.c.binding_id == B.c.id,
                                     D.c.binding_version >= B.c.version)
    return (sa.select(B.c.id, B.c.version)
            .where(sa.sql.functions.coalesce(acked, 0) < B.c.version, ~has_delivery, ~_unfanned(B.c.id),
                   sync.concerns(platform),
                   B.c.updated_at >= now - timedelta(seconds=window_s),
                   B.c.updated_at <= now - timedelta(seconds=settle_s))
            .order_by(B.c.updated_at).limit(batch))


def _departed(platform) -> sa.Select:
    """(binding id, version) for each binding that left a province `platform` serves and no longer concerns
    it (`relocate`, a `Departure`), whose `binding.relocated` there it has not acknowledged: the latest such
    version (the event saying where the binding went), which is all it is owed. Callers add their own
    conditions on `X` (departures) and group by binding."""
    acked = (sa.select(S.c.acked_version).where(S.c.platform_id == platform.id, S.c.binding_id == X.c.binding_id)
             .scalar_subquery())
    concerned_now = sa.exists().where(B.c.id == X.c.binding_id, sync.concerns(platform))
    return (sa.select(X.c.binding_id, sa.func.max(X.c.version).label("version"))
            .where(X.c.province_code.in_(platform.provinces), sa.sql.functions.coalesce(acked, 0) < X.c.version,
                   ~concerned_now)
            .group_by(X.c.binding_id))


def _departed_lacking(platform, now: datetime, window_s: float, settle_s: float, batch: int) -> sa.Select:
    has_delivery = sa.exists().where(D.c.platform_id == platform.id, D.c.binding_id == X.c.binding_id,
                                     D.c.binding_version >= X.c.version)
    return (_departed(platform).where(~has_delivery, ~_unfanned(X.c.binding_id),
                                      X.c.left_at >= now - timedelta(seconds=window_s),
                                      X.c.left_at <= now - timedelta(seconds=settle_s))
            .order_by(sa.func.min(X.c.left_at)).limit(batch))


def reconcile(db, *, now: datetime | None = None, window_s: float = 7 * 86400, settle_s: float = 300,
              batch: int = 500) -> list[int]:
    """One pass over every platform with a webhook URL; returns the delivery ids to send now."""
    now = now or utcnow()
    ready: list[int] = []
    with db.begin() as s:
        targets = [p for p in platforms.all_platforms(s) if p.webhook_url and p.kind != "verifier"]
        for p in targets:
            for binding_id, version in s.execute(_lacking(p, now, window_s, settle_s, batch)).all():
                ready += _send_latest(s, p.id, binding_id, version, now, current=True)
            if p.kind != "national":  # a province platform is also owed the moves out of its provinces
                for binding_id, version in s.execute(_departed_lacking(p, now, window_s, settle_s, batch)).all():
                    ready += _send_latest(s, p.id, binding_id, version, now)
    return ready


def _send_latest(s, platform_id: str, binding_id: str, version: int, now: datetime, *,
                 current: bool = False) -> list[int]:
    """A delivery of the binding's event of `version` to the platform. `current`: the binding's latest
    version, sent only if it still is and every event is fanned out (checked under a shared row lock)."""
    if current and s.execute(_STILL, {"b": binding_id, "v": version}).first() is None:
        return []
    msg = s.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.binding_id == binding_id, OutboxMessage.binding_version == version,
        OutboxMessage.topic.like("binding.%")).order_by(OutboxMessage.id.desc()).limit(1))
    return routing.add(s, msg, platform_id, now) if msg is not None else []


def resend_latest(s, binding_id: str, now: datetime) -> list[int]:
    """An operator's repair of one binding: every platform concerned that acknowledged less than its
    version and has nothing open on its way gets the latest event again, and a province platform the
    binding left that lacks the move its `binding.relocated` (in the caller's transaction)."""
    ready: list[int] = []
    targets = [p for p in platforms.all_platforms(s) if p.webhook_url and p.kind != "verifier"]
    for p in targets:
        acked = (sa.select(S.c.acked_version).where(S.c.platform_id == p.id, S.c.binding_id == B.c.id)
                 .scalar_subquery())
        open_ = sa.exists().where(D.c.platform_id == p.id, D.c.binding_id == B.c.id,
                                  D.c.status.in_(deliveries.OPEN))
        found = s.execute(sa.select(B.c.version).where(
            B.c.id == binding_id, sa.sql.functions.coalesce(acked, 0) < B.c.version, ~open_,
            sync.concerns(p))).first()
        if found is not None:
            ready += _send_latest(s, p.id, binding_id, found.version, now, current=True)
        elif p.kind != "national":  # it may be owed the binding's move out of its provinces
            on_its_way = sa.exists().where(D.c.platform_id == p.id, D.c.binding_id == X.c.binding_id,
                                           D.c.status.in_(deliveries.OPEN))
            found = s.execute(_departed(p).where(X.c.binding_id == binding_id, ~on_its_way,
                                                 ~_unfanned(X.c.binding_id))).first()
            if found is not None:
                ready += _send_latest(s, p.id, binding_id, found.version, now)
    return ready
