"""A transition's three writes (binding row, history row, outbox row) as one statement on PostgreSQL.

Why: the row change, its history and its event are one fact and commit together anyway; sent as one
data-modifying CTE they cost one round trip and one statement's parse/plan/execute instead of three
(bench/transitions.py: 32 → 20 statements per binding). The history and outbox rows are selected
FROM the binding's UPDATE … RETURNING, so a version that moved underneath writes nothing at all and
the caller sees no outbox id: a lost race (409 conflict). SQLite has no data-modifying CTEs: there the
same three statements run one after the other (`rows.save`, then the two inserts)."""
from __future__ import annotations

import sqlalchemy as sa

from models import Transition

from . import outbox, rows
from .errors import DomainError
from .statements import Statement

HISTORY = Transition.__table__
HISTORY_COLUMNS = ("binding_id", "seq", "from_state", "to_state", "event", "actor_kind", "actor_id", "channel",
                   "reason", "at")
_APPEND = Statement(sa.insert(HISTORY).values({c: sa.bindparam(c, type_=HISTORY.c[c].type)
                                               for c in HISTORY_COLUMNS}))


def _prefixed(table, columns, prefix):
    return [sa.bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns]


def _combined(change) -> Statement:
    """WITH u AS (<change> RETURNING id), h AS (INSERT history SELECT … FROM u),
    o AS (INSERT outbox SELECT … FROM u RETURNING id) SELECT o.id FROM o."""
    u = change.returning(rows.B.c.id).cte("u")
    h = sa.insert(HISTORY).from_select(
        HISTORY_COLUMNS, sa.select(*_prefixed(HISTORY, HISTORY_COLUMNS, "h_")).select_from(u)).cte("h")
    o = sa.insert(outbox.OUTBOX).from_select(
        outbox.COLUMNS, sa.select(*_prefixed(outbox.OUTBOX, outbox.COLUMNS, "o_")).select_from(u)
    ).returning(outbox.OUTBOX.c.id).cte("o")
    return Statement(sa.select(o.c.id).add_cte(h))


_UPDATE_ALL = _combined(sa.update(rows.B).where(rows.UPDATE_WHERE).values(rows.UPDATE_VALUES))
_INSERT_ALL = _combined(sa.insert(rows.B).values({n: sa.bindparam(n, type_=rows.B.c[n].type)
                                                  for n in rows.BINDING_COLUMNS}))


def transition(conn, row: rows.BindingRow, history: dict, message: dict) -> int:
    """Write the row (inserted when new, else version-checked), its history row and its outbox row;
    the outbox id. A lost race raises DomainError `conflict` and writes nothing."""
    if conn.dialect.name != "postgresql":
        rows.save(conn, row)
        _APPEND.run(conn, history)
        return outbox.write_message(conn, message)
    new = row._loaded_version is None
    params = rows.insert_params(row) if new else rows.update_params(row)
    params.update({f"h_{k}": v for k, v in history.items()})
    params.update({f"o_{k}": v for k, v in message.items()})
    written = (_INSERT_ALL if new else _UPDATE_ALL).scalar(conn, params)
    if written is None:
        raise DomainError("conflict", "the binding changed concurrently")
    row._loaded_version = row.version
    return written
