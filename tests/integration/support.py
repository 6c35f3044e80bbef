"""Helpers of the integration tier: a fixed clock, actors, set-up shortcuts, a thread race, history and
table checks. Plain functions (imported as `from .support import ...`); fixtures are in conftest.py."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from models import Binding, OutboxMessage, Transition
from workflows import invite as invite_mod
from workflows import characters, machine, verification

# A fixed clock: every command gets `now=`, so no test depends on the wall clock.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 in Asia/Shanghai
TTL = timedelta(seconds=604800)  # Jiangsu's seeded invitation_ttl_s (regions.json policy_defaults)
VERIFY_TIMEOUT = timedelta(seconds=600)  # seeded verification_timeout_s
JS_COMMITMENT = "JS-2024-01"
CONFLICT_CODES = {"illegal_transition", "conflict"}  # the 409 class


def person(number: str) -> dict:
    """The API's actor object for a person, by ID number."""
    return {"kind": "person", "id_number": number}


def invite(db, fam, *, relationship: str = "spouse", now: datetime = T0, **kw) -> dict:
    return invite_mod.invite(db, grantor_id_number=fam.grantor, beneficiary_id_number=fam.beneficiary,
                             beneficiary_name=fam.beneficiary_name, relationship=relationship,
                             commitment_version=kw.pop("commitment_version", JS_COMMITMENT), now=now, **kw)


def face_verified(db, fam, *, now: datetime = T0) -> str:
    """Invite, open a verification and pass it: the binding id, in `face_verified`."""
    bid = invite(db, fam, now=now)["id"]
    v = verification.start_verification(db, bid, person(fam.beneficiary), now=now + timedelta(seconds=1))
    outcome = verification.record_verification_result(db, verification_id=v["verification_id"], binding_id=bid,
                                                       result="passed", verifier_id="facecheck",
                                                       now=now + timedelta(seconds=2))
    assert outcome == "passed"
    return bid


def accepted(db, fam, *, now: datetime = T0) -> str:
    from workflows import commands
    bid = face_verified(db, fam, now=now)
    assert commands.accept(db, bid, person(fam.beneficiary), now=now + timedelta(seconds=3))["state"] == "accepted"
    return bid


# --- racing -------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def code(self) -> str | None:
        return getattr(self.error, "code", None)


def race(*fns, timeout: float = 60.0) -> list[Outcome]:
    """Run each callable in its own thread, all released together by a barrier; their outcomes in order.

    The timeout only guards against a hang (a deadlock fails the test); it never decides an outcome."""
    barrier = threading.Barrier(len(fns))
    outcomes = [Outcome() for _ in fns]

    def run(i, fn):
        try:
            barrier.wait(timeout)
            outcomes[i].value = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcomes[i].error = exc

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a racing command did not finish (deadlock?)"
    for o in outcomes:
        if o.error is not None and not hasattr(o.error, "code"):
            raise o.error  # an unexpected exception (not a DomainError) is a failure of its own
    return outcomes


# --- history and tables -------------------------------------------------------------------------------

def history(db, binding_id: str) -> list[Transition]:
    with db() as s:
        return list(s.scalars(sa.select(Transition).where(Transition.binding_id == binding_id)
                              .order_by(Transition.seq, Transition.id)))


def binding(db, binding_id: str) -> Binding:
    with db() as s:
        return s.get(Binding, binding_id)


def assert_history_consistent(db, binding_id: str) -> list[Transition]:
    """seq is 1..version without gaps or repeats; the states chain from `invited`/`accepted` (invite) to the
    binding's current state; exactly one outbox event per version. Returns the history."""
    row = binding(db, binding_id)
    rows = history(db, binding_id)
    assert [t.seq for t in rows] == list(range(1, row.version + 1)), "history seq must be 1..version"
    assert rows[0].event == "invite" and rows[0].from_state is None
    for prev, nxt in zip(rows, rows[1:]):
        assert nxt.from_state == prev.to_state, f"history breaks between seq {prev.seq} and {nxt.seq}"
    assert rows[-1].to_state == row.state
    assert (row.state in machine.TERMINAL) == (row.ended_at is not None)
    if row.state in machine.TERMINAL:
        assert row.deadline_at is None and row.deadline_event is None
        assert row.end_event == rows[-1].event
    with db() as s:
        versions = s.scalars(sa.select(OutboxMessage.binding_version)
                             .where(OutboxMessage.binding_id == binding_id)
                             .order_by(OutboxMessage.binding_version)).all()
    assert versions == list(range(1, row.version + 1)), "one outbox event per transition"
    return rows


def user_tables(db) -> list[str]:
    with db() as s:
        names = sa.inspect(s.get_bind()).get_table_names()
    return sorted(n for n in names if n != "alembic_version")


def table_snapshot(db) -> dict[str, tuple[int, str]]:
    """Row count and a digest of the full content of every table (PostgreSQL)."""
    snap = {}
    with db() as s:
        for name in user_tables(db):
            snap[name] = tuple(s.execute(sa.text(
                f'SELECT count(*), coalesce(md5(string_agg(t::text, \'|\' ORDER BY t::text)), \'\') '
                f'FROM "{name}" t')).one())
    return snap


def wait_until(predicate, timeout_s: float = 30.0, interval_s: float = 0.05):
    """Poll `predicate` until it is truthy (returns its value); fails after `timeout_s` seconds. Used where a
    thread or another process does the work; the timeout only bounds a hang, it decides nothing."""
    import time
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def wait_for_a_lock_wait(db, at_least: int = 1, *, on: str | None = None) -> None:
    """Until at least `at_least` sessions of this database wait for a lock (a racing thread has reached the
    row another one holds): how the race tests know the interleaving they stage has happened. `on`: only
    sessions whose statement names that table, so that a session an earlier test left waiting cannot count.
    Each poll is its own transaction (autocommit): PostgreSQL takes one snapshot of pg_stat_activity per
    transaction, so polls inside one transaction would never see a wait that began after the first."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
           + (" AND position(%(on)s in query) > 0" if on else ""))
    with db.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        wait_until(lambda: c.exec_driver_sql(sql, *([{"on": on}] if on else [])).scalar() >= at_least)


# --- outbound deliveries, driven synchronously with an explicit clock ---------------------------------

def fan_out_all(db, now) -> list[int]:
    """What the outbox actor does for each binding event; returns the deliveries it would send at once."""
    from workflows import routing
    with db() as s:
        ids = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.topic.like("binding.%"))
                        .order_by(OutboxMessage.id)).all()
    return [d for outbox_id in ids for d in routing.fan_out(db, outbox_id, now=now).ready]


def drain(db, now, first=()) -> int:
    """`first` (sent at once) and one delivery pass at `now`, with every delivery they release, over HTTP."""
    from workers import outbound
    from workflows import deliveries
    queue, tried = list(first) + deliveries.due(db, now=now), 0
    while queue:
        claim = deliveries.claim(db, queue.pop(0), now=now)
        if claim is None:
            continue
        tried += 1
        answer = outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload)
        queue += deliveries.record(db, claim, status_code=answer.status_code, error=answer.error,
                                   duration_ms=answer.duration_ms, now=now)
    return tried


# --- test-only migrations ---------------------------------------------------------------------------------

_MIGRATION = '''"""test-only: {doc}"""
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def with_test_migrations(tmp_path, *scripts: tuple[str, str, str, str]):
    """An Alembic config for Gongji's migrations plus test-only ones after head, each (revision, doc, upgrade
    body, downgrade body) with bodies indented by four spaces, chained in the order given."""
    import shutil

    from alembic.script import ScriptDirectory

    from models import migrate
    target = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, target, ignore=shutil.ignore_patterns("__pycache__"))
    down = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    for rev, doc, upgrade, downgrade in scripts:
        (target / "versions" / f"{rev}_test.py").write_text(
            _MIGRATION.format(doc=doc, rev=rev, down=down, upgrade=upgrade, downgrade=downgrade))
        down = rev
    cfg = migrate.alembic_config()
    cfg.set_main_option("script_location", str(target))
    return cfg


def poll(probe, *, timeout: float, what: str) -> None:
    """Until `probe()` is true (a condition's arrival, not its timing, is what is tested)."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@contextmanager
def past_the_character_check():
    """A webhook's data as if a character no text may hold had slipped past `characters.first_refused`
    (workflows/webhooks.py refuses it before any statement): the way to make applying a webhook fail in
    PostgreSQL every time (its text holds no NUL), for the tests of what follows such a failure."""
    real = characters.first_refused
    characters.first_refused = lambda *_a, **_k: None
    try:
        yield
    finally:
        characters.first_refused = real
