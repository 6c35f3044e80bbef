"""Column types shared by the models: timezone-aware UTC timestamps on every backend, opaque ids.

SQLite has no timezone type, so timestamps are stored as naive UTC and handed back aware (UTC)."""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """A time-ordered opaque id (`bnd_01j…`, 26 chars after the prefix, ULID layout): 48 bits of
    milliseconds then 80 random bits, so new rows land at the right edge of the primary-key index."""
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_B32[n & 31])
        n >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


MAX_BIGINT = 2 ** 63 - 1  # the largest id or stamp a BIGINT column holds: a larger one in a URL was never issued


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def seconds_since(then: datetime | None, now: datetime) -> float:
    """Seconds from `then` to `now`, never negative; 0 when there is no `then` (an age of nothing)."""
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out; naive input is refused."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
