"""A transition's writes (binding row, history row, outbox row, and the verification attempt it opens or
closes, if any) as one statement on PostgreSQL.

Why: the row change, its history and its event are one fact and commit together anyway; sent as one
data-modifying CTE they cost one round trip and one statement's parse/plan/execute instead of three or
four (bench/transitions.py: 32 → 13 statements per binding, with the joined reads). Every other row is
written FROM the binding's UPDATE … RETURNING, so a version that moved underneath writes nothing at all
and the caller sees no outbox id: a lost race (409 conflict). That also makes the statement a whole
command on its own for an optimistic command (`unit.command(optimistic=True)`), which runs it outside
any explicit transaction. SQLite has no data-modifying CTEs: there the same statements run one after the other."""
from __future__ import annotations

import sqlalchemy as sa

from models import Person, Transition, VerificationAttempt

from . import outbox, rows
from .errors import VersionConflict
from .statements import Statement, final_write

HISTORY = Transition.__table__
HISTORY_COLUMNS = ("binding_id", "seq", "from_state", "to_state", "event", "actor_kind", "actor_id", "channel",
                   "reason", "at", "request_id")
_APPEND = Statement(sa.insert(HISTORY).values({c: sa.bindparam(c, type_=HISTORY.c[c].type)
                                               for c in HISTORY_COLUMNS}))


VA = VerificationAttempt.__table__
ATTEMPT_COLUMNS = tuple(c.name for c in VA.columns)  # id first
CLOSE_COLUMNS = ("status", "completed_at", "reason", "verifier_id")


def _prefixed(table, columns, prefix):
    return [sa.bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns]


# the attempt writes a transition may carry, as plain statements (SQLite) and as CTE branches after u
def _open_attempt(u=None):
    if u is None:
        return sa.insert(VA).values(dict(zip(ATTEMPT_COLUMNS, _prefixed(VA, ATTEMPT_COLUMNS, "a_"))))
    return sa.insert(VA).from_select(ATTEMPT_COLUMNS, sa.select(*_prefixed(VA, ATTEMPT_COLUMNS, "a_")).select_from(u))


def _close_attempt(u=None):
    """Close the attempt if still pending (a result and a timeout never both count)."""
    where = [VA.c.id == sa.bindparam("a_id"), VA.c.status == "pending"]
    if u is not None:
        where.append(VA.c.binding_id == u.c.id)  # UPDATE … FROM u: nothing when the binding lost the race
    return sa.update(VA).where(*where).values(dict(zip(CLOSE_COLUMNS, _prefixed(VA, CLOSE_COLUMNS, "a_"))))


P = Person.__table__


def _commit_letter(u=None):
    """The grantor's signed commitment letter version, kept on the person with the invitation."""
    where = [P.c.id == sa.bindparam("a_person_id")]
    if u is not None:
        where.append(u.c.id.is_not(None))  # UPDATE … FROM u: nothing when the invitation was not written
    return sa.update(P).where(*where).values(dict(zip(("commitment_version", "updated_at"),
                                                      _prefixed(P, ("commitment_version", "updated_at"), "a_"))))


SIDES = {"open_attempt": _open_attempt, "close_attempt": _close_attempt, "commit_letter": _commit_letter}
_SIDE_ALONE = {name: Statement(build()) for name, build in SIDES.items()}


def _combined(change, side=None) -> Statement:
    """WITH u AS (<change> RETURNING id), h AS (INSERT history SELECT … FROM u),
    [a AS (<attempt write> … u),] o AS (INSERT outbox SELECT … FROM u RETURNING id) SELECT o.id FROM o."""
    u = change.returning(rows.B.c.id).cte("u")
    h = sa.insert(HISTORY).from_select(
        HISTORY_COLUMNS, sa.select(*_prefixed(HISTORY, HISTORY_COLUMNS, "h_")).select_from(u)).cte("h")
    o = sa.insert(outbox.OUTBOX).from_select(
        outbox.COLUMNS, sa.select(*_prefixed(outbox.OUTBOX, outbox.COLUMNS, "o_")).select_from(u)
    ).returning(outbox.OUTBOX.c.id).cte("o")
    query = sa.select(o.c.id).add_cte(h)
    if side is not None:
        query = query.add_cte(SIDES[side](u).cte("a"))
    return Statement(query, final=True)


_UPDATE = sa.update(rows.B).where(rows.UPDATE_WHERE).values(rows.UPDATE_VALUES)
_INSERT = sa.insert(rows.B).values(rows.INSERT_VALUES)
_COMBINED = {(False, side): _combined(_INSERT, side) for side in (None, "commit_letter")}
_COMBINED.update({(True, side): _combined(_UPDATE, side) for side in (None, *SIDES)})


def transition(conn, row: rows.BindingRow, history: dict, message: dict,
               side: tuple[str, dict] | None = None) -> int:
    """Write the row (inserted when new, else version-checked), its history row, its outbox row and the
    `side` write (`open_attempt` with an attempt's columns, `close_attempt` with id and CLOSE_COLUMNS,
    `commit_letter` with person_id, commitment_version and updated_at);
    the outbox id. A lost race raises VersionConflict (409 `conflict`) and writes nothing."""
    if conn.dialect.name != "postgresql":  # one after the other, in the command's transaction
        with final_write(conn):
            rows.save(conn, row)
            if side is not None:
                _SIDE_ALONE[side[0]].run(conn, {f"a_{k}": v for k, v in side[1].items()})
            _APPEND.run(conn, history)
            return outbox.write_message(conn, message)
    new = row._loaded_version is None
    params = rows.insert_params(row) if new else rows.update_params(row)
    params.update({f"h_{k}": v for k, v in history.items()})
    params.update({f"o_{k}": v for k, v in message.items()})
    if side is not None:
        params.update({f"a_{k}": v for k, v in side[1].items()})
    written = _COMBINED[(not new, side[0] if side else None)].scalar(conn, params)
    if written is None:
        raise VersionConflict()
    row._loaded_version = row.version
    return written
