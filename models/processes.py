"""Which background processes are running: a row per worker or scheduler process, refreshed while it runs.

Why: an operator at a bureau reads the dashboard, not the containers. Workers that are all down leave no
trace in the rows they would have changed (the scheduler keeps moving an unclaimed delivery's next try on),
and at a quiet hour no timer or event is late yet. Each process upserts its own row every
`workflows.processes.BEAT_S` seconds (`seen_at`) and marks it stopped when it stops cleanly; the overview
and `/metrics` count the rows seen lately. The table stays small: one row per process that ran in the last
day (`workflows.processes.FORGET_S`), whatever the traffic."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .types import UTCDateTime, utcnow


class ProcessBeat(Base):
    __tablename__ = "process_beats"

    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)  # kind:host:pid
    kind: Mapped[str] = mapped_column(sa.String(16))  # worker | scheduler
    role: Mapped[str] = mapped_column(sa.String(16))  # running, active, standby, stopped
    host: Mapped[str] = mapped_column(sa.String(128))
    pid: Mapped[int] = mapped_column(sa.Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
