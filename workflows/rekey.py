"""Re-encrypting personal data under the active key (`gongji pii rekey`), so an old key can leave
GONGJI_PII_KEYS.

Why: a new key in front of GONGJI_PII_KEYS encrypts what is written from then on, and every older key keeps
decrypting what it sealed; a key that leaked could not be retired, because rows it sealed stayed sealed by it
until something rewrote them, and dropping it made those rows unreadable. This pass rewrites every stored
value of every `Encrypted` column whose key id is not the active one, in batches of committed transactions.
Each row is rewritten only if it still holds the ciphertext that was read (a concurrent write, which uses
the active key anyway, wins), so it runs beside live traffic and may be stopped and run again at any time.
Values are never logged or returned; only counts per column and key id are."""
from __future__ import annotations

from collections import Counter
from typing import Callable

import sqlalchemy as sa

from models import Base
from models.crypto import Encrypted, active_key_id, decrypt


def encrypted_columns() -> list[tuple[sa.Table, sa.Column]]:
    """Every (table, column) stored through `Encrypted`, in a stable order."""
    return [(table, column) for table in Base.metadata.sorted_tables for column in table.columns
            if isinstance(column.type, Encrypted)]


def _raw(column: sa.Column):
    return sa.type_coerce(column, sa.Text)  # the stored `<key id>:<base64>`, not decrypted


def key_ids(db) -> dict[str, Counter]:
    """{"table.column": Counter(key id → rows)} over every encrypted value."""
    out = {}
    with db() as s:
        for table, column in encrypted_columns():
            kid = sa.func.substr(_raw(column), 1, sa.func.instr(_raw(column), ":") - 1) \
                if s.get_bind().dialect.name == "sqlite" else sa.func.split_part(_raw(column), ":", 1)
            out[f"{table.name}.{column.name}"] = Counter(dict(s.execute(
                sa.select(kid, sa.func.count()).where(column.is_not(None)).group_by(kid)).all()))
    return out


def rekey(db, *, batch: int = 500, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Rewrite every value not under the active key with it; {"table.column": rows rewritten}."""
    active = active_key_id()
    done: dict[str, int] = {}
    for table, column in encrypted_columns():
        name, (pk,) = f"{table.name}.{column.name}", table.primary_key.columns
        stale = sa.and_(column.is_not(None), sa.func.substr(_raw(column), 1, len(active) + 1) != f"{active}:")
        unstamped = {c.name: c for c in table.columns if c.onupdate is not None}  # re-sealing changes no fact
        done[name], after = 0, None
        while True:
            with db.begin() as s:
                query = sa.select(pk, _raw(column)).where(stale).order_by(pk).limit(batch)
                if after is not None:
                    query = query.where(pk > after)
                rows = s.execute(query).all()
                for key, stored in rows:  # the column's type seals the plaintext again, with the active key;
                    plain = decrypt(stored, column.type.context)  # columns stamped on update keep their value
                    done[name] += s.execute(sa.update(table).where(pk == key, _raw(column) == stored)
                                            .values({column.name: plain, **unstamped})).rowcount
            if progress is not None and rows:
                progress(name, len(rows))
            if len(rows) < batch:
                break
            after = rows[-1][0]
    return done
