"""Read side for the API: one binding with its verification attempts, its history, and the
beneficiary's deduction order (a write, but not a state transition: it changes no binding state)."""
from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from models import Binding, Person, Transition, VerificationAttempt

from . import money, policy, rows, settlements, sync, writes
from .errors import DomainError
from .statements import Statement
from .unit import command
from .views import attempt_view, binding_view, transition_view

LIVE = ("accepted", "authorized")
VA = VerificationAttempt.__table__
# The read a platform polls, one statement and so one snapshot: the binding with its persons, each attempt and
# each platform's acknowledged version, outer-joined (a row per attempt × platform: a few rows at most), and
# what its authorization has paid (a subquery).
# Separate reads could show a passed attempt next to the state from before it.
_SNAPSHOT = Statement(
    rows.select_bindings()
    .add_columns(settlements.paid_by(rows.B.c.id), *[VA.c[c] for c in writes.ATTEMPT_COLUMNS],
                 sync.S.c.platform_id, sync.S.c.acked_version)
    .outerjoin(VA, VA.c.binding_id == rows.B.c.id).outerjoin(sync.S, sync.S.c.binding_id == rows.B.c.id)
    .where(rows.B.c.id == sa.bindparam("binding_id")).order_by(VA.c.attempt_no, sync.S.c.platform_id))
_OWN = len(rows.select_bindings().exported_columns)


def _binding(session, binding_id: str) -> Binding:
    row = session.scalars(sa.select(Binding).where(Binding.id == binding_id)
                          .options(joinedload(Binding.grantor), joinedload(Binding.beneficiary))).unique().one_or_none()
    if row is None:
        raise DomainError("not_found", f"no binding {binding_id}")
    return row


def binding(db, binding_id: str) -> dict:
    """`GET /bindings/{id}`: the binding, its verification attempts in order and what each platform
    acknowledged, as of one moment."""
    with db.kw["bind"].connect() as conn:
        found = _SNAPSHOT.rows(conn, {"binding_id": binding_id})
    if not found:
        raise DomainError("not_found", f"no binding {binding_id}")
    row, attempts, acked, paid = rows.from_row(found[0]), {}, {}, int(found[0][_OWN])
    for f in found:
        attempt, (platform_id, version) = f[_OWN + 1:-2], f[-2:]
        if attempt[0] is not None and attempt[0] not in attempts:
            attempts[attempt[0]] = SimpleNamespace(**dict(zip(writes.ATTEMPT_COLUMNS, attempt)))
        if platform_id is not None:
            acked[platform_id] = version
    return {**binding_view(row, row.grantor, row.beneficiary),
            # the beneficiary's order as it is now: set without a new version, so not in events or the feed
            "deduction_rank": row.deduction_rank, "authorization_used_fen": paid,
            "verifications": [attempt_view(a) for a in attempts.values()], "sync": acked}


def history(db, binding_id: str) -> dict:
    with db() as s:
        _binding(s, binding_id)
        rows = s.scalars(sa.select(Transition).where(Transition.binding_id == binding_id)
                         .order_by(Transition.seq)).all()
        return {"binding_id": binding_id, "transitions": [transition_view(t) for t in rows]}


def set_deduction_order(db, person_id: str, binding_ids: list[str]) -> dict:
    """The beneficiary ranks some or all of their live bindings (the ids listed, in order; any rank given
    before is replaced); the unranked follow, newest first, also those made later. The answer is the order
    they pay in now. Only where the beneficiary's region policy is `user_order` (DESIGN §3): elsewhere the
    region fixes the order."""
    if len(set(binding_ids)) != len(binding_ids):
        raise DomainError("validation_failed", "binding_ids has duplicates")
    with command(db) as cmd:
        person = cmd.session.scalar(sa.select(Person).where(Person.id == person_id).with_for_update())
        if person is None:
            raise DomainError("not_found", f"no person {person_id}")
        fixed = policy.in_force(cmd.session, person.region_code, cmd.now).deduction_order_policy
        if fixed != "user_order":  # latest_bound_first, single_grantor: the region decides, not the person
            raise DomainError("deduction_order_fixed", f"the region's deduction order is {fixed}")
        # locked after the person, as every writer locks (person, then binding): a transition committing in
        # between would make the rank's version-checked UPDATE match nothing
        found = cmd.session.execute(sa.select(Binding, settlements.BOUND_AT).where(
            Binding.beneficiary_id == person_id, Binding.state.in_(LIVE))
            .order_by(Binding.id).with_for_update(of=Binding)).all()  # locked in id order
        bound = {b.id: at for b, at in found}
        live = money.newest_first([b for b, _ in found], lambda b: (bound[b.id], b.id))
        by_id = {b.id: b for b in live}
        unknown = [i for i in binding_ids if i not in by_id]
        if unknown:
            raise DomainError("not_your_binding", "every id must be a live binding where this person is the "
                              "beneficiary", binding_ids=unknown)
        ranks = {bid: rank for rank, bid in enumerate(binding_ids, start=1)}
        for b in live:  # the ones listed ranked, every other one unranked: it pays after them, newest first,
            b.deduction_rank = ranks.get(b.id)  # so a binding made later slots in among those by its age
        ordered = [by_id[i] for i in binding_ids] + [b for b in live if b.id not in ranks]
        return {"person_id": person_id, "binding_ids": [b.id for b in ordered]}
