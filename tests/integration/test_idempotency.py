"""`Idempotency-Key` records on PostgreSQL: the claim is one statement in autocommit, so the unique key
alone decides between two requests carrying the same key (workflows/idempotency.py)."""
from __future__ import annotations

import hashlib
import json
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import IdempotencyRecord
from workflows import idempotency, kept_writes
from workflows.errors import DomainError

from .support import Outcome, poll, race, wait_for_a_lock_wait


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


def test_a_claim_that_meets_an_uncommitted_claim_of_its_key_waits_for_it_and_is_told_it_is_in_progress(
        pg_db, monkeypatch):
    """Given a request whose claim of a key is written but not yet committed (its transaction held open)
    When a second request with that key claims it
    Then the second waits on the first's row (seen in pg_stat_activity), and once the first commits it gets
    409 conflict, not an error and not a second record: the unique key decides, not a read before the
    write. (The race above passes also when the claims happen to run one after the other; this one stages
    the interleaving.)"""
    inserted, release = threading.Event(), threading.Event()
    plain = idempotency.autocommit

    @contextmanager
    def first_held_open(db):
        if threading.current_thread().name != "first":
            with plain(db) as conn:
                yield conn
            return
        with db.kw["bind"].connect() as conn, conn.begin():
            yield conn
            inserted.set()  # the claim is written; commit only when the second request waits for it
            assert release.wait(30), "the second claim never waited"

    monkeypatch.setattr(idempotency, "autocommit", first_held_open)
    first, second = Outcome(), Outcome()

    def run(outcome):
        try:
            outcome.value = idempotency.claim(pg_db, "jiangsu", "k-held", "d1")
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.error = exc
    a = threading.Thread(target=run, args=(first,), name="first", daemon=True)
    a.start()
    assert inserted.wait(30)
    b = threading.Thread(target=run, args=(second,), name="second", daemon=True)
    b.start()
    wait_for_a_lock_wait(pg_db, on="idempotency_records")
    release.set()
    a.join(30)
    b.join(30)
    assert first.ok and first.value[0] is not None and first.value[1] is None
    assert not second.ok and second.code == "conflict", second.error
    assert records(pg_db, "k-held") == 1


def test_a_finished_request_is_replayed_a_different_body_is_refused_and_a_5xx_is_forgotten(pg_db):
    """Given a key claimed and finished with 201 and a body
    When the same key comes again with the same body, then with another body
    Then the first gets the stored answer and the second 422 idempotency_key_reused;
    and a key whose request ended in a 5xx, a lost race (409 conflict) or 429 too_frequent can be claimed
    again (the request is retried)."""
    claimed, _ = idempotency.claim(pg_db, "jiangsu", "k-done", "d1")
    idempotency.finish(pg_db, claimed, 201, '{"id": "bnd_x"}')
    assert idempotency.claim(pg_db, "jiangsu", "k-done", "d1") == (None, (201, '{"id": "bnd_x"}'))
    with pytest.raises(DomainError) as refused:
        idempotency.claim(pg_db, "jiangsu", "k-done", "d2")
    assert refused.value.code == "idempotency_key_reused"
    assert idempotency.claim(pg_db, "xinjiang", "k-done", "d2")[0] is not None  # keys are per platform

    failed, _ = idempotency.claim(pg_db, "jiangsu", "k-5xx", "d1")
    idempotency.finish(pg_db, failed, 503, "")
    again, replay = idempotency.claim(pg_db, "jiangsu", "k-5xx", "d1")
    assert again is not None and again != failed and replay is None

    # so is a refusal a retry may not meet again: a lost race, the frequency window (its Retry-After)
    for code, status in (("conflict", 409), ("too_frequent", 429)):
        refused, _ = idempotency.claim(pg_db, "jiangsu", f"k-{code}", "d1")
        idempotency.finish(pg_db, refused, status, '{"code": "x"}', code=code)
        again, replay = idempotency.claim(pg_db, "jiangsu", f"k-{code}", "d1")
        assert again is not None and replay is None


def test_a_claim_whose_request_died_is_taken_over_by_a_retry_once_abandoned(pg_db):
    """Given a key claimed at T0 by a request whose process was killed before `finish` (no answer stored),
    when retries with the same body arrive before and after `ABANDONED_S`, and one with another body after,
    then the early retry is 409 conflict (it may still be running), the late one owns the key again (the
    command runs again; its answer is then kept and replayed), and the other body is idempotency_key_reused."""
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    first, replay = idempotency.claim(pg_db, "jiangsu", "k-died", "d1", now=t0)
    assert first is not None and replay is None
    soon = t0 + timedelta(seconds=idempotency.ABANDONED_S - 1)
    late = t0 + timedelta(seconds=idempotency.ABANDONED_S + 1)

    with pytest.raises(DomainError) as early:
        idempotency.claim(pg_db, "jiangsu", "k-died", "d1", now=soon)
    assert early.value.code == "conflict"
    with pytest.raises(DomainError) as other_body:
        idempotency.claim(pg_db, "jiangsu", "k-died", "d2", now=late)
    assert other_body.value.code == "idempotency_key_reused"
    taken, replay = idempotency.claim(pg_db, "jiangsu", "k-died", "d1", now=late)
    assert taken.id == first.id and replay is None and records(pg_db, "k-died") == 1
    idempotency.finish(pg_db, taken, 201, '{"id": "bnd_x"}')
    assert idempotency.claim(pg_db, "jiangsu", "k-died", "d1", now=late) == (None, (201, '{"id": "bnd_x"}'))


def test_a_request_taken_over_cannot_overwrite_or_drop_its_successors_answer(pg_db):
    """Given a key claimed at T0 by a request that was still running (not dead) when a retry took it over,
    when the first request finishes late, with a 5xx or with an answer,
    then neither drops nor overwrites the record: the retry's own answer is the one kept and replayed."""
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    slow, _ = idempotency.claim(pg_db, "jiangsu", "k-slow", "d1", now=t0)
    late = t0 + timedelta(seconds=idempotency.ABANDONED_S + 1)
    retry, _ = idempotency.claim(pg_db, "jiangsu", "k-slow", "d1", now=late)

    idempotency.finish(pg_db, slow, 503, "")  # would have deleted the record, and a third request run again
    assert records(pg_db, "k-slow") == 1
    idempotency.finish(pg_db, retry, 200, '{"state": "authorized"}')
    idempotency.finish(pg_db, slow, 409, '{"code": "illegal_transition"}')  # would have replaced the answer
    assert idempotency.claim(pg_db, "jiangsu", "k-slow", "d1", now=late) == (None, (200, '{"state": "authorized"}'))


def test_two_retries_of_an_abandoned_claim_at_once_one_takes_it_over(pg_db):
    """Given an abandoned claim (its request died long ago),
    when two retries with the same body arrive at the same moment,
    then exactly one owns the key and the other is told it is in progress."""
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    idempotency.claim(pg_db, "jiangsu", "k-died-2", "d1", now=t0)
    late = t0 + timedelta(seconds=idempotency.ABANDONED_S + 1)
    outcomes = race(lambda: idempotency.claim(pg_db, "jiangsu", "k-died-2", "d1", now=late),
                    lambda: idempotency.claim(pg_db, "jiangsu", "k-died-2", "d1", now=late))
    assert sorted(o.ok for o in outcomes) == [False, True]
    assert [o.code for o in outcomes if not o.ok] == ["conflict"]


# --- the keyed digest and the retention (a request body may carry an ID number) ---------------------------

def _client(db, crypto_keys):
    from models.seed import dev_credentials
    from models.settings import Settings
    from web.app import create_app
    settings = Settings(database_url="sqlite://", redis_url=None, pii_keys=crypto_keys["pii_keys"],
                        pii_active_key=crypto_keys["active"], lookup_key=crypto_keys["lookup_key"],
                        secret_key="test-secret", dev_mode=True)
    return (create_app(settings, db=db, engine=None).test_client(),
            {"Authorization": f"Bearer {dev_credentials('jiangsu')[0]}"})


def _stored_hash(db, key: str) -> str:
    with db() as s:
        return s.scalar(sa.select(IdempotencyRecord.request_hash).where(IdempotencyRecord.key == key))


def test_a_request_with_a_key_is_kept_under_a_keyed_digest_not_a_hash_anyone_can_recompute(pg_db, crypto_keys):
    """Given a platform registering a person (the body carries the ID number) with an Idempotency-Key
    When the request is stored for replays
    Then its record holds neither the number nor the unkeyed SHA-256 of the request (which anyone could
    recompute for every candidate number), but the keyed digest; and the same request again is replayed."""
    from workflows.idnumbers import with_check_digit
    client, auth = _client(pg_db, crypto_keys)
    number = with_check_digit("32010219800101771")
    body = json.dumps({"id_number": number, "name": "张三", "insurance_type": "employee",
                       "insurance_status": "active", "region_code": "320100", "real_name_verified": True}).encode()
    headers = {**auth, "Idempotency-Key": "k-keyed", "Content-Type": "application/json"}
    first = client.post("/api/v1/persons", data=body, headers=headers)
    assert first.status_code in (200, 201), first.get_json()
    stored = _stored_hash(pg_db, "k-keyed")
    assert stored == idempotency.fingerprint("POST", "/api/v1/persons", body)
    assert stored not in idempotency.other_fingerprints("POST", "/api/v1/persons", body)
    assert stored != hashlib.sha256(b"POST /api/v1/persons\n" + body).hexdigest()
    again = client.post("/api/v1/persons", data=body, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.get_json() == first.get_json()


@pytest.mark.parametrize("key", ["invite-320102198001011238", "invite-3201.0219.8001.0112.38", "邀请-张三-1",
                                 "call 13812345678"])
def test_a_key_made_of_a_persons_number_or_not_plain_is_kept_as_a_keyed_digest(pg_db, crypto_keys, key):
    """Given a platform whose Idempotency-Key carries an ID number (however grouped), a Chinese name or a
    mobile number, When it sends a request with it twice, Then the second is replayed, and the record holds
    `#` and a keyed digest, never the key; a plain key is kept as sent (a bureau reads it when a platform
    asks about its retry)."""
    client, auth = _client(pg_db, crypto_keys)
    from workflows.idnumbers import with_check_digit
    body = json.dumps({"id_number": with_check_digit("32010219800101772"), "name": "李四",
                       "insurance_type": "resident", "insurance_status": "active", "region_code": "320100"}).encode()
    for sent in (key, "plain-key-1"):
        headers = {**auth, "Idempotency-Key": sent.encode().decode("latin-1"), "Content-Type": "application/json"}
        first = client.post("/api/v1/persons", data=body, headers=headers)
        again = client.post("/api/v1/persons", data=body, headers=headers)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.get_json() == first.get_json()
    with pg_db() as s:
        kept = s.scalars(sa.select(IdempotencyRecord.key)).all()
    assert "plain-key-1" in kept and len(kept) == 2
    [digest] = [k for k in kept if k != "plain-key-1"]
    assert digest.startswith("#") and len(digest) == 65
    assert not any(part in k for k in kept for part in ("320102198001011238", "3201.0219", "13812345678", "张"))
    assert digest == idempotency.stored_key(key.encode().decode("latin-1"))


def test_a_record_claimed_before_the_digest_was_keyed_still_answers_its_retry(pg_db, crypto_keys):
    """Given a record claimed and finished before the upgrade: it holds the unkeyed digest of its request
    When the platform retries that request with the same key after the upgrade
    Then it gets the kept answer (not 422 idempotency_key_reused), and another body under that key is
    still refused."""
    client, auth = _client(pg_db, crypto_keys)
    body = json.dumps({"id_number": "bad"}).encode()
    with pg_db.begin() as s:
        s.add(IdempotencyRecord(platform_id="jiangsu", key="k-legacy", status_code=201, response_body='{"kept": 1}',
                                request_hash=hashlib.sha256(b"POST /api/v1/persons\n" + body).hexdigest()))
    headers = {**auth, "Idempotency-Key": "k-legacy", "Content-Type": "application/json"}
    again = client.post("/api/v1/persons", data=body, headers=headers)
    assert (again.status_code, again.get_json(), again.headers.get("Idempotent-Replayed")) == (201, {"kept": 1}, "true")
    other = client.post("/api/v1/persons", data=b'{"id_number": "other"}', headers=headers)
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"


def test_keys_past_their_retention_are_forgotten_in_batches_the_younger_kept(pg_db):
    """Given keys claimed 25 h, 24 h + 1 s and 23 h ago (retention 24 h), the oldest among them in-flight
    When the scheduler's purge runs with batches of 2
    Then the two older than the retention go and the 23-hour-old one stays; the same key may then be
    claimed afresh (it runs again: the command's own guards answer a repeat)."""
    from datetime import timedelta

    from models.types import utcnow
    now = utcnow()
    ages = {"k-old": timedelta(hours=25), "k-just": timedelta(seconds=idempotency.RETENTION_S + 1),
            "k-young": timedelta(hours=23)}
    with pg_db.begin() as s:
        for key, age in ages.items():
            s.add(IdempotencyRecord(platform_id="jiangsu", key=key, request_hash="h", created_at=now - age,
                                    status_code=None if key == "k-old" else 201, response_body="{}"))
    assert idempotency.purge(pg_db, now=now, batch=2) == 2
    assert [records(pg_db, k) for k in ages] == [0, 0, 1]
    claimed, replay = idempotency.claim(pg_db, "jiangsu", "k-old", "h2", now=now)
    assert claimed is not None and replay is None


def test_the_scheduler_forgets_expired_keys_each_minute(pg_db):
    """Given a key claimed two days ago
    When the scheduler's minute tick runs
    Then the key is gone."""
    from datetime import timedelta

    from models.types import utcnow
    from workers import scheduler
    with pg_db.begin() as s:
        s.add(IdempotencyRecord(platform_id="jiangsu", key="k-tick", request_hash="h", status_code=201,
                                response_body="{}", created_at=utcnow() - timedelta(days=2)))
    scheduler.tick(pg_db, n=0)
    assert records(pg_db, "k-tick") == 0


def test_a_retry_taking_over_an_abandoned_claim_from_before_the_keyed_digest_writes_the_keyed_one(pg_db):
    """Given a claim made before the digest was keyed (it holds the unkeyed digest) whose request died
    When a retry of the same request takes it over once it is abandoned
    Then the record now holds the keyed digest: the unkeyed one does not live on with the new claim."""
    from datetime import timedelta

    from models.types import utcnow
    now = utcnow()
    body = b'{"id_number": "x"}'
    keyed, legacy = (idempotency.fingerprint("POST", "/api/v1/persons", body),
                     idempotency.other_fingerprints("POST", "/api/v1/persons", body)[-1])
    with pg_db.begin() as s:
        s.add(IdempotencyRecord(platform_id="jiangsu", key="k-old-claim", request_hash=legacy, status_code=None,
                                created_at=now - timedelta(seconds=idempotency.ABANDONED_S + 1)))
    claimed, replay = idempotency.claim(pg_db, "jiangsu", "k-old-claim", keyed, also=(legacy,), now=now)
    assert claimed is not None and replay is None
    assert _stored_hash(pg_db, "k-old-claim") == keyed


def test_a_purge_that_waited_for_a_take_over_of_an_old_claim_leaves_it(pg_db):
    """Given a claim a day and more old whose take-over by a retry is written (the claim made young
    again) but not yet committed
    When the purge runs meanwhile, waits for that row, and the take-over then commits
    Then the purge leaves the record: its age is checked again on the row the take-over left."""
    from datetime import timedelta

    from models.types import utcnow
    from .support import wait_for_a_lock_wait
    now = utcnow()
    with pg_db.begin() as s:
        s.add(IdempotencyRecord(platform_id="jiangsu", key="k-taken", request_hash="h", status_code=None,
                                created_at=now - timedelta(seconds=idempotency.RETENTION_S + 60)))
    holder = pg_db.kw["bind"].connect()
    tx = holder.begin()
    holder.execute(sa.update(IdempotencyRecord).where(IdempotencyRecord.key == "k-taken").values(created_at=now))
    purged = Outcome()

    def purge():
        try:
            purged.value = idempotency.purge(pg_db, now=now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            purged.error = exc

    t = threading.Thread(target=purge)
    t.start()
    try:
        wait_for_a_lock_wait(pg_db, on="idempotency_records")
    finally:
        tx.commit()
        holder.close()
        t.join(60)
    assert purged.ok and purged.value == 0, purged.error
    assert records(pg_db, "k-taken") == 1


@pytest.fixture(autouse=True)
def _no_settling_thread_left(monkeypatch):
    """A test that keeps an outcome starts the settling thread: it turns quickly here, and is done before
    the next test (it holds the sessionmaker of the test that started it)."""
    monkeypatch.setattr(idempotency.KEPT, "retry_s", 0.05)
    yield
    poll(lambda: idempotency.KEPT.thread is None, timeout=30, what="the settling thread done")


def _unreachable() -> sa.exc.OperationalError:
    """What SQLAlchemy raises when psycopg cannot connect at all (a restart, a failover)."""
    import psycopg
    return sa.exc.OperationalError("connect", {}, psycopg.OperationalError("connection failed: refused"))


@pytest.mark.parametrize("status, body, then", [(201, '{"id": "b1"}', "replayed"), (503, "", "runs again")])
def test_an_outcome_the_database_could_not_take_is_written_when_it_answers_again(pg_db, monkeypatch, status,
                                                                                body, then):
    """Given a request that claimed its key
    When its `finish` meets a database that cannot be reached (the request failed for that reason, or the
    database went away after its command committed)
    Then `finish` does not raise (the request answers what it has) and the record stays in flight; and once
    the database answers again, this process's next claim (of any key) writes the kept outcome first: a
    retry of the request is then replayed its answer (a 2xx), or owns the key again and runs (a 5xx),
    instead of 409 "in progress" until the claim is abandoned ten minutes later."""
    monkeypatch.setattr(idempotency.KEPT, "pending", [])
    monkeypatch.setattr(idempotency.KEPT, "_start", lambda db: None)  # this test is about the claim's part
    claimed, _ = idempotency.claim(pg_db, "jiangsu", f"k-away-{status}", "d1")
    plain = kept_writes.autocommit

    @contextmanager
    def away(db):
        raise _unreachable()
        yield  # pragma: no cover

    monkeypatch.setattr(kept_writes, "autocommit", away)
    idempotency.finish(pg_db, claimed, status, body)
    monkeypatch.setattr(kept_writes, "autocommit", plain)
    assert len(idempotency.KEPT.pending) == 1
    with pytest.raises(DomainError) as refused:  # still in flight for another process meanwhile
        _claim_elsewhere(pg_db, f"k-away-{status}")
    assert refused.value.code == "conflict"

    idempotency.claim(pg_db, "jiangsu", f"k-other-{status}", "d2")  # any claim of this process settles it
    assert idempotency.KEPT.pending == []
    again, replay = idempotency.claim(pg_db, "jiangsu", f"k-away-{status}", "d1")
    if then == "replayed":
        assert again is None and replay == (201, body)
    else:
        assert again is not None and replay is None and records(pg_db, f"k-away-{status}") == 1


def _claim_elsewhere(db, key: str, now=None):
    """A claim of `key` as another process makes it: without this process's kept outcomes (they are its own;
    another process cannot write them)."""
    kept = idempotency.KEPT.pending[:]
    idempotency.KEPT.pending.clear()
    try:
        return idempotency.claim(db, "jiangsu", key, "d1", now=now)[0]
    finally:
        idempotency.KEPT.pending[:0] = kept


def test_an_outcome_kept_for_later_is_not_written_over_a_take_over(pg_db, monkeypatch):
    """Given a kept outcome (`finish` met an unreachable database) whose claim another request took over
    after ABANDONED_S
    When the kept outcome is written at last
    Then it changes nothing: the successor's claim and answer stand."""
    monkeypatch.setattr(idempotency.KEPT, "pending", [])
    t0 = idempotency.utcnow()
    claimed, _ = idempotency.claim(pg_db, "jiangsu", "k-kept-late", "d1", now=t0)
    idempotency.KEPT.pending.append((claimed, 503, "", None))
    late = t0 + timedelta(seconds=idempotency.ABANDONED_S + 1)
    successor = _claim_elsewhere(pg_db, "k-kept-late", late)
    assert successor is not None and successor != claimed
    idempotency.finish(pg_db, successor, 200, '{"ok": true}')  # writes the kept drop first: not the successor's
    assert idempotency.KEPT.pending == []
    assert idempotency.claim(pg_db, "jiangsu", "k-kept-late", "d1") == (None, (200, '{"ok": true}'))


def test_a_record_claimed_under_the_body_as_sent_still_answers_its_retry(pg_db, crypto_keys):
    """Given a finished record whose digest is of the body as sent (claimed before the digest took the
    canonical body: spaces and key order as the client wrote them)
    When the same request comes again with its key, written the same way
    Then it is replayed (its digest of the sent body is among `other_fingerprints`), not refused as reused."""
    from models.crypto import keyed_digest
    sent = b'{"name": "x",  "id_number": "1"}'
    as_sent = keyed_digest("idempotency", b"POST /api/v1/persons\n" + sent)
    assert as_sent != idempotency.fingerprint("POST", "/api/v1/persons", sent)
    with pg_db.begin() as s:
        s.add(IdempotencyRecord(platform_id="jiangsu", key="k-as-sent", request_hash=as_sent, status_code=200,
                                response_body='{"id": "psn_1"}'))
    assert idempotency.claim(pg_db, "jiangsu", "k-as-sent", idempotency.fingerprint("POST", "/api/v1/persons", sent),
                             also=idempotency.other_fingerprints("POST", "/api/v1/persons", sent)) == (
        None, (200, '{"id": "psn_1"}'))


@pytest.mark.parametrize("a, b, same", [
    (b'{"a": 1, "b": [1, 2]}', b'{"b":[1,2],"a":1}', True),
    (b'{"name": "\\u5f20"}', '{"name": "张"}'.encode(), True),
    (b'{"a": 1}', b'{"a": 2}', False),
    (b'{"b": [1, 2]}', b'{"b": [2, 1]}', False),
    (b"", b"{}", False),  # an empty body is no JSON object: where a body is required it is malformed
    (b"not json", b"not json", True),
])
def test_the_fingerprint_is_of_what_was_asked_not_of_how_it_was_written(crypto_keys, a, b, same):
    """Given two bodies, When their fingerprints are taken, Then they agree exactly when the JSON is the same
    (key order, spacing and escapes aside); a body that is not JSON counts as sent."""
    assert (idempotency.fingerprint("POST", "/p", a) == idempotency.fingerprint("POST", "/p", b)) is same


def test_a_kept_outcome_is_written_once_the_database_answers_without_waiting_for_another_request(
        pg_db, monkeypatch):
    """Given a request whose `finish` met an unreachable database (its 2xx answer kept in the process)
    When the database answers again and no other request comes to this process
    Then the kept answer is written by the process's own settling thread: a retry that reaches another
    process is replayed that answer instead of meeting 409 "in progress"."""
    monkeypatch.setattr(idempotency.KEPT, "pending", [])
    claimed, _ = idempotency.claim(pg_db, "jiangsu", "k-settled-alone", "d1")
    plain = kept_writes.autocommit
    tries = []

    @contextmanager
    def away_twice(db):
        tries.append(1)
        if len(tries) <= 2:  # `finish` and the thread's first turn meet the outage; then it is over
            raise _unreachable()
        with plain(db) as conn:
            yield conn

    monkeypatch.setattr(kept_writes, "autocommit", away_twice)
    idempotency.finish(pg_db, claimed, 201, '{"id": "b9"}')
    poll(lambda: not idempotency.KEPT.pending and idempotency.KEPT.thread is None, timeout=30,
         what="the kept outcome written by the settling thread")
    monkeypatch.setattr(kept_writes, "autocommit", plain)
    assert len(tries) >= 3
    assert _claim_elsewhere(pg_db, "k-settled-alone") is None  # replayed, not in flight
    assert idempotency.claim(pg_db, "jiangsu", "k-settled-alone", "d1") == (None, (201, '{"id": "b9"}'))
