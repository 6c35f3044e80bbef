"""One command = one database transaction (`command()`), and the transition core every command shares.

`Command.transition` fires the event through the shared machine, bumps the version (checked on UPDATE),
reschedules the binding's timer, appends one history row and one outbox event (`writes.transition`: one
statement on PostgreSQL). After commit the outbox ids are published. Integrity and version races become
409 `conflict` (or `duplicate_binding`).

A command runs on one SQLAlchemy Connection (`cmd.conn`); an ORM Session on that same connection and
transaction (`cmd.session`) is made only when a step asks for one, because the session's bookkeeping cost
about a fifth of a simple command's client CPU (bench/transitions.py).

An *optimistic* command (`command(optimistic=True)`: accept, authorize, unbind, start_verification,
record_verification_result) reads the binding without a lock and writes only through its one transition,
whose UPDATE checks the version it read: a change in between makes the write a no-op and the command a
409 `conflict`, so two racing commands still end with exactly one winner. On PostgreSQL it runs without
an explicit transaction (autocommit): the read is one statement, the write one statement, which is a
transaction by itself. That saves BEGIN, COMMIT and the row lock's WAL record: ~30 % of a simple
command's database CPU. It may write nothing else (checked: a second write raises). A lost version check
wrote nothing, so `retried` runs the command again on the state the winner left, which decides as waiting
for the row lock would have: the loser of two unbinds still gets 409 illegal_transition."""
from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from models import VerificationAttempt
from models.crypto import lookup_hashes
from models.types import utcnow

from . import correlation, machine, outbox, rows, timers, writes
from .actors import SYSTEM_TIMER, Actor
from .errors import DomainError, LockTimeout, VersionConflict, lock_wait_expired, lost_to_concurrent
from .idnumbers import normalize
from .statements import READ_ONLY, Statement, autocommit_on
from .views import binding_view

VA = VerificationAttempt.__table__
_ABANDON = Statement(sa.update(VA).where(VA.c.binding_id == sa.bindparam("b"), VA.c.status == "pending")
                     .values(status="abandoned", completed_at=sa.bindparam("t", type_=VA.c.completed_at.type),
                             reason=sa.bindparam("why")))
EVENT_TYPES = {
    "invite": "binding.invited", "start_verification": "binding.verification_requested",
    "verification_passed": "binding.face_verified", "verify_in_person": "binding.face_verified",
    "accept": "binding.accepted",
    "decline": "binding.declined", "cancel": "binding.cancelled", "expire": "binding.expired",
    "reject": "binding.rejected", "authorize": "binding.authorized", "unbind": "binding.unbound",
    "relocate": "binding.relocated",
}


def event_type(event: str, dest: str) -> str:
    """The outbound event of a transition. An invitation on the guardian path lands in `accepted`: its event
    is `binding.accepted` (a platform that activates bindings on it must see guardian bindings too, and
    `binding.invited` would tell it to ask the child for a face check that never comes)."""
    if event == "invite" and dest == "accepted":
        return "binding.accepted"
    if event == "verification_failed":
        return "binding.verification_failed" if dest == "verification_failed" else \
            "binding.verification_attempt_failed"
    return EVENT_TYPES[event]


class Command:
    timer = SYSTEM_TIMER

    def __init__(self, db, connection: sa.Connection, now: datetime, platform=None, optimistic: bool = False,
                 version: int | None = None, moved_on: str = "conflict"):
        self._db, self._conn, self._session = db, connection, None
        # the binding version the caller acted from (None: not checked), and the code a binding at another
        # version is refused with (`conflict`; the dashboard's `changed_since_seen`)
        self.version, self.moved_on = version, moved_on
        self.optimistic, self._written = optimistic, False  # optimistic: one transition, nothing else
        self.now = now
        self.platform = platform  # the calling platform (a PlatformInfo), None for internal callers
        self.messages: list[int] = []  # outbox ids, published after commit
        self.view: dict | None = None  # the binding as the last transition left it (API answer shape)

    @property
    def conn(self) -> sa.Connection:
        """The command's connection, with the session's pending ORM changes flushed to it first."""
        s = self._session
        if s is not None and (s.new or s.dirty or s.deleted):
            s.flush()
        return self._conn

    @property
    def session(self):
        """An ORM Session in the command's transaction, made on first use."""
        if self._session is None:
            if self.optimistic:  # its one write is the transition; an ORM flush would be a second one
                raise RuntimeError("an optimistic command has no ORM session")
            self._session = self._db(bind=self._conn)
        return self._session

    def finish(self) -> None:
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._conn.close()

    def lock_binding(self, binding_id: str) -> rows.BindingRow:
        """The binding, locked (read only, for an optimistic command: its write checks the version); not_found
        also when the calling platform serves neither side's province (checked on the row the command
        read, in its own transaction: ids cannot be probed)."""
        row = (rows.get if self.optimistic else rows.lock)(self.conn, binding_id)
        return self._visible(row, binding_id)

    def read_binding_joined(self, binding_id: str, statement, **params) -> tuple[rows.BindingRow, tuple]:
        """An optimistic command's read of the binding together with other rows in one statement
        (`rows.get_joined`): the row (checked like `lock_binding`) and the other columns."""
        if not self.optimistic:
            raise RuntimeError("a joined read takes no lock: for optimistic commands only")
        found = rows.get_joined(self.conn, statement, {"binding_id": binding_id, **params})
        if found is None:
            raise DomainError("not_found", f"no binding {binding_id}")
        return self._visible(found[0], binding_id), found[1]

    def _visible(self, row: rows.BindingRow, binding_id: str) -> rows.BindingRow:
        if self.platform is not None and not visible_to(self.platform, row):
            raise DomainError("not_found", f"no binding {binding_id}")
        if self.version is not None and row.version != self.version:  # not a VersionConflict: never retried
            raise DomainError(self.moved_on, f"the binding is at version {row.version}, not version {self.version}")
        return row

    def resolve(self, actor, row) -> Actor:
        """An Actor from an API actor object ({kind: person, id_number|id}), matched against the binding's
        two persons (no query); anyone else is a stranger and gets 403 from `authorize_actor`, and a party
        insured outside the calling platform's provinces 403 `region_not_served`."""
        if isinstance(actor, Actor):
            return actor
        if not isinstance(actor, dict) or actor.get("kind") != "person":
            raise DomainError("not_your_binding", "platforms act for persons: actor.kind must be 'person'")
        parties = (row.grantor, row.beneficiary)
        if actor.get("id"):
            found = next((p for p in parties if p.id == actor["id"]), None)
        else:
            digests = lookup_hashes(normalize(actor.get("id_number") or ""))
            found = next((p for p in parties if p.id_number_hash in digests), None)
        # a platform acts for the persons it has real-name verified: those insured in a province it serves
        # (a binding across provinces is visible to both, but each side acts through its own platform)
        if found is not None and self.platform is not None and not self.platform.serves(found.region_code[:2]):
            raise DomainError("region_not_served", f"platform {self.platform.id} does not act for persons "
                              "insured outside the provinces it serves")
        return Actor("person", found.id if found is not None else None)

    def authorize_actor(self, row, event: str, actor: Actor, reason: str | None) -> None:
        from .rules import check_actor, role_of
        check_actor(event, role_of(actor, row.grantor_id, row.beneficiary_id), machine.EVENT_ROLES[event], reason)

    def transition(self, row, event: str, actor: Actor, *, channel: str | None = None,
                   reason: str | None = None, attempt_deadline: datetime | None = None,
                   extra: dict | None = None, side: tuple[str, dict] | None = None, **facts) -> tuple[str, str]:
        """Fire `event` and write the row, its history, its outbox event and `side` (an attempt opened or
        closed, see `writes.transition`) together."""
        if self.optimistic and self._written:
            raise RuntimeError(f"an optimistic command writes once, through its transition ({event})")
        self._written = True
        if (row.state in machine.PENDING and row.expires_at is not None and self.now >= row.expires_at
                and event != "expire" and actor != SYSTEM_TIMER):
            raise DomainError("illegal_transition", "the invitation has expired")
        before, after = machine.fire(row, event, **facts)
        # leaving `invited` other than through a result (an ending, a check in person): an open face-check
        # attempt is abandoned (its late result is then ignored)
        if before == "invited" and after != "invited" and not event.startswith("verification_"):
            _ABANDON.run(self.conn, {"b": row.id, "t": self.now, "why": event})
        row.version = (row.version or 0) + 1
        row.updated_at = self.now
        if after in machine.TERMINAL:
            row.ended_at, row.end_event, row.ended_by = self.now, event, actor.kind
        if after == "authorized" and before != "authorized":  # the account is bound (money.py's clock): the
            row.authorized_at = self.now  # UPDATE keeps a time already held (rows.UPDATE_VALUES: coalesce)
        timers.reschedule(row, attempt_deadline)
        origin = None if before == machine.NEW else before
        history = dict(binding_id=row.id, seq=row.version, from_state=origin, to_state=after, event=event,
                       actor_kind=actor.kind, actor_id=actor.id, channel=channel, reason=reason, at=self.now,
                       request_id=correlation.current_id())
        self.view = binding_view(row, row.grantor, row.beneficiary)
        data = {"binding": self.view,
                "transition": {"event": event, "from": origin, "to": after, "actor": actor.as_dict(),
                               "reason": reason, "request": correlation.as_event()}, **(extra or {})}
        message = outbox.message(event_type(event, after), self.now, data, binding_id=row.id, version=row.version)
        self.messages.append(writes.transition(self.conn, row, history, message, side))
        return before, after

    def emit(self, topic: str, data: dict, **kw) -> int:
        """Write an outbox event in the command's transaction; its id."""
        if self.optimistic:  # in autocommit this row would commit on its own, whatever came after
            raise RuntimeError("an optimistic command writes once, through its transition")
        self.messages.append(outbox.write(self.conn, topic, self.now, data, **kw))
        return self.messages[-1]


def visible_to(platform, binding) -> bool:
    """A platform sees a binding when it serves the grantor's or the beneficiary's province (the national
    platform sees all). `binding` has `grantor_region` and `beneficiary_region` (a row or an API view)."""
    get = binding.get if isinstance(binding, dict) else lambda k: getattr(binding, k)
    return platform.serves(get("grantor_region")[:2]) or platform.serves(get("beneficiary_region")[:2])


def _integrity_code(exc: sa.exc.IntegrityError) -> str:
    text = str(exc.orig)
    if "uq_bindings_active_pair" in text or "bindings.grantor_id, bindings.beneficiary_id" in text:
        return "duplicate_binding"
    return "conflict"


@contextmanager
def command(db, *, now: datetime | None = None, platform=None, optimistic: bool = False, version: int | None = None,
            moved_on: str = "conflict"):
    """Open one transaction for one command; commit on success, publish its outbox rows after. With
    `platform`, a binding it may not see is not found (`Command.lock_binding`); with `version`, a binding at
    another version is refused with `moved_on` (409 `conflict`: the caller acted from a view it had).
    `optimistic`: see above."""
    conn = db.kw["bind"].connect()
    autocommit = optimistic and conn.dialect.name == "postgresql"
    if optimistic:
        setattr(conn, READ_ONLY, True)  # any other write Statement on it raises (workflows/statements.py)
    if autocommit:  # until the pool takes it back (models/db.py)
        autocommit_on(conn)
    cmd = Command(db, conn, now or utcnow(), platform, optimistic, version, moved_on)
    try:
        # in autocommit each statement commits alone: SQLAlchemy's begin and commit would only cost CPU
        with cmd._conn.begin() if not autocommit else nullcontext():
            yield cmd
            cmd.finish()
    except sa.exc.IntegrityError as exc:
        raise DomainError(_integrity_code(exc)) from exc
    except StaleDataError:  # an ORM write's version check lost to a concurrent change
        raise DomainError("conflict", "a concurrent change won") from None
    except sa.exc.OperationalError as exc:
        if lock_wait_expired(exc):  # PostgreSQL's lock_timeout, SQLite's busy timeout
            raise LockTimeout() from None
        if lost_to_concurrent(exc):
            raise DomainError("conflict", "a concurrent change won") from None
        raise
    finally:
        cmd.close()
    outbox.published(cmd.messages)


RETRIES = 3  # runs of an optimistic command before its VersionConflict is answered (409 conflict)


def retried(fn):
    """Run an optimistic command again when its version check lost (see the module docstring)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        for left in range(RETRIES - 1, -1, -1):
            try:
                return fn(*args, **kwargs)
            except VersionConflict:
                if not left:
                    raise
    return run
