"""Operator actions on PostgreSQL: each one transaction with its audit row, refusals audited and writing
nothing else, roles enforced in the workflow (not only in the views), two operators racing, batches."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import AuditEntry, BatchJob, OutboxMessage, VerificationAttempt
from workflows import batches, casefile, face_sessions, operators, queries, repair, routing, verification
from workflows.errors import DomainError

from .support import T0, assert_history_consistent, binding, history, invite, person, race

pytestmark = [pytest.mark.pg]
LATER = T0 + timedelta(minutes=5)


@pytest.fixture
def staff(pg_db):
    return {role: operators.add(pg_db, f"{role}1", "correct horse battery", role)
            for role in ("viewer", "operator", "admin")}


def _audit(db, binding_id=None) -> list[AuditEntry]:
    with db() as s:
        q = sa.select(AuditEntry).order_by(AuditEntry.id)
        return list(s.scalars(q.where(AuditEntry.binding_id == binding_id) if binding_id else q))


def _request_failed(db, fam) -> tuple[str, str]:
    """A binding whose face-verification session request failed at the provider: (binding, attempt)."""
    bid = invite(db, fam)["id"]
    v = verification.start_verification(db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
    face_sessions.session_failed(db, v["verification_id"], "HTTP 503")
    return bid, v["verification_id"]


def test_sign_in_checks_the_password_and_answers_the_same_for_unknown_users(pg_db, staff):
    """Given an operator, When signing in right, wrong, and as nobody, Then only the right one passes and
    both failures are the same `unauthorized`."""
    assert operators.authenticate(pg_db, "admin1", "correct horse battery").role == "admin"
    codes = []
    for user, pw in (("admin1", "wrong password!"), ("nobody", "correct horse battery")):
        with pytest.raises(DomainError) as err:
            operators.authenticate(pg_db, user, pw)
        codes.append((err.value.code, err.value.detail))
    assert codes[0] == codes[1] == ("unauthorized", "wrong username or password")


def test_retry_asks_the_provider_again_in_one_transaction_with_its_audit_row(pg_db, family, staff):
    """Given a binding whose provider request failed, When an operator retries it with a reason, Then the
    attempt is reset, one internal retry event names the attempt, and the audit row says who, why, what."""
    bid, vid = _request_failed(pg_db, family(pg_db))
    detail = repair.retry(pg_db, staff["operator"], bid, "citizen called: stuck at face check", now=LATER)
    assert detail["reasons"] == ["verification_request_failed"] and detail["verifications"] == [vid]
    with pg_db() as s:
        attempt = s.get(VerificationAttempt, vid)
        retry_events = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.topic == routing.RETRY_TOPIC)).all()
    assert attempt.provider_status is None and attempt.status == "pending"
    assert [m.payload["data"]["verifications"] for m in retry_events] == [[vid]]
    [entry] = _audit(pg_db, bid)
    assert (entry.operator, entry.action, entry.outcome, entry.reason) == (
        "operator1", "retry", "ok", "citizen called: stuck at face check")
    out = routing.fan_out(pg_db, retry_events[0].id, now=LATER)
    assert out.handled and out.verifications == [vid] and out.ready == []


def test_a_refused_action_writes_only_its_audit_row(pg_db, family, staff):
    """Given a stuck binding, When a viewer retries, an operator retries without a reason, and an operator
    unbinds (admin only), Then each is refused with its code, the binding is unchanged, and each refusal
    is audited."""
    fam = family(pg_db)
    bid, _ = _request_failed(pg_db, fam)
    before = binding(pg_db, bid).version
    attempts = [(repair.retry, staff["viewer"], "look", "forbidden"),
                (repair.retry, staff["operator"], "  ", "reason_required"),
                (repair.unbind, staff["operator"], "asked to", "forbidden")]
    for action, who, why, code in attempts:
        with pytest.raises(DomainError) as err:
            action(pg_db, who, bid, why, now=LATER)
        assert err.value.code == code
    assert binding(pg_db, bid).version == before
    with pytest.raises(DomainError):  # a refused reason is stored masked too
        repair.retry(pg_db, staff["viewer"], bid, f"caller {fam.beneficiary}", now=LATER)
    assert fam.beneficiary not in (_audit(pg_db, bid)[-1].reason or "")
    assert [(a.operator, a.outcome) for a in _audit(pg_db, bid)[:3]] == [
        ("viewer1", "forbidden"), ("operator1", "reason_required"), ("operator1", "forbidden")]


def test_retry_of_a_binding_that_is_not_stuck_is_refused(pg_db, family, staff):
    """Given a fresh invitation, When an operator retries it, Then `not_stuck` and nothing changes."""
    bid = invite(pg_db, family(pg_db))["id"]
    with pytest.raises(DomainError) as err:
        repair.retry(pg_db, staff["operator"], bid, "checking", now=T0 + timedelta(seconds=5))
    assert err.value.code == "not_stuck"
    assert binding(pg_db, bid).version == 1


def test_expire_now_goes_through_the_machine_with_the_operator_and_reason_in_history(pg_db, family, staff):
    """Given an invitation, When an operator expires it with a reason, Then the binding is expired, its
    last history row names the operator and the reason, and history stays consistent."""
    bid = invite(pg_db, family(pg_db))["id"]
    assert repair.expire(pg_db, staff["operator"], bid, "duplicate registration", now=LATER) == {
        "from": "invited", "to": "expired"}
    last = history(pg_db, bid)[-1]
    assert (last.event, last.actor_kind, last.actor_id, last.reason, last.channel) == (
        "expire", "operator", "operator1", "duplicate registration", "dashboard")
    assert_history_consistent(pg_db, bid)
    # platforms learn that an operator acted, not which member of staff (the dashboard and audit log name them)
    with pg_db() as s:
        event = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.binding_id == bid)
                          .order_by(OutboxMessage.id.desc())).first()
    assert event.payload["data"]["transition"]["actor"] == {"kind": "operator", "id": None}
    assert queries.history(pg_db, bid)["transitions"][-1]["actor"] == {"kind": "operator", "id": None}
    assert casefile.casefile(pg_db, bid)["history"][-1]["actor"] == {"kind": "operator", "id": "operator1"}


def test_an_action_on_a_binding_that_changed_since_the_page_is_refused_and_audited(pg_db, family, staff):
    """Given an invitation an operator is looking at (version 1)
    When the beneficiary opens a face verification (version 2) and the operator then expires from that page
    Then `changed_since_seen` (409), the binding is untouched and the refusal is audited; from the page
    as it is now (seen=2) the same action succeeds."""
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
    with pytest.raises(DomainError) as err:
        repair.expire(pg_db, staff["operator"], bid, "citizen asked", now=LATER, seen=1)
    assert (err.value.code, err.value.status) == ("changed_since_seen", 409)
    assert "version 1" in err.value.detail and "version 2" in err.value.detail
    assert binding(pg_db, bid).state == "invited" and binding(pg_db, bid).version == 2
    assert [(a.action, a.outcome) for a in _audit(pg_db, bid)] == [("expire", "changed_since_seen")]
    with pytest.raises(DomainError) as err:  # retry is held to the page too
        repair.retry(pg_db, staff["operator"], bid, "look", now=LATER, seen=1)
    assert err.value.code == "changed_since_seen"
    assert repair.expire(pg_db, staff["operator"], bid, "citizen asked", now=LATER, seen=2)["to"] == "expired"


def test_two_operators_expiring_the_same_binding_one_wins(pg_db, family, staff):
    """Given an invitation, When two operators expire it at the same moment, Then exactly one succeeds,
    the other is refused as a conflict, history holds one expire, and both tries are audited."""
    bid = invite(pg_db, family(pg_db))["id"]
    first = operators.add(pg_db, "operator2", "correct horse battery", "operator")
    outcomes = race(lambda: repair.expire(pg_db, staff["operator"], bid, "a", now=LATER),
                    lambda: repair.expire(pg_db, first, bid, "b", now=LATER))
    assert sorted(o.ok for o in outcomes) == [False, True]
    assert [o.code for o in outcomes if not o.ok][0] in ("illegal_transition", "conflict")
    assert [t.event for t in history(pg_db, bid)].count("expire") == 1
    assert sorted(a.outcome for a in _audit(pg_db, bid))[-1] == "ok" and len(_audit(pg_db, bid)) == 2


def test_reveal_is_admin_only_and_audits_the_fact_not_the_number(pg_db, family, staff):
    """Given a binding, When an operator and then an admin reveal the beneficiary, Then the operator is
    refused, the admin sees the number and name, and no audit row holds either."""
    fam = family(pg_db)
    bid = invite(pg_db, fam)["id"]
    with pytest.raises(DomainError):
        repair.reveal(pg_db, staff["operator"], bid, "beneficiary", "citizen on the phone")
    shown = repair.reveal(pg_db, staff["admin"], bid, "beneficiary", "citizen on the phone")
    assert shown == {"id_number": fam.beneficiary, "name": fam.beneficiary_name}
    with pg_db() as s:
        dumped = " ".join(str(row) for row in s.execute(sa.text("select * from audit_log")).all())
    assert fam.beneficiary not in dumped and fam.beneficiary_name not in dumped


def test_a_batch_counts_first_runs_every_binding_once_and_audits_each(pg_db, family, staff):
    """Given three stuck invitations and one healthy, When an operator starts a batch expire on the stuck
    filter with the count seen, and the job is delivered twice, Then the three are expired once each, the
    healthy one is untouched, and each has an audit row carrying the job id."""
    stuck_ids = [_request_failed(pg_db, family(pg_db))[0] for _ in range(3)]
    healthy = invite(pg_db, family(pg_db))["id"]
    filters = {"stuck": "verification_request_failed", "state": "invited"}
    assert batches.count(pg_db, filters) == 3
    with pytest.raises(DomainError) as err:
        batches.start(pg_db, staff["operator"], "expire", filters, "clean-up", expected=4)
    assert err.value.code == "conflict"
    job_id = batches.start(pg_db, staff["operator"], "expire", filters, "clean-up", expected=3)
    assert batches.run(pg_db, job_id) == "done"
    assert batches.run(pg_db, job_id) == "skipped"  # a redelivered job does nothing twice
    job = batches.get(pg_db, job_id)
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 3, 3, 0)
    assert {binding(pg_db, b).state for b in stuck_ids} == {"expired"}
    assert binding(pg_db, healthy).state == "invited"
    per_binding = [a for a in _audit(pg_db) if a.batch_id == job_id and a.binding_id]
    assert sorted(a.binding_id for a in per_binding) == sorted(stuck_ids)


def test_an_interrupted_batch_resumes_without_acting_twice(pg_db, family, staff):
    """Given a retry batch over two stuck invitations whose worker died after retrying the first (its audit
    row written, its progress and lease not), When the lease has run out and the job runs again, Then the
    first is skipped (it still matches the filter) and only the second is retried: one action a binding; and
    both count as done (the first by its audit row: it is not one that "changed meanwhile")."""
    ids = [_request_failed(pg_db, family(pg_db))[0] for _ in range(2)]
    job_id = batches.start(pg_db, staff["operator"], "retry", {"state": "invited"}, "provider back", expected=2)
    repair.retry(pg_db, staff["operator"], ids[0], "provider back", batch_id=job_id)  # done before dying
    with pg_db.begin() as s:
        job = s.get(BatchJob, job_id)
        job.state, job.lease_until = "running", T0  # the dead worker's lease, long past
    assert batches.resume_stalled(pg_db) != []
    assert batches.run(pg_db, job_id) == "done"
    job = batches.get(pg_db, job_id)
    assert (job["done"], job["failed"], job["changed_meanwhile"]) == (2, 0, 0)
    acted = sorted(a.binding_id for a in _audit(pg_db) if a.batch_id == job_id and a.binding_id)
    assert acted == sorted(ids)


def test_a_worker_whose_lease_was_taken_over_stops_instead_of_acting_again(pg_db, family, staff, monkeypatch):
    """Given a batch over three stuck invitations whose worker is slow: after its first binding its lease runs
    out and another worker takes the job over and finishes it
    When the first worker goes on with its page
    Then it finds the lease no longer its own and stops: each binding was acted on once (one audit row
    each), and the job counts three done."""
    ids = [_request_failed(pg_db, family(pg_db))[0] for _ in range(3)]
    job_id = batches.start(pg_db, staff["operator"], "expire", {"state": "invited"}, "clean-up", expected=3)
    real, calls = repair.ACTIONS["expire"], []

    def slow_then_taken_over(db, who, binding_id, reason, **kw):
        out = real(db, who, binding_id, reason, **kw)
        calls.append(binding_id)
        if len(calls) == 1:  # the page outlasts the lease: it runs out, and the next worker takes the job
            with db.begin() as s:
                s.get(BatchJob, job_id).lease_until = T0
            assert batches.run(db, job_id) == "done"
        return out

    monkeypatch.setitem(repair.ACTIONS, "expire", slow_then_taken_over)
    assert batches.run(pg_db, job_id) == "taken over"
    per_binding = sorted(a.binding_id for a in _audit(pg_db) if a.batch_id == job_id and a.binding_id)
    assert per_binding == sorted(ids)
    job = batches.get(pg_db, job_id)
    assert (job["state"], job["done"], job["failed"]) == ("done", 3, 0)


def test_a_renewed_lease_runs_lease_s_from_now_not_from_the_lease_before(pg_db, family, staff, monkeypatch):
    """Given a claimed job, When its worker renews the lease three times at the same moment (before each
    binding), Then the lease ends LEASE_S after that moment (by a microsecond a renewal, so each is a new
    token), not 3 × LEASE_S: a worker that died is taken over once that time has passed."""
    job_id = batches.start(pg_db, staff["operator"], "expire", {"state": "invited"}, "clean-up", expected=0)
    monkeypatch.setattr(batches, "utcnow", lambda: T0)
    lease = batches._claim(pg_db, job_id, T0)[-1]
    for _ in range(3):
        lease = batches._renew(pg_db, job_id, lease)
    assert lease == T0 + timedelta(seconds=batches.LEASE_S, microseconds=3)
    with pg_db() as s:
        assert s.get(BatchJob, job_id).lease_until == lease


def test_a_job_held_by_a_running_worker_is_left_to_it(pg_db, family, staff):
    """Given a batch another worker holds (its lease is current), When a redelivered message runs it,
    Then it does nothing and says so; the bindings are untouched."""
    bid = _request_failed(pg_db, family(pg_db))[0]
    job_id = batches.start(pg_db, staff["operator"], "expire", {"state": "invited"}, "clean-up", expected=1)
    with pg_db.begin() as s:
        job = s.get(BatchJob, job_id)
        job.state, job.lease_until = "running", datetime.now(timezone.utc) + timedelta(seconds=60)
    assert batches.run(pg_db, job_id) == "held"
    assert binding(pg_db, bid).state == "invited"


def test_a_batch_leaves_alone_what_changed_after_the_count(pg_db, family, staff):
    """Given a batch confirmed over two invitations, When a third invitation is made before the worker
    runs, Then only the two counted are expired and the page reports none changed meanwhile."""
    ids = [invite(pg_db, family(pg_db), now=T0)["id"] for _ in range(2)]
    job_id = batches.start(pg_db, staff["operator"], "expire", {"state": "invited"}, "clean-up", expected=2,
                           now=T0 + timedelta(minutes=1))
    late = invite(pg_db, family(pg_db), now=T0 + timedelta(minutes=2))["id"]
    assert batches.run(pg_db, job_id) == "done"
    assert [binding(pg_db, b).state for b in ids] == ["expired", "expired"]
    assert binding(pg_db, late).state == "invited"
    assert batches.get(pg_db, job_id)["changed_meanwhile"] == 0


def test_a_batch_acts_on_each_binding_as_its_page_listed_it(pg_db, family, staff, monkeypatch):
    """Given a batch expiring two invitations, When one of them passes its face check after the worker read
    the page and before it acts on it, Then that one is refused changed_since_seen (audited, left
    face_verified) and the other is expired: the batch acts on what its page showed, as the dashboard does."""
    fams = [family(pg_db) for _ in range(2)]
    ids = [invite(pg_db, f, now=T0)["id"] for f in fams]
    job_id = batches.start(pg_db, staff["operator"], "expire", {"state": "invited"}, "clean-up", expected=2,
                           now=T0 + timedelta(minutes=1))
    real = batches.finder.find

    def page_then_a_face_check(*args, **kwargs):
        found = real(*args, **kwargs)
        if found["items"]:
            v = verification.start_verification(pg_db, ids[0], person(fams[0].beneficiary), now=T0 + timedelta(minutes=2))
            verification.record_verification_result(pg_db, verification_id=v["verification_id"], binding_id=ids[0],
                                                    result="passed", verifier_id="facecheck",
                                                    now=T0 + timedelta(minutes=3))
        return found
    monkeypatch.setattr(batches.finder, "find", page_then_a_face_check)

    assert batches.run(pg_db, job_id) == "done"

    assert [binding(pg_db, b).state for b in ids] == ["face_verified", "expired"]
    assert {(a.binding_id, a.outcome) for a in _audit(pg_db) if a.batch_id == job_id and a.binding_id} == {
        (ids[0], "changed_since_seen"), (ids[1], "ok")}
