"""Operators of the dashboard, the audit log of everything they do, and batch jobs they start.

An operator's password is stored only as a werkzeug scrypt hash; the session generation in every session
cookie is what signing out changes, so a copied cookie stops working then. The audit log is append-only (who,
what, which binding, why, when, and the outcome); a revealed ID number is recorded as the fact of the
reveal, never its value. A batch job is an action over the bindings matching a filter, counted before it
is confirmed and run by a worker, one audited command per binding."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .types import UTCDateTime, new_id, utcnow

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ROLES = ("viewer", "operator", "admin")  # each includes the ones before it


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("opr"))
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # part of every dashboard session cookie; a new one (sign-out, new password) ends every session issued
    session_generation: Mapped[str | None] = mapped_column(sa.String(32))

    __table_args__ = (sa.CheckConstraint("role in ('viewer', 'operator', 'admin')", name="operator_role"),)


class AuditEntry(Base):
    """Append-only: one row per operator action (or refused attempt), per binding for batch actions."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    operator: Mapped[str] = mapped_column(sa.String(64))  # the username
    action: Mapped[str] = mapped_column(sa.String(48))
    binding_id: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.String(64))  # ok, or the refusing error code
    detail: Mapped[dict | None] = mapped_column(sa.JSON)
    batch_id: Mapped[str | None] = mapped_column(sa.String(32))

    __table_args__ = (sa.Index("ix_audit_log_at", "at", "id"),
                      sa.Index("ix_audit_log_binding", "binding_id", "id"),
                      sa.Index("ix_audit_log_batch", "batch_id", "id", postgresql_where=sa.text("batch_id IS NOT NULL"),
                               sqlite_where=sa.text("batch_id IS NOT NULL")))


class BatchJob(Base):
    """state: confirmed → running → done | failed. `total` is counted when it is created; `lease_until`
    is when the worker running it must renew its hold or let another take over."""

    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("bat"))
    action: Mapped[str] = mapped_column(sa.String(32))
    filters: Mapped[dict] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text)
    operator: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), default="confirmed")
    total: Mapped[int] = mapped_column(sa.Integer)
    done: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor: Mapped[str | None] = mapped_column(sa.String(128))  # the list position reached (finder cursor)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a worker holds the job until then
    last_error: Mapped[str | None] = mapped_column(sa.Text)
