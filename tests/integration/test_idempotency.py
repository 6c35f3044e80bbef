"""`Idempotency-Key` records on PostgreSQL: the claim is one statement in autocommit, so the unique key
alone decides between two requests carrying the same key (workflows/idempotency.py)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import IdempotencyRecord
from workflows import idempotency
from workflows.errors import DomainError

from .support import race


def records(db, key: str) -> int:
    with db() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(IdempotencyRecord).where(IdempotencyRecord.key == key))


def test_two_requests_with_one_key_at_once_one_owns_it_the_other_is_told_it_is_in_progress(pg_db):
    """Given no record for a key
    When two requests with that key and the same body claim it at the same moment
    Then exactly one owns it (a record id) and the other gets 409 conflict (the first is still in flight),
    and there is one record."""
    outcomes = race(lambda: idempotency.claim(pg_db, "jiangsu", "k-race", "d1"),
                    lambda: idempotency.claim(pg_db, "jiangsu", "k-race", "d1"))
    owners = [o for o in outcomes if o.ok]
    assert len(owners) == 1 and owners[0].value[0] is not None and owners[0].value[1] is None
    assert [o.code for o in outcomes if not o.ok] == ["conflict"]
    assert records(pg_db, "k-race") == 1


def test_a_finished_request_is_replayed_a_different_body_is_refused_and_a_5xx_is_forgotten(pg_db):
    """Given a key claimed and finished with 201 and a body
    When the same key comes again with the same body, then with another body
    Then the first gets the stored answer and the second 422 idempotency_key_reused;
    and a key whose request ended in a 5xx can be claimed again (the failed request is retried)."""
    record_id, _ = idempotency.claim(pg_db, "jiangsu", "k-done", "d1")
    idempotency.finish(pg_db, record_id, 201, '{"id": "bnd_x"}')
    assert idempotency.claim(pg_db, "jiangsu", "k-done", "d1") == (None, (201, '{"id": "bnd_x"}'))
    with pytest.raises(DomainError) as refused:
        idempotency.claim(pg_db, "jiangsu", "k-done", "d2")
    assert refused.value.code == "idempotency_key_reused"
    assert idempotency.claim(pg_db, "xinjiang", "k-done", "d2")[0] is not None  # keys are per platform

    failed, _ = idempotency.claim(pg_db, "jiangsu", "k-5xx", "d1")
    idempotency.finish(pg_db, failed, 503, "")
    again, replay = idempotency.claim(pg_db, "jiangsu", "k-5xx", "d1")
    assert again is not None and again != failed and replay is None
