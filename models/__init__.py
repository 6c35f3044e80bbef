"""Persistence for Gongji: SQLAlchemy 2.x models, engine/session set-up, Alembic migrations, seed data.

The bottom layer: it imports nothing from workflows, workers or web."""

from .base import Base
from .bindings import ACTIVE_STATES, Binding, Departure, Transition, VerificationAttempt
from .delivery import Delivery, DeliveryAttempt, PlatformSync
from .operators import ROLES, AuditEntry, BatchJob, Operator
from .messaging import IdempotencyRecord, OutboxMessage, ReceivedWebhook
from .money import LedgerEntry, Settlement, SettlementSplit
from .persons import Person
from .processes import ProcessBeat
from .regions import Platform, Region, RegionPolicy

__all__ = ["ACTIVE_STATES", "AuditEntry", "Base", "BatchJob", "Operator", "ROLES", "Binding", "Delivery", "Departure",
           "DeliveryAttempt", "PlatformSync", "IdempotencyRecord", "LedgerEntry", "OutboxMessage", "Person", "Platform",
           "ProcessBeat", "ReceivedWebhook", "Region", "RegionPolicy", "Settlement", "SettlementSplit", "Transition",
           "VerificationAttempt"]
