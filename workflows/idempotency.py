"""`Idempotency-Key` records: the first request with a key claims it (a unique row), later requests with
the same key and the same body get the stored answer, a different body is refused, and a request arriving
while the first is still in flight gets 409. 5xx answers are not stored, so a retry runs again."""
from __future__ import annotations

import hashlib

import sqlalchemy as sa

from models import IdempotencyRecord
from models.types import utcnow

from .errors import DomainError


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def claim(db, platform_id: str, key: str, digest: str) -> tuple[int | None, tuple[int, str] | None]:
    """(record id, None) when this request owns the key; (None, (status, body)) to replay."""
    if not key or len(key) > 255:
        raise DomainError("validation_failed", "Idempotency-Key is 1 to 255 characters")
    try:
        with db.begin() as s:
            rec = IdempotencyRecord(platform_id=platform_id, key=key, request_hash=digest, created_at=utcnow())
            s.add(rec)
        return rec.id, None
    except sa.exc.IntegrityError:
        pass
    with db() as s:
        rec = s.scalar(sa.select(IdempotencyRecord).where(IdempotencyRecord.platform_id == platform_id,
                                                          IdempotencyRecord.key == key))
    if rec.request_hash != digest:
        raise DomainError("idempotency_key_reused")
    if rec.status_code is None:
        raise DomainError("conflict", "a request with this Idempotency-Key is still in progress")
    return None, (rec.status_code, rec.response_body)


def finish(db, record_id: int, status: int, body: str) -> None:
    with db.begin() as s:
        rec = s.get(IdempotencyRecord, record_id)
        if status >= 500:
            s.delete(rec)
        else:
            rec.status_code, rec.response_body = status, body
