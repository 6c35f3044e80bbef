"""What crosses the process boundary: the transactional outbox, idempotency records, received webhooks.

Outbox rows are written in the same transaction as the state change they announce; a relay hands them
to the broker after commit (`relayed_at`), an actor handles each once (`processed_at`)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .bindings import BigId, Binding
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

    __table_args__ = (sa.UniqueConstraint("platform_id", "key", name="uq_idempotency_records_key"),
                      sa.Index("ix_idempotency_records_created_at", "created_at"))  # the retention purge


# The processed webhooks the dashboard lists as problems (migration 0012 indexes them): every outcome but the
# ordinary ones a webhook's processing records when it did its work (a fact applied, or older than the one
# held: `stale`; a verification's result, or `ignored_<attempt status>` for a late one; the state a binding
# was left in; `no_binding`). What is left is a refusal (an error code, `workflows/errors.py`) or a give-up
# (`failed:<error>`, `conflict` after MAX_ATTEMPTS lost races): a new error code needs no migration. Text,
# not code: an index predicate, compared as text with the migration's by a unit test.
SETTLED = ("applied", "stale", "passed", "failed", "no_binding", "unsupported_type", "ignored_pending",
           "ignored_passed", "ignored_failed", "ignored_timed_out", "ignored_abandoned", "invited", "face_verified",
           "accepted", "authorized", "unbound", "declined", "cancelled", "expired", "verification_failed",
           "rejected")
PROBLEM_SQL = "processed_at is not null and outcome not in (" + ", ".join(f"'{o}'" for o in SETTLED) + ")"
NAMED_SQL = "binding_id is not null"


class ReceivedWebhook(Base):
    """Stored before it is answered; the body may carry ID numbers, so it is encrypted. `binding_id` is the
    binding its data names (`data.binding_id`), set with its outcome when that binding exists, so the
    binding's page lists it; `last_error` is a failed run's error, and after the last run the one it gave
    up on (`failed:<error>`). `ONCE_DONE` is how: columns the statement recording the outcome sets
    (`workflows.once`), from the parameters its processing returns."""

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
    binding_id: Mapped[str | None] = mapped_column(sa.String(32))

    __table_args__ = (
        sa.UniqueConstraint("platform_id", "webhook_id", name="uq_received_webhooks_id"),
        sa.Index("ix_received_webhooks_pending", "received_at",
                 sqlite_where=sa.text("processed_at is null"), postgresql_where=sa.text("processed_at is null")),
        # partial: a row is stored without either (ingest writes no entry), and most never enter them
        sa.Index("ix_received_webhooks_binding", "binding_id", "received_at",
                 sqlite_where=sa.text(NAMED_SQL), postgresql_where=sa.text(NAMED_SQL)),
        sa.Index("ix_received_webhooks_problems", "received_at", "id",
                 sqlite_where=sa.text(PROBLEM_SQL), postgresql_where=sa.text(PROBLEM_SQL)),
    )
    # set with the outcome (`workflows.once`), from its processing's parameters: the binding named, if it
    # exists (None: none named), and the error a give-up ended on (None: it did its work, or was refused)
    ONCE_DONE = {"binding_id": sa.select(Binding.id).where(
                     Binding.id == sa.bindparam("_binding_id", None, type_=sa.String(32))).scalar_subquery(),
                 "last_error": sa.bindparam("_last_error", None, type_=sa.Text)}
