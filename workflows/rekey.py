"""Re-encrypting personal data under the active key (`gongji pii rekey`), so an old key can leave
GONGJI_PII_KEYS.

Why: a new key in front of GONGJI_PII_KEYS encrypts what is written from then on, and every older key keeps
decrypting what it sealed; a key that leaked could not be retired, because rows it sealed stayed sealed by it
until something rewrote them, and dropping it made those rows unreadable. This pass rewrites every stored
value of every `Encrypted` column whose key id is not the active one, in batches of committed transactions.
Each row is rewritten only if it still holds the ciphertext that was read (a concurrent write, which uses
the active key anyway, wins), so it runs beside live traffic and may be stopped and run again at any time.
Values are never logged or returned; only counts per column and key id are.

The look-up digests are retired the same way (`rehash`): with a new GONGJI_LOOKUP_KEY and the old one as
GONGJI_LOOKUP_KEY_RETIRED, look-ups try both digests (`models.crypto.lookup_hashes`); this pass rewrites
each person's digest from the decrypted number, and each settlement's request digest (`settlements.
request_digests`) that the retired key made, after which the retired key can go. A person whose number
another person already holds under the active digest (two processes with different keys each created one
during the restart) is left alone and counted: merging two persons is an operator's decision."""
from __future__ import annotations

from collections import Counter
from typing import Callable

import sqlalchemy as sa

from models import Base, Person, Settlement
from models.crypto import Encrypted, active_key_id, decrypt, lookup_hash, rotating_lookup_key

from .settlements import request_digests


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
        done[name] = 0
        for s, rows in _batches(db, sa.select(pk, _raw(column)).where(stale), pk, batch):
            for key, stored in rows:  # the column's type seals the plaintext again, with the active key;
                plain = decrypt(stored, column.type.context)  # columns stamped on update keep their value
                done[name] += s.execute(sa.update(table).where(pk == key, _raw(column) == stored)
                                        .values({column.name: plain, **unstamped})).rowcount
            if progress is not None and rows:
                progress(name, len(rows))
    return done


P, ST = Person.__table__, Settlement.__table__


def _batches(db, query, pk, batch: int):
    """`query`'s rows in primary-key order, one committed transaction (Session) per batch: (session, rows)."""
    after = None
    while True:
        with db.begin() as s:
            rows = s.execute((query if after is None else query.where(pk > after)).order_by(pk).limit(batch)).all()
            yield s, rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def rehash(db, *, batch: int = 500, dry_run: bool = False,
           progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Rewrite look-up digests not made with the active look-up key: {"persons.id_number_hash": rows,
    "settlements.request_hash": rows, "persons left (number held twice)": rows}; `dry_run` only counts.
    A dry run (`gongji pii status`) reads nothing unless a retired look-up key is configured (it decrypts
    every person); `rekey` always checks the persons (a digest made by a process with an older key is found
    and rewritten), and the settlements while a retired key is configured."""
    done = Counter({"persons.id_number_hash": 0, "settlements.request_hash": 0, "persons left (number held twice)": 0})
    if dry_run and not rotating_lookup_key():
        return dict(done)
    taken = sa.select(P.c.id).where(P.c.id_number_hash == sa.bindparam("h"))
    for s, rows in _batches(db, sa.select(P.c.id, _raw(P.c.id_number), P.c.id_number_hash), P.c.id, batch):
        for pid, stored, digest in rows:
            active = lookup_hash(decrypt(stored, P.c.id_number.type.context))
            if digest == active:
                continue
            if s.scalar(taken, {"h": active}) is not None:
                done["persons left (number held twice)"] += 1
            elif dry_run:
                done["persons.id_number_hash"] += 1
            else:  # unless a concurrent update rewrote it; updated_at keeps its value (no fact changed)
                try:
                    with s.begin_nested():  # a person made meanwhile under the active digest: held twice
                        done["persons.id_number_hash"] += s.execute(
                            sa.update(P).where(P.c.id == pid, P.c.id_number_hash == digest)
                            .values(id_number_hash=active, updated_at=P.c.updated_at)).rowcount
                except sa.exc.IntegrityError:
                    done["persons left (number held twice)"] += 1
        if progress is not None and rows:
            progress("persons.id_number_hash", len(rows))
    if not rotating_lookup_key():  # a settlement's digest is recognised only under a key still configured
        return dict(done)
    facts = sa.select(ST.c.id, ST.c.request_hash, ST.c.amount_fen, ST.c.category, ST.c.institution_code,
                      _raw(P.c.id_number)).join(P, P.c.id == ST.c.beneficiary_id)
    for s, rows in _batches(db, facts, ST.c.id, batch):
        for sid, digest, amount, category, institution, stored in rows:
            active, retired = request_digests(decrypt(stored, P.c.id_number.type.context), amount, category,
                                              institution)
            if digest == retired != active:
                done["settlements.request_hash"] += 1 if dry_run else s.execute(
                    sa.update(ST).where(ST.c.id == sid, ST.c.request_hash == digest)
                    .values(request_hash=active)).rowcount
        if progress is not None and rows:
            progress("settlements.request_hash", len(rows))
    return dict(done)
