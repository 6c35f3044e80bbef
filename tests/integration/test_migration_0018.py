"""Migration 0018 on both backends: bindings.authorized_at, backfilled from the history (the first transition
into `authorized`; a new amount later keeps it), NULL for a binding never authorized."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Binding, migrate
from workflows import commands

from .support import T0, accepted, person


@pytest.mark.parametrize("backend", ["sqlite_db", pytest.param("pg_db", marks=pytest.mark.pg)])
def test_the_bound_time_is_backfilled_from_the_first_authorization(request, family, backend):
    """Given an authorized binding (authorized at T0+1 h, a new amount at T0+2 h) and an accepted one
    When the database is taken back to 0017 (the column dropped) and upgraded again
    Then the authorized one holds T0+1 h and the accepted one NULL."""
    db = request.getfixturevalue(backend)
    engine = db.kw["bind"]
    fam = family(db, now=T0)
    bound = accepted(db, fam, now=T0)
    commands.authorize(db, bound, person(fam.grantor), 1_000, now=T0 + timedelta(hours=1))
    commands.authorize(db, bound, person(fam.grantor), 2_000, now=T0 + timedelta(hours=2))
    waiting = accepted(db, family(db, now=T0), now=T0)
    try:
        migrate.downgrade(engine, "0017")
        assert "authorized_at" not in {c["name"] for c in sa.inspect(engine).get_columns("bindings")}
    finally:
        migrate.upgrade(engine)
    with db() as s:
        got = dict(s.execute(sa.select(Binding.id, Binding.authorized_at)).all())
    assert got == {bound: T0 + timedelta(hours=1), waiting: None}
