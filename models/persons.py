"""Insured persons as the platforms' registries report them.

ID number and name are encrypted at rest (`models.crypto`); `id_number_hash` (HMAC) is the look-up key;
the masked forms (`320***********123X`, `张*`) are stored so lists and pages never decrypt.
Money is integer fen (1 yuan = 100 fen)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .crypto import Encrypted
from .types import UTCDateTime, new_id, utcnow

INSURANCE_TYPES = ("employee", "resident", "none")
INSURANCE_STATUSES = ("active", "suspended", "ended")


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("psn"))
    id_number: Mapped[str] = mapped_column(Encrypted("persons.id_number"))
    id_number_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    id_number_masked: Mapped[str] = mapped_column(sa.String(18))
    name: Mapped[str] = mapped_column(Encrypted("persons.name"))
    name_masked: Mapped[str] = mapped_column(sa.String(64))
    insurance_type: Mapped[str] = mapped_column(sa.String(16))
    insurance_status: Mapped[str] = mapped_column(sa.String(16))
    region_code: Mapped[str] = mapped_column(sa.String(6), index=True)
    real_name_verified: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    balance_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    commitment_version: Mapped[str | None] = mapped_column(sa.String(32))
    deceased: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    source_platform: Mapped[str | None] = mapped_column(sa.String(32))
    # the as-of time of the newest registry fact applied; an older person event changes nothing
    registry_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the same fact's time as its source platform stated it (a fast clock's may be ahead of when it was
    # applied): that platform's next fact is compared with this (workflows/person_events._check_fresh)
    registry_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.CheckConstraint("balance_fen >= 0", name="balance_not_negative"),
        sa.CheckConstraint(f"insurance_type in {INSURANCE_TYPES}", name="insurance_type"),
        sa.CheckConstraint(f"insurance_status in {INSURANCE_STATUSES}", name="insurance_status"),
    )
