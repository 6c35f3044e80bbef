"""Inbound webhooks on the dashboard, on PostgreSQL: the binding a processed webhook named, the backlog per
platform, the problem list (its indexes, filters, pages, masking), and the operator's retry (one transaction
with its outbox row and audit row; the database decides a race with the worker)."""
from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from models import AuditEntry, OutboxMessage, ReceivedWebhook
from models.types import utcnow
from workflows import inbound, operators, outbox, platform_repair, verification, webhooks
from workflows.errors import DomainError
from workflows.idnumbers import with_check_digit
from workflows.once import run_once

from .support import accepted, invite, past_the_character_check, person, race, wait_for_a_lock_wait
from .test_person_events import deliver

pytestmark = pytest.mark.pg
ROUNDS = 20
NUL_UNBIND = {"binding_id": "bnd_\x00x", "actor": {"kind": "person", "id": "psn_x"}}  # past the check: fails in PostgreSQL


@pytest.fixture
def base():
    return utcnow().replace(microsecond=0) - timedelta(hours=2)  # the worker applies at the wall clock


@pytest.fixture
def staff(pg_db):
    return {role: operators.add(pg_db, f"{role}1", "correct horse battery", role) for role in ("viewer", "operator")}


def _row(db, rid) -> ReceivedWebhook:
    with db() as s:
        return s.get(ReceivedWebhook, rid)


def _gave_up(db) -> int:
    """A stored webhook that failed in the database on every run, until its last: outcome failed:DataError."""
    rid = deliver(db, "jiangsu", "binding.unbind_requested", NUL_UNBIND, sent=utcnow())
    with past_the_character_check():
        for _ in range(webhooks.MAX_ATTEMPTS - 1):
            with pytest.raises(sa.exc.DataError):
                webhooks.process(db, rid)
        assert webhooks.process(db, rid) == "failed:DataError"
    return rid


def _retrying(db, monkeypatch, data: dict, *, error: str = "RuntimeError boom", platform: str = "national",
              kind: str = "person.updated") -> int:
    """A stored webhook whose one run so far failed (pending, 1 attempt, its error recorded)."""
    rid = deliver(db, platform, kind, data, sent=utcnow())

    def failing(_db, _row):
        raise RuntimeError(error)
    monkeypatch.setattr(webhooks, "_apply", failing)
    with pytest.raises(RuntimeError):
        webhooks.process(db, rid)
    monkeypatch.undo()
    return rid


def _carriers(db, rid) -> list[OutboxMessage]:
    with db() as s:
        return [m for m in s.scalars(sa.select(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC)
                                     .order_by(OutboxMessage.id))
                if m.payload["data"]["received_webhook_id"] == rid]


def _worker(db, outbox_id: int) -> str:
    """What the outbox actor does with a `webhook.received` row (`workers.actors._handle` via run_once)."""
    return run_once(db, OutboxMessage, outbox_id,
                    lambda m: webhooks.process(db, m.payload["data"]["received_webhook_id"]))


def _registry(number: str) -> dict:
    return dict(id_number=number, name="王大明", insurance_type="resident", insurance_status="active",
                region_code="320100", real_name_verified=True)


def _number() -> str:
    day = uuid.uuid4().int % 3650
    return with_check_digit(f"320102{date(1970, 1, 1) + timedelta(days=day):%Y%m%d}{day % 1000:03d}")


# --- the binding a webhook names ----------------------------------------------------------------------

def test_the_binding_a_webhook_names_is_recorded_with_its_outcome_only_when_it_exists(pg_db, family, base):
    """Given a face verification waiting for its result and an accepted binding,
    When the verifier's `verification.completed`, a platform's `binding.unbind_requested` and a result naming
    a binding nobody holds are processed,
    Then the first two record the binding with their outcome, the third none (its outcome not_found), and
    the binding's page lists the webhooks that named it."""
    fam = family(pg_db, now=base)
    bid = invite(pg_db, fam, now=base)["id"]
    # opened now: the worker applies the result at the wall clock, inside the attempt's 10 minutes
    vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=utcnow())["verification_id"]
    passed = deliver(pg_db, "facecheck", "verification.completed",
                     {"verification_id": vid, "binding_id": bid, "result": "passed"}, sent=utcnow())
    other = accepted(pg_db, family(pg_db, now=base), now=base)
    unbind = deliver(pg_db, "jiangsu", "binding.unbind_requested",
                     {"binding_id": other, "actor": {"kind": "person", "id": "psn_stranger"}}, sent=utcnow())
    nobody = deliver(pg_db, "facecheck", "verification.completed",
                     {"verification_id": vid, "binding_id": "bnd_nobody", "result": "passed"}, sent=utcnow())

    assert [webhooks.process(pg_db, r) for r in (passed, unbind, nobody)] == ["passed", "not_your_binding",
                                                                               "not_found"]
    assert [_row(pg_db, r).binding_id for r in (passed, unbind, nobody)] == [bid, other, None]
    assert [w["id"] for w in inbound.of_binding(pg_db, bid)] == [passed]
    assert [(w["id"], w["kind"]) for w in inbound.of_binding(pg_db, other)] == [(unbind, "refused")]


# --- backlog and the problem list ---------------------------------------------------------------------

def test_the_backlog_and_problems_per_platform(pg_db, monkeypatch, base):
    """Given for Jiangsu a webhook that gave up and one refused by a rule (and one refused 8 days ago), and for
    the national platform one waiting and one retrying after a failed run, and an applied one,
    When the backlog is read,
    Then each platform counts its own: waiting, retrying, the oldest waiting one's age, and the problems of
    the last 7 days by kind; what was applied counts nowhere."""
    _gave_up(pg_db)
    assert webhooks.process(pg_db, deliver(pg_db, "jiangsu", "person.deceased", {"id_number": _number()},
                                           sent=utcnow())) == "not_found"
    old = deliver(pg_db, "jiangsu", "person.deceased", {"id_number": _number()}, sent=utcnow())
    webhooks.process(pg_db, old)
    with pg_db.begin() as s:
        s.execute(sa.update(ReceivedWebhook).where(ReceivedWebhook.id == old)
                  .values(received_at=utcnow() - timedelta(days=8)))
    deliver(pg_db, "national", "person.updated", _registry(_number()), sent=utcnow())
    _retrying(pg_db, monkeypatch, _registry(_number()))
    assert webhooks.process(pg_db, deliver(pg_db, "national", "person.updated", _registry(_number()),
                                           sent=utcnow())) == "applied"
    now = utcnow() + timedelta(seconds=30)

    got = inbound.backlog(pg_db, now=now)

    assert {k: v for k, v in got["jiangsu"].items() if not k.endswith("age_s")} == \
        {"pending": 0, "retrying": 0, "failed": 1, "refused": 1}
    assert {k: v for k, v in got["national"].items() if not k.endswith("age_s")} == \
        {"pending": 2, "retrying": 1, "failed": 0, "refused": 0}
    assert 30 <= got["national"]["oldest_age_s"] < 120 and got["jiangsu"]["oldest_age_s"] == 0
    assert 30 <= got["national"]["oldest_untried_age_s"] <= got["national"]["oldest_age_s"]
    assert got["xinjiang"] == {"pending": 0, "retrying": 0, "oldest_age_s": 0.0, "oldest_untried_age_s": 0.0,
                               "failed": 0, "refused": 0}


def test_the_problem_list_filters_pages_and_masks(pg_db, monkeypatch, family, base):
    """Given a gave-up webhook, two refused ones, a retrying one whose error quotes an ID number and a mobile
    number, and an applied one,
    When the problem list is read unfiltered (two to a page), by kind and by platform,
    Then it lists the four problems newest first over two pages without repeating one, each kind and
    platform only its own, the error masked, never a body; the applied one is in none."""
    gave_up = _gave_up(pg_db)
    refused = [deliver(pg_db, "jiangsu", "person.deceased", {"id_number": _number()}, sent=utcnow())
               for _ in range(2)]
    for rid in refused:
        assert webhooks.process(pg_db, rid) == "not_found"
    number = _number()
    retrying = _retrying(pg_db, monkeypatch, _registry(number), error=f"DataError: {number} 13812345678 refused")
    webhooks.process(pg_db, deliver(pg_db, "national", "person.updated", _registry(_number()), sent=utcnow()))

    first = inbound.problems(pg_db, limit=2)
    second = inbound.problems(pg_db, limit=2, after=first["next"])

    assert [w["id"] for w in first["items"] + second["items"]] == [retrying, *reversed(refused), gave_up]
    assert second["next"] is None
    assert [w["kind"] for w in first["items"]] == ["retrying", "refused"]
    assert [w["id"] for w in inbound.problems(pg_db, kind="failed")["items"]] == [gave_up]
    assert [w["id"] for w in inbound.problems(pg_db, kind="refused")["items"]] == list(reversed(refused))
    assert [w["id"] for w in inbound.problems(pg_db, platform="national")["items"]] == [retrying]
    assert [w["id"] for w in inbound.problems(pg_db, kind="pending", platform="national")["items"]] == [retrying]
    shown = inbound.detail(pg_db, retrying)
    assert number not in shown["last_error"] and "13812345678" not in shown["last_error"]
    assert number[:3] in shown["last_error"] and "138****5678" in shown["last_error"]
    assert "body" not in shown and shown["retryable"] and not inbound.detail(pg_db, refused[0])["retryable"]
    gave = inbound.detail(pg_db, gave_up)
    assert gave["outcome"] == "failed:DataError" and gave["last_error"].startswith("DataError")
    with pytest.raises(DomainError):
        inbound.problems(pg_db, after="not-a-cursor")


def _plans(db, monkeypatch, call) -> str:
    """The plans of the statements `call` runs, with sequential scans off (is an index usable at all?)."""
    seen: list = []
    engine = db.kw["bind"]

    def listen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "received_webhooks" in statement:
            seen.append((statement, parameters))
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(line for statement, parameters in seen for (line,) in
                         conn.exec_driver_sql("EXPLAIN " + statement, parameters).all())


def test_the_list_and_the_backlog_are_served_by_their_partial_indexes(pg_db, monkeypatch):
    """Given the problem list, the backlog and a binding's webhooks, When their statements are planned (with
    sequential scans off), Then each reads the partial indexes (problems, pending, binding): the
    predicates in their WHERE prove the indexes' own."""
    plans = _plans(pg_db, monkeypatch, lambda: (inbound.problems(pg_db), inbound.backlog(pg_db),
                                                inbound.of_binding(pg_db, "bnd_x")))
    for index in ("ix_received_webhooks_problems", "ix_received_webhooks_pending", "ix_received_webhooks_binding"):
        assert index in plans, plans


# --- the retry ----------------------------------------------------------------------------------------

def _audit(db) -> list[AuditEntry]:
    with db() as s:
        return list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "webhook_retry")
                              .order_by(AuditEntry.id)))


def test_a_gave_up_webhook_is_retried_with_a_new_outbox_row_as_ingest_writes_it(pg_db, staff, monkeypatch):
    """Given a webhook that gave up (failed:DataError after its 25 runs),
    When an operator retries it with a reason,
    Then in one transaction it is pending again (no outcome, runs 0, no error), an outbox row
    `webhook.received` carries it as ingest's does, published after commit, and the audit row says so; the
    worker then runs it again."""
    rid = _gave_up(pg_db)
    before = _carriers(pg_db, rid)
    published: list = []
    monkeypatch.setattr(outbox, "_listeners", [published.extend])

    done = platform_repair.retry_webhook(pg_db, staff["operator"], rid, "平台已修复数据")

    row = _row(pg_db, rid)
    assert (row.processed_at, row.outcome, row.attempts, row.last_error) == (None, None, 0, None)
    new = [m for m in _carriers(pg_db, rid) if m.id not in {b.id for b in before}]
    assert len(new) == 1 and published == [new[0].id]
    assert (new[0].topic, new[0].binding_id, new[0].processed_at) == (webhooks.TOPIC, None, None)
    assert new[0].payload["type"] == webhooks.TOPIC and new[0].payload["data"] == {"received_webhook_id": rid}
    assert set(new[0].payload) == set(before[0].payload)  # the envelope ingest writes
    [entry] = _audit(pg_db)
    assert (entry.operator, entry.outcome, entry.reason) == ("operator1", "ok", "平台已修复数据")
    assert entry.detail["was"] == "failed:DataError" and done["requeued"] == "new"
    with past_the_character_check(), pytest.raises(sa.exc.DataError):  # the worker runs it again (and it
        _worker(pg_db, new[0].id)  # fails again, counted from 1)
    assert _row(pg_db, rid).attempts == 1


def test_a_retrying_webhook_is_handed_back_through_its_own_outbox_row(pg_db, staff, monkeypatch):
    """Given a webhook whose run failed and which waits for the worker's next try (its outbox row unprocessed),
    When an operator retries it,
    Then its runs start from 0 again and its own outbox row is published again, no second one written (one
    row carries a webhook: two could run it at once); the worker then applies it."""
    rid = _retrying(pg_db, monkeypatch, _registry(_number()))
    [carrier] = _carriers(pg_db, rid)
    published: list = []
    monkeypatch.setattr(outbox, "_listeners", [published.extend])

    platform_repair.retry_webhook(pg_db, staff["operator"], rid, "重新处理")

    assert [m.id for m in _carriers(pg_db, rid)] == [carrier.id] and published == [carrier.id]
    assert (_row(pg_db, rid).attempts, _row(pg_db, rid).last_error) == (0, None)
    assert _worker(pg_db, carrier.id) == "applied" and _row(pg_db, rid).outcome == "applied"


def test_a_refused_or_applied_webhook_is_not_retried_and_the_refusal_is_audited(pg_db, staff):
    """Given a webhook refused by a rule and one applied, When an operator retries each, and a viewer and an
    operator without a reason try the refused one, Then each is refused (webhook_final: a refusal, like an
    application, is final; forbidden; reason_required), nothing changes, and every refusal is an audit row."""
    refused = deliver(pg_db, "jiangsu", "person.deceased", {"id_number": _number()}, sent=utcnow())
    applied = deliver(pg_db, "national", "person.updated", _registry(_number()), sent=utcnow())
    assert [webhooks.process(pg_db, r) for r in (refused, applied)] == ["not_found", "applied"]
    count = len(_carriers(pg_db, refused))

    codes = []
    for who, rid, reason in ((staff["operator"], refused, "再试"), (staff["operator"], applied, "再试"),
                             (staff["viewer"], refused, "再试"), (staff["operator"], refused, " ")):
        with pytest.raises(DomainError) as caught:
            platform_repair.retry_webhook(pg_db, who, rid, reason)
        codes.append(caught.value.code)

    assert codes == ["webhook_final", "webhook_final", "forbidden", "reason_required"]
    assert (_row(pg_db, refused).outcome, _row(pg_db, applied).outcome) == ("not_found", "applied")
    assert len(_carriers(pg_db, refused)) == count
    assert [a.outcome for a in _audit(pg_db)] == codes
    with pytest.raises(DomainError) as missing:
        platform_repair.retry_webhook(pg_db, staff["operator"], 10**9, "再试")
    assert missing.value.code == "not_found"


def test_a_retry_waits_for_the_workers_write_and_reads_what_it_recorded(pg_db, staff, monkeypatch):
    """Given a retrying webhook, and the worker's statement recording its outcome `applied` in flight (its row
    lock held, not committed yet),
    When an operator's retry runs meanwhile,
    Then the retry waits for that row (the database decides, not a read taken before it) and, once the
    worker's write commits, is refused: the webhook stays applied, nothing is queued again."""
    rid = _retrying(pg_db, monkeypatch, _registry(_number()))
    outcome: list = []
    with pg_db.kw["bind"].connect() as worker:
        worker.execute(sa.update(ReceivedWebhook).where(ReceivedWebhook.id == rid)
                       .values(processed_at=utcnow(), outcome="applied", last_error=None))
        thread = threading.Thread(target=lambda: outcome.append(_try_retry(pg_db, staff["operator"], rid)))
        thread.start()
        wait_for_a_lock_wait(pg_db, on="received_webhooks")
        worker.commit()
    thread.join(30)
    assert outcome == ["webhook_final"]
    row = _row(pg_db, rid)
    assert (row.outcome, row.processed_at is not None) == ("applied", True)
    assert len(_carriers(pg_db, rid)) == 1


def _try_retry(db, who, rid) -> str:
    try:
        platform_repair.retry_webhook(db, who, rid, "重试")
        return "ok"
    except DomainError as exc:
        return exc.code


def test_a_retry_racing_the_worker_applies_the_webhook_once(pg_db, staff, monkeypatch):
    """Given a webhook registering a person, pending after a failed run,
    When the worker runs it (through its outbox row) while an operator retries it, released together,
    ROUNDS times,
    Then whatever the order: the retry is done or refused illegal_transition (the worker had recorded the
    outcome); once every outbox row of the webhook has been handled its outcome is `applied` (never `stale`,
    which a run after it was applied would record), one outbox row carries it, one audit row per retry.
    Each side pauses a random few milliseconds inside (the worker before recording its outcome, the retry
    between reading the row and resetting it), so that every interleaving of the two happens."""
    rng = random.Random(11)
    real_apply, real_kind = webhooks._apply, inbound.kind_of
    for _ in range(ROUNDS):
        rid = _retrying(pg_db, monkeypatch, _registry(_number()))
        [carrier] = _carriers(pg_db, rid)
        pauses = [rng.uniform(0, 0.02), rng.uniform(0, 0.02)]
        monkeypatch.setattr(webhooks, "_apply", lambda db, row: (real_apply(db, row), time.sleep(pauses[0]))[0])
        monkeypatch.setattr(inbound, "kind_of", lambda *a: (time.sleep(pauses[1]), real_kind(*a))[1])

        outcomes = race(lambda: _worker(pg_db, carrier.id),
                        lambda: platform_repair.retry_webhook(pg_db, staff["operator"], rid, "重试"))

        monkeypatch.undo()
        assert outcomes[0].ok, outcomes[0].error
        assert outcomes[1].ok or outcomes[1].code == "illegal_transition", outcomes[1].error
        for m in _carriers(pg_db, rid):  # the relay's re-send of anything left, as the actor handles it
            if m.processed_at is None:
                _worker(pg_db, m.id)
        row = _row(pg_db, rid)
        assert (row.outcome, len(_carriers(pg_db, rid))) == ("applied", 1)
    assert len(_audit(pg_db)) == ROUNDS
