"""What crosses the process boundary: the transactional outbox, idempotency records, received webhooks.

Outbox rows are written in the same transaction as the state change they announce; a relay hands them
to the broker after commit (`relayed_at`), an actor handles each once (`processed_at`)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .bindings import BigId
from .crypto import Encrypted
from .types import UTCDateTime, utcnow


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(sa.String(48))  # an event type, e.g. binding.accepted
    binding_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    binding_version: Mapped[int | None] = mapped_column(sa.Integer)
    payload: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a binding event turned into deliveries: set with them, in version order per binding
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a worker is on it (workflows.once)

    __table_args__ = (
        sa.Index("ix_outbox_pending", "id",
                 sqlite_where=sa.text("processed_at is null"), postgresql_where=sa.text("processed_at is null")),
    )


class IdempotencyRecord(Base):
    """A platform's `Idempotency-Key`: `status_code` NULL while the first request is in flight."""

    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(sa.String(32))
    key: Mapped[str] = mapped_column(sa.String(255))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("platform_id", "key", name="uq_idempotency_records_key"),)


class ReceivedWebhook(Base):
    """Stored before it is answered; the body may carry ID numbers, so it is encrypted."""

    __tablename__ = "received_webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(sa.String(32))
    webhook_id: Mapped[str] = mapped_column(sa.String(255))
    type: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(Encrypted("received_webhooks.body"))
    headers: Mapped[dict] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("platform_id", "webhook_id", name="uq_received_webhooks_id"),
        sa.Index("ix_received_webhooks_pending", "received_at",
                 sqlite_where=sa.text("processed_at is null"), postgresql_where=sa.text("processed_at is null")),
    )
