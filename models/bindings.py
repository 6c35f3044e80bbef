"""Bindings (one grantor → one beneficiary), their append-only transition history and verification attempts.

`state` is only ever written by the shared state machine in `workflows.machine`. `version` counts
transitions (history `seq` = version after the transition) and is checked on every UPDATE.
`deadline_at`/`deadline_event` is the next durable timer of a non-terminal binding (NULL otherwise),
indexed for due-first sweeps. Amounts are integer fen; `authorized_amount_fen` NULL while authorized
means "the whole balance". `province_code` (the grantor's province when invited: its home) is the shard key
and never changes; `grantor_region`/`beneficiary_region` follow moves (`relocate`; a province left is a
`Departure`), `policy_id` does not."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm import relationship as related  # the column below is named `relationship`

from .base import Base
from .changes import change_stamp
from .persons import Person
from .types import UTCDateTime, new_id, utcnow

ACTIVE_STATES = ("invited", "face_verified", "accepted", "authorized")
_ACTIVE_SQL = "state in ('invited', 'face_verified', 'accepted', 'authorized')"
_OTHER_REGION_SQL = "beneficiary_region <> grantor_region"
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Binding(Base):
    __tablename__ = "bindings"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("bnd"))
    grantor_id: Mapped[str] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    beneficiary_id: Mapped[str] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    relationship: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(24))
    verification_method: Mapped[str] = mapped_column(sa.String(16))  # face | guardian
    channel: Mapped[str] = mapped_column(sa.String(16))  # app | counter
    platform_id: Mapped[str | None] = mapped_column(sa.String(32))  # platform that took the invitation
    authorized_amount_fen: Mapped[int | None] = mapped_column(sa.BigInteger)
    version: Mapped[int] = mapped_column(sa.Integer)
    province_code: Mapped[str] = mapped_column(sa.String(2))
    grantor_region: Mapped[str] = mapped_column(sa.String(6))
    beneficiary_region: Mapped[str] = mapped_column(sa.String(6))
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("region_policies.id"))
    deduction_rank: Mapped[int | None] = mapped_column(sa.Integer)  # the beneficiary's chosen order, 1 first
    failed_verifications: Mapped[int] = mapped_column(sa.Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # invitation TTL end
    # when the grantor's account was bound (the first authorization; a new amount keeps it): the clock of
    # "latest bound first" (workflows/money.py), as the guides bind the account at "绑定账户,授权金额"
    authorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_event: Mapped[str | None] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_event: Mapped[str | None] = mapped_column(sa.String(32))
    # the kind of actor that ended it (person, operator, system): only a person's own unbind or cancel
    # counts against the frequency limit (`workflows.invite`)
    ended_by: Mapped[str | None] = mapped_column(sa.String(16))
    # stamped by the database on every write, in commit order: the pull feed's cursor (models/changes.py)
    change_seq: Mapped[int | None] = mapped_column(sa.BigInteger, default=change_stamp(), onupdate=change_stamp())

    grantor: Mapped[Person] = related(foreign_keys=[grantor_id])
    beneficiary: Mapped[Person] = related(foreign_keys=[beneficiary_id])

    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}
    __table_args__ = (
        # the database, not the code, guarantees one live binding per pair (rule duplicate_binding)
        sa.Index("uq_bindings_active_pair", "grantor_id", "beneficiary_id", unique=True,
                 sqlite_where=sa.text(_ACTIVE_SQL), postgresql_where=sa.text(_ACTIVE_SQL)),
        # the sweeper's due-first scan touches only bindings that have a timer
        sa.Index("ix_bindings_deadline", "deadline_at",
                 sqlite_where=sa.text("deadline_at is not null"),
                 postgresql_where=sa.text("deadline_at is not null")),
        # the platforms' pull feed (`GET /api/v1/sync/bindings`) pages through changes in commit order
        sa.Index("ix_bindings_change", "change_seq", "id"),
        # the dashboard's unfiltered list, newest change first; stuck's recent-changes window
        sa.Index("ix_bindings_updated", "updated_at", "id"),
        # the dashboard: keyset pages of one state (and stuck past_service_level: pending states changed long ago),
        # of one region (and state); counts per region and state
        sa.Index("ix_bindings_state_updated", "state", "updated_at", "id"),
        sa.Index("ix_bindings_region_state_updated", "grantor_region", "state", "updated_at", "id"),
        # a region's bindings are also those whose beneficiary alone is insured there: few, so a partial index
        sa.Index("ix_bindings_beneficiary_region_state_updated", "beneficiary_region", "state", "updated_at", "id",
                 sqlite_where=sa.text(_OTHER_REGION_SQL), postgresql_where=sa.text(_OTHER_REGION_SQL)),
        sa.CheckConstraint("authorized_amount_fen is null or authorized_amount_fen >= 0",
                           name="amount_not_negative"),
    )


class Transition(Base):
    """Append-only: one row per fired event, never updated or deleted."""

    __tablename__ = "binding_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    binding_id: Mapped[str] = mapped_column(sa.ForeignKey("bindings.id"))
    seq: Mapped[int] = mapped_column(sa.Integer)
    from_state: Mapped[str | None] = mapped_column(sa.String(24))
    to_state: Mapped[str] = mapped_column(sa.String(24))
    event: Mapped[str] = mapped_column(sa.String(32))
    actor_kind: Mapped[str] = mapped_column(sa.String(16))
    actor_id: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str | None] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the request that made it (workflows/correlation.py: X-Request-Id, or webhook:<webhook-id>)
    request_id: Mapped[str | None] = mapped_column(sa.String(80))

    binding: Mapped[Binding] = related()  # orders the INSERT after a new binding's own

    __table_args__ = (sa.UniqueConstraint("binding_id", "seq", name="uq_binding_transitions_seq"),
                      sa.Index("ix_binding_transitions_at", "at"))  # the dashboard's transitions per hour


class Departure(Base):
    """Append-only: a province a binding left when `relocate` moved both its persons' regions out of it, at
    the version of that `binding.relocated` event. A platform serving that province is owed the binding up
    to this version (the event that says where it went) and nothing after it: reconciliation and an
    operator's resend find what it lacks here, since the binding's current regions no longer name it."""

    __tablename__ = "binding_departures"

    binding_id: Mapped[str] = mapped_column(sa.ForeignKey("bindings.id"), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    province_code: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    left_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # reconciliation's scan per platform: the departures from its provinces within its window
    __table_args__ = (sa.Index("ix_binding_departures_province_left", "province_code", "left_at"),)


class VerificationAttempt(Base):
    """One face-verification session. status: pending | passed | failed | timed_out."""

    __tablename__ = "verification_attempts"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("ver"))
    binding_id: Mapped[str] = mapped_column(sa.ForeignKey("bindings.id"))  # looked up via uq_..._no
    attempt_no: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    verifier_id: Mapped[str | None] = mapped_column(sa.String(32))
    # the provider's session: requested (a worker is asking) → opened | error; its id and the last error
    provider_status: Mapped[str | None] = mapped_column(sa.String(16))
    provider_session_id: Mapped[str | None] = mapped_column(sa.String(64))
    provider_requests: Mapped[int] = mapped_column(sa.Integer, default=0, server_default=sa.text("0"))
    provider_error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("binding_id", "attempt_no", name="uq_verification_attempts_no"),
        # stuck `verification_request_failed` starts from the open attempts
        sa.Index("ix_verification_attempts_pending", "opened_at",
                 sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'")),
    )
