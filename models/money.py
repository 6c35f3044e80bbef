"""Settlements and their double-entry ledger (DESIGN §4). Money is integer fen (1 yuan = 100 fen).

A settlement pays the self-pay part of one compliant medical cost for a beneficiary: their own personal
account first (`acct_pay`), then grantors through authorized bindings (`acct_mulaid_pay`, one split per
binding), the rest in cash (`psn_cash_pay`); the names follow the national settlement interface.

What an authorization has used is the sum of its binding's splits in settlements not reversed: the cap
(`bindings.authorized_amount_fen`) is on that total; authorizing again sets a new cap, it does not forget
what was paid. `settlement_splits.binding_version` records the binding's version when it paid.
`ledger_entries` hold the postings: each settlement's entries sum to zero, and so do its reversal's
(their negation); a personal account's entries are its balance changes (`account:<person id>`), beside
`cash` and `institution:<code>`. A registry balance applied later adds the entries after its as-of time."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .bindings import BigId
from .types import UTCDateTime, new_id, utcnow

CATEGORIES = ("outpatient", "inpatient", "pharmacy")  # compliant medical costs; never non-medical goods
SETTLEMENT_STATUSES = ("completed", "reversed")


class Settlement(Base):
    __tablename__ = "settlements"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=lambda: new_id("stl"))
    platform_id: Mapped[str] = mapped_column(sa.ForeignKey("platforms.id"))
    reference: Mapped[str] = mapped_column(sa.String(64))  # the platform's own id of the settlement
    request_hash: Mapped[str] = mapped_column(sa.String(64))  # the same reference with other facts is refused
    beneficiary_id: Mapped[str] = mapped_column(sa.ForeignKey("persons.id"), index=True)
    category: Mapped[str] = mapped_column(sa.String(16))
    institution_code: Mapped[str] = mapped_column(sa.String(32))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    acct_pay: Mapped[int] = mapped_column(sa.BigInteger)
    acct_mulaid_pay: Mapped[int] = mapped_column(sa.BigInteger)
    psn_cash_pay: Mapped[int] = mapped_column(sa.BigInteger)
    balc: Mapped[int] = mapped_column(sa.BigInteger)  # the beneficiary's balance right after, fen
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # why, as the reversing platform or operator gave it (ID numbers, mobile numbers and the persons' names masked)
    reversal_reason: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("platform_id", "reference", name="uq_settlements_reference"),
        sa.CheckConstraint("amount_fen > 0 AND acct_pay >= 0 AND acct_mulaid_pay >= 0 AND psn_cash_pay >= 0"
                           " AND acct_pay + acct_mulaid_pay + psn_cash_pay = amount_fen", name="parts_add_up"),
        sa.CheckConstraint(f"status in {SETTLEMENT_STATUSES}", name="settlement_status"),
        sa.CheckConstraint(f"category in {CATEGORIES}", name="settlement_category"),
        # the dashboard's list (newest first, keyset pages, a day's range) and the overview's count of today
        sa.Index("ix_settlements_created", "created_at", "id"),
    )


class SettlementSplit(Base):
    """What one grantor paid through one binding."""

    __tablename__ = "settlement_splits"

    settlement_id: Mapped[str] = mapped_column(sa.ForeignKey("settlements.id"), primary_key=True)
    binding_id: Mapped[str] = mapped_column(sa.ForeignKey("bindings.id"), primary_key=True)
    binding_version: Mapped[int] = mapped_column(sa.Integer)
    position: Mapped[int] = mapped_column(sa.SmallInteger)  # 1 paid first (the deduction order)
    grantor_id: Mapped[str] = mapped_column(sa.ForeignKey("persons.id"))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_settlement_splits_binding", "binding_id", "binding_version"),
        sa.CheckConstraint("amount_fen > 0", name="split_positive"),
    )


class LedgerEntry(Base):
    """One posting line; append-only. `amount_fen` is signed: negative leaves the account."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    settlement_id: Mapped[str] = mapped_column(sa.ForeignKey("settlements.id"), index=True)
    posting: Mapped[str] = mapped_column(sa.String(16))  # settle | reverse
    account: Mapped[str] = mapped_column(sa.String(48), index=True)
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the event telling the platforms of this posting (settlement.completed or .reversed): which registry
    # snapshots already hold it (workflows/person_events.py); no foreign key, the outbox is purged, the ledger not
    outbox_id: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (sa.CheckConstraint("posting in ('settle', 'reverse')", name="ledger_posting"),)
