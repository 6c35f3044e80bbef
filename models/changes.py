"""Commit-ordered change stamps of bindings: what the platforms' pull feed pages by.

Why: a timestamp taken when a command starts is not in commit order. A command stamped at 10:00:00.100
that waits on a lock and commits at 10:00:00.300 lands *behind* a cursor that a reader took at 10:00:00.200
from a binding stamped 10:00:00.150, and that reader never sees it. A waiting period (the feed's former
60-second "horizon") only makes that unlikely. These stamps make it impossible:

- PostgreSQL: `change_seq` is the writing transaction's id (`pg_current_xact_id()`, 64 bits, never
  wraps). Transactions take ids in start order and commit in any order, so the feed serves only rows whose
  id lies below the oldest transaction still running (`settled_stamp()`, the snapshot's xmin): every
  transaction below it has finished, so no row with a smaller stamp can appear after a cursor has passed.
  A change is served as soon as every transaction that began before it has ended (milliseconds), not a
  minute later.
- SQLite (the embedded default): writers are serialized by the database lock from their first write to
  their commit, so one more than the largest stamp, read under that lock, is in commit order; every
  committed row is settled.

Both are SQL evaluated by the database in the writing statement (`default`/`onupdate` of the column, and
the explicit values of the hot path's statements in `workflows.rows`), so every write path stamps alike."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class change_stamp(FunctionElement):
    """The stamp of a write to `bindings`, in commit order (see the module docstring)."""
    type = sa.BigInteger()
    name = "change_stamp"
    inherit_cache = True


class settled_stamp(FunctionElement):
    """Rows stamped below this value are committed, and no later write can be stamped below it."""
    type = sa.BigInteger()
    name = "settled_stamp"
    inherit_cache = True


# SQLite: one above every stamp committed; read under the write lock it is also the next write's stamp
_ABOVE_ALL = "(SELECT coalesce(max(change_seq), 0) + 1 FROM bindings)"


@compiles(change_stamp, "postgresql")
def _change_pg(element, compiler, **kw):
    return "pg_current_xact_id()::text::bigint"


@compiles(change_stamp)
def _change_other(element, compiler, **kw):
    return _ABOVE_ALL


@compiles(settled_stamp, "postgresql")
def _settled_pg(element, compiler, **kw):
    return "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


@compiles(settled_stamp)
def _settled_other(element, compiler, **kw):
    return _ABOVE_ALL
