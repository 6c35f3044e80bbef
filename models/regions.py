"""Pooling regions (统筹区), their versioned policies, and the platforms that integrate with Gongji.

A policy row is never edited: a change is a new row with a higher `version` and its `effective_from`;
the policy in force for a region is its highest version already effective. Bindings remember the
policy id they were created under. Durations are seconds."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .crypto import Encrypted
from .types import UTCDateTime, utcnow


class Region(Base):
    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(sa.String(6), primary_key=True)  # e.g. 320100
    name: Mapped[str] = mapped_column(sa.String(64))
    province_code: Mapped[str] = mapped_column(sa.String(2), index=True)  # e.g. 32
    platform_id: Mapped[str | None] = mapped_column(sa.String(32))


class RegionPolicy(Base):
    __tablename__ = "region_policies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(sa.ForeignKey("regions.code"))
    version: Mapped[int] = mapped_column(sa.Integer)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    commitment_version: Mapped[str] = mapped_column(sa.String(32))
    allowed_relationships: Mapped[list] = mapped_column(sa.JSON)
    intra_province: Mapped[bool] = mapped_column(sa.Boolean)
    cross_province: Mapped[bool] = mapped_column(sa.Boolean)
    invitation_ttl_s: Mapped[int] = mapped_column(sa.Integer)
    verification_timeout_s: Mapped[int] = mapped_column(sa.Integer)
    max_verification_attempts: Mapped[int] = mapped_column(sa.Integer)
    max_beneficiaries_per_grantor: Mapped[int] = mapped_column(sa.Integer)
    max_grantors_per_beneficiary: Mapped[int] = mapped_column(sa.Integer)
    frequency_max_changes: Mapped[int] = mapped_column(sa.Integer)
    frequency_window_s: Mapped[int] = mapped_column(sa.Integer)
    deduction_order_policy: Mapped[str] = mapped_column(sa.String(32))
    # a member of staff at the region's service hall (医保服务大厅) may check the beneficiary's identity
    # documents in person instead of the face check in an app (workflows/in_person.py)
    in_person_verification: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("region_code", "version", name="uq_region_policies_version"),)


class Platform(Base):
    """A platform (national, provincial, or a face-verification provider) with its credentials.

    API keys are long random tokens, so a SHA-256 digest is the right store (a slow password hash would
    cost every request); the webhook secret must be used to sign, so it is encrypted, not hashed."""

    __tablename__ = "platforms"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # national | province | verifier
    api_key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    webhook_secret: Mapped[str] = mapped_column(Encrypted("platforms.webhook_secret"))
    webhook_url: Mapped[str | None] = mapped_column(sa.Text)
    # secret rotation: during the overlap we sign with both and accept either (Standard Webhooks)
    previous_webhook_secret: Mapped[str | None] = mapped_column(Encrypted("platforms.previous_webhook_secret"))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provinces: Mapped[list] = mapped_column(sa.JSON, default=list)  # ["32"]; national serves all
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def serves(self, province_code: str) -> bool:
        """The national platform serves every province; a provincial one its own."""
        return self.kind == "national" or province_code in (self.provinces or [])
