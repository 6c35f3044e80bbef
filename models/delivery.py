"""Outbound webhooks and regional sync: what each platform was sent, how each try went, what it holds.

A `Delivery` is one outbox event for one platform the binding concerns (the national platform, the
grantor's and the beneficiary's provinces). Deliveries of one (platform, binding) go out in
`binding_version` order: version n+1 waits until n is acknowledged. `next_attempt_at` drives the retry
schedule (seconds, see `workflows.deliveries.SCHEDULE_S`); past the last step the delivery is `dead`
until an operator replays it. Every try is a `DeliveryAttempt` row. `PlatformSync` keeps the highest
binding version a platform acknowledged, so lag and reconciliation are computed from data."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .bindings import BigId
from .types import UTCDateTime, utcnow

DELIVERY_STATUSES = ("pending", "failing", "delivered", "dead")
_OPEN_SQL = "status in ('pending', 'failing')"
_UNDELIVERED_SQL = "status <> 'delivered'"


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(sa.ForeignKey("outbox.id"))
    platform_id: Mapped[str] = mapped_column(sa.ForeignKey("platforms.id"))
    event_id: Mapped[str] = mapped_column(sa.String(40))  # the webhook-id: the same on every try
    topic: Mapped[str] = mapped_column(sa.String(48))
    binding_id: Mapped[str | None] = mapped_column(sa.String(32))
    binding_version: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a worker's try in flight (claimed, not recorded) until then; NULL otherwise. Its `next_attempt_at` is
    # the same lease, but a failing delivery waiting for its next try has a future one too: an operator's
    # retry makes the latter due now, never the former (it would go out twice)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.UniqueConstraint("outbox_id", "platform_id", name="uq_deliveries_event_platform"),
        # the dispatcher's due-first scan touches only open deliveries
        sa.Index("ix_deliveries_due", "next_attempt_at",
                 sqlite_where=sa.text(_OPEN_SQL), postgresql_where=sa.text(_OPEN_SQL)),
        # per-binding ordering: is an earlier version still unacknowledged for this platform?
        sa.Index("ix_deliveries_binding", "platform_id", "binding_id", "binding_version"),
        sa.Index("ix_deliveries_platform_status", "platform_id", "status"),
        # a binding's deliveries (its page, its stuck reasons); what is not delivered yet, per platform
        # (sync lag, dead and failing counts: the predicate is the one `sync.lag` filters on)
        sa.Index("ix_deliveries_binding_id", "binding_id"),
        sa.Index("ix_deliveries_undelivered", "platform_id", "status", "created_at",
                 sqlite_where=sa.text(_UNDELIVERED_SQL), postgresql_where=sa.text(_UNDELIVERED_SQL)),
        sa.CheckConstraint(f"status in {DELIVERY_STATUSES}", name="delivery_status"),
    )


class DeliveryAttempt(Base):
    """One HTTP try of a delivery; append-only."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("deliveries.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(sa.Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)  # NULL: no HTTP answer (refused, timeout)
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (  # the dashboard's failed tries per hour
        sa.Index("ix_delivery_attempts_failed", "at",
                 sqlite_where=sa.text("error is not null"), postgresql_where=sa.text("error is not null")),
    )


class PlatformSync(Base):
    """The highest binding version a platform acknowledged (answered 2xx to)."""

    __tablename__ = "platform_sync"

    platform_id: Mapped[str] = mapped_column(sa.ForeignKey("platforms.id"), primary_key=True)
    binding_id: Mapped[str] = mapped_column(sa.ForeignKey("bindings.id"), primary_key=True)
    acked_version: Mapped[int] = mapped_column(sa.Integer)
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # one binding's acknowledged versions (its page, the API, stuck `sync_behind`): the key starts with platform_id
    __table_args__ = (sa.Index("ix_platform_sync_binding_id", "binding_id"),)
