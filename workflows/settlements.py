"""Settlements (DESIGN §4): pay a beneficiary's compliant medical cost from their own account, then their
grantors' through authorized bindings, the rest in cash; reverse one. Amounts in fen.

`settle` is one transaction. It locks the persons whose balances it may change (the beneficiary and the
grantors of their authorized bindings, in id order: two settlements sharing a person queue instead of
deadlocking) and the authorized bindings (an `unbind` or a new `authorize` waits, or wins first and is
seen), reads what each authorization has used, splits (`money.plan`), and writes the settlement, its
splits, its ledger lines, the balances and the `settlement.completed` event. Under any concurrency the
locks serialize every writer of those balances and of what an authorization has used (splits are written
only here, under the beneficiary's lock; a reversal racing a settlement can only make it pay less), and
CHECK constraints refuse a negative balance or parts that do not add up. A binding authorized between the
first read and the locks makes the transaction run again (locking its grantor late would invert the
person → binding order every other writer keeps).

Idempotent on the platform's `reference`: the same reference with the same facts answers the stored
settlement; with other facts it is refused (`reference_reused`). `reverse_in` puts every fen back where it
came from, once; again it answers the reversed settlement. The platform API (`reverse`, its own settlements
only) and an operator on the dashboard (`settlement_repair`) both reverse through it."""
from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa

from models import Binding, LedgerEntry, Person, Settlement, SettlementSplit, Transition
from models.crypto import lookup_hashes
from models.money import CATEGORIES, SETTLEMENT_STATUSES  # noqa: F401  (SETTLEMENT_STATUSES: for the API schema)
from models.types import utcnow

from . import free_text, id_in_text, idnumbers, money, policy, rules
from .errors import DomainError
from .persons import by_number, province_of
from .rules import MAX_FEN
from .unit import command

B, P, SP = Binding.__table__, Person.__table__, SettlementSplit.__table__
_H = Transition.__table__
# when a binding's account was bound (`money.newest_first`): `authorized_at`; for one authorized by a process of
# the code before migration 0018 (a rolling deploy), its first transition into `authorized`, from the history
BOUND_AT = sa.func.coalesce(B.c.authorized_at, sa.select(sa.func.min(_H.c.at)).where(
    _H.c.binding_id == B.c.id, _H.c.to_state == "authorized").scalar_subquery())
_PAYING = sa.select(B.c.id, B.c.grantor_id, B.c.version, B.c.authorized_amount_fen, B.c.deduction_rank,
                    BOUND_AT.label("bound_at")).where(B.c.beneficiary_id == sa.bindparam("b"),
                                                      B.c.state == "authorized")
_LOCK_PERSONS = (sa.select(P.c.id, P.c.balance_fen, P.c.insurance_type, P.c.insurance_status, P.c.deceased,
                           P.c.real_name_verified)
                 .where(P.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(P.c.id).with_for_update())


def paid_by(binding_id) -> sa.ScalarSelect:
    """fen a binding's authorization has paid (a scalar subquery on `binding_id`, a column or a value): every
    split of its settlements not reversed. The cap is on that total; authorizing again changes the cap, not
    what was used, and a relocation changes neither."""
    return (sa.select(sa.func.coalesce(sa.func.sum(SP.c.amount_fen), 0))
            .join(Settlement, Settlement.id == SP.c.settlement_id)
            .where(SP.c.binding_id == binding_id, Settlement.status == "completed").scalar_subquery())


_USED = sa.select(B.c.id, paid_by(B.c.id)).where(B.c.id.in_(sa.bindparam("ids", expanding=True)))
_MOVE = sa.update(P).where(P.c.id == sa.bindparam("pid")).values(balance_fen=P.c.balance_fen + sa.bindparam("delta"))


def _check(reference: str, amount_fen: int, category: str, institution_code: str) -> None:
    if not isinstance(reference, str) or not 0 < len(reference) <= 64 or id_in_text.holds_id_number(reference):
        raise DomainError("validation_failed", "reference is 1 to 64 characters, without an ID number")
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or not 0 < amount_fen <= MAX_FEN:
        raise DomainError("validation_failed", f"amount_fen is an integer from 1 to {MAX_FEN}")
    if category not in CATEGORIES:  # compliant medical costs only, never non-medical goods
        raise DomainError("validation_failed", f"category is one of {', '.join(CATEGORIES)}")
    if (not isinstance(institution_code, str) or not 0 < len(institution_code) <= 32
            or id_in_text.holds_id_number(institution_code)):
        raise DomainError("validation_failed", "institution_code is 1 to 32 characters, without an ID number")


def settle(db, *, platform, reference: str, beneficiary_id_number: str, amount_fen: int, category: str,
           institution_code: str, now=None) -> tuple[dict, bool]:
    """Settle once per (platform, reference); (the settlement's view, whether it was created now)."""
    _check(reference, amount_fen, category, institution_code)
    number = idnumbers.validate(beneficiary_id_number if isinstance(beneficiary_id_number, str) else "",
                                today=idnumbers.today_in_china(now or utcnow()))
    digests = request_digests(number, amount_fen, category, institution_code)
    for last in (False, False, True):
        try:
            return _settle(db, platform, reference, number, amount_fen, category, institution_code, digests, now)
        except DomainError as exc:  # the same reference committed by a concurrent request (answer it), or a
            if exc.code != "conflict" or last:  # binding authorized meanwhile (`_lock`): run again
                raise
    raise AssertionError("unreachable")


def request_digests(number: str, amount_fen: int, category: str, institution_code: str) -> tuple[str, str]:
    """The digest of the facts a reference stands for, with the person by the keyed look-up hash (a plain
    hash of an ID number could be reversed by trying the few million numbers of a birth year): under the
    active look-up key (written) and the one being retired (`lookup_hashes`; the same when none is)."""
    return tuple(hashlib.sha256(json.dumps([h, amount_fen, category, institution_code]).encode()).hexdigest()
                 for h in lookup_hashes(number))


def _settle(db, platform, reference, number, amount_fen, category, institution_code, digests, now):
    with command(db, now=now, platform=platform) as cmd:
        s = cmd.session
        found = s.scalar(sa.select(Settlement).where(Settlement.platform_id == platform.id,
                                                     Settlement.reference == reference))
        if found is not None:
            if found.request_hash not in digests:
                raise DomainError("reference_reused", "this reference was settled with other facts")
            return view(s, found), False
        beneficiary = by_number(s, number)
        if beneficiary is None or not platform.serves(beneficiary.region_code[:2]):
            raise DomainError("not_found", "no person with this ID number in the provinces the platform serves")
        order = policy.in_force(s, beneficiary.region_code, cmd.now).deduction_order_policy
        paying = _lock(s, beneficiary.id)
        rules.check_beneficiary(paying["people"][beneficiary.id])  # as it is under the lock
        plan = money.plan(amount_fen, paying["own"], money.ordered(paying["sources"], order))
        row = Settlement(platform_id=platform.id, reference=reference, request_hash=digests[0],
                         beneficiary_id=beneficiary.id, category=category, institution_code=institution_code,
                         amount_fen=amount_fen, acct_pay=plan.acct_pay, acct_mulaid_pay=plan.acct_mulaid_pay,
                         psn_cash_pay=plan.psn_cash_pay, balc=paying["own"] - plan.acct_pay, status="completed",
                         created_at=cmd.now)
        s.add(row)
        s.flush()
        versions = paying["versions"]
        s.add_all(SettlementSplit(settlement_id=row.id, binding_id=x.binding_id, binding_version=versions[x.binding_id],
                                  position=i, grantor_id=x.grantor_id, amount_fen=x.amount_fen)
                  for i, x in enumerate(plan.splits, start=1))
        _post(cmd, row, money.postings(plan, beneficiary_id=beneficiary.id, institution_code=institution_code),
              "settle")
        out = view(s, row)
        _told_by(cmd, row, "settle",
                 cmd.emit("settlement.completed", {"settlement": out, "platform_id": row.platform_id}))
        return out, True


def _lock(s, beneficiary_id: str) -> dict:
    """Lock the beneficiary, the grantors of their authorized bindings and those bindings; what may pay."""
    conn = s.connection()
    grantors = {r.grantor_id for r in conn.execute(_PAYING, {"b": beneficiary_id})}
    people = {r.id: r for r in conn.execute(_LOCK_PERSONS, {"ids": sorted({beneficiary_id} | grantors)})}
    bindings = conn.execute(_PAYING.order_by(B.c.id).with_for_update(of=B), {"b": beneficiary_id}).all()
    if {b.grantor_id for b in bindings} - people.keys():  # a binding authorized since the first read: locking
        # its grantor now would take a person after a binding, the reverse of every other writer's order
        raise DomainError("conflict", "a binding of the beneficiary was authorized meanwhile; run again")
    paid = used(conn, [b.id for b in bindings]) if bindings else {}
    sources = []
    for b in bindings:
        g = people[b.grantor_id]
        if not rules.grantor_eligible(g):
            continue  # no longer eligible: its binding is being ended by the person event that said so
        left = None if b.authorized_amount_fen is None else max(b.authorized_amount_fen - paid.get(b.id, 0), 0)
        sources.append(money.Source(b.id, b.grantor_id, left, g.balance_fen, b.deduction_rank, b.bound_at))
    return {"own": people[beneficiary_id].balance_fen, "sources": sources, "people": people,
            "versions": {b.id: b.version for b in bindings}}


def used(conn, binding_ids: list[str]) -> dict[str, int]:
    """fen each binding's authorization has paid (PostgreSQL sums a BIGINT as NUMERIC: back to int)."""
    return {bid: int(total) for bid, total in conn.execute(_USED, {"ids": binding_ids})}



def _post(cmd, row: Settlement, lines: list[tuple[str, int]], posting: str) -> None:
    """Write the ledger lines and apply those of personal accounts to the balances."""
    s = cmd.session
    s.add_all(LedgerEntry(settlement_id=row.id, posting=posting, account=a, amount_fen=f, at=cmd.now)
              for a, f in lines)
    s.flush()
    for account, fen in lines:
        if account.startswith("account:"):
            s.connection().execute(_MOVE, {"pid": account.split(":", 1)[1], "delta": fen})


def _told_by(cmd, row: Settlement, posting: str, outbox_id: int) -> None:
    """Name on the posting's ledger lines the event that tells the platforms of them (see LedgerEntry)."""
    cmd.session.execute(sa.update(LedgerEntry).where(LedgerEntry.settlement_id == row.id,
                                                     LedgerEntry.posting == posting).values(outbox_id=outbox_id))


def reverse(db, *, platform, settlement_id: str, reason: str | None = None, now=None) -> dict:
    """The platform API's reversal (`POST /settlements/{id}/reversal`): a platform reverses only its own
    settlements (another's is not found); once, and again it answers the reversed settlement (with the
    reason of the first reversal)."""
    with command(db, now=now, platform=platform) as cmd:
        return reverse_in(cmd, settlement_id, platform=platform, reason=reason)[0]


def reverse_in(cmd, settlement_id: str, *, platform=None, reason: str | None = None) -> tuple[dict, bool]:
    """The reversal every caller shares (the API's `reverse`, an operator's `settlement_repair.reverse`), in
    the caller's command: (the settlement's view, whether it was reversed now). The settlement's row lock
    decides between callers: the second waits, reads `reversed` and answers the view, moving nothing. Every
    ledger line of the settlement is negated, the balances follow (persons locked in id order, as `settle`
    locks them), `reason` is kept (masked as free text, the settlement's persons' names too) and
    `settlement.reversed` is emitted. With `platform`, another platform's is not found."""
    s = cmd.session
    row = s.scalar(sa.select(Settlement).where(Settlement.id == settlement_id).with_for_update())
    if row is None or (platform is not None and row.platform_id != platform.id):
        raise DomainError("not_found", f"no settlement {settlement_id}" + (" of this platform" if platform else ""))
    if row.status == "reversed":
        return view(s, row), False
    lines = s.execute(sa.select(LedgerEntry.account, LedgerEntry.amount_fen)
                      .where(LedgerEntry.settlement_id == row.id, LedgerEntry.posting == "settle")).all()
    people = sorted({a.split(":", 1)[1] for a, _ in lines if a.startswith("account:")})
    s.connection().execute(_LOCK_PERSONS, {"ids": people}).all()  # in id order, as `settle` locks them
    row.status, row.reversed_at = "reversed", cmd.now
    row.reversal_reason = free_text.clean_about(s, reason, family_of(s, row.beneficiary_id)) if reason else None
    _post(cmd, row, [(a, -f) for a, f in lines], "reverse")
    out = view(s, row)
    _told_by(cmd, row, "reverse",
             cmd.emit("settlement.reversed", {"settlement": out, "platform_id": row.platform_id}))
    return out, True


def family_of(s, beneficiary_id: str) -> tuple[str, ...]:
    """The beneficiary and every grantor of theirs (any binding, paying or not, ended or not): whose names a
    reason about their settlement may hold, masked in it (`free_text.clean_about`)."""
    grantors = s.scalars(sa.select(B.c.grantor_id).where(B.c.beneficiary_id == beneficiary_id))
    return tuple(sorted({beneficiary_id, *grantors}))


def get(db, *, platform, settlement_id: str) -> dict:
    """A settlement as a platform may read it: the one that made it, and every platform its events concern
    (the national platform, those serving the beneficiary's or a paying grantor's province), which can
    then read back one whose event it lost; any other is not found. Only the first may reverse it."""
    with db() as s:
        row = s.get(Settlement, settlement_id)
        out = view(s, row) if row is not None else None
        if out is None or not (row.platform_id == platform.id or any(map(platform.serves, provinces(s, out)))):
            raise DomainError("not_found", f"no settlement {settlement_id} this platform is concerned with")
        return out


def provinces(s, settled: dict) -> set[str]:
    """The provinces a settlement (its `view`) concerns: the beneficiary's and every paying grantor's."""
    persons = (settled["beneficiary"], *(x["grantor"] for x in settled["splits"]))
    return {province_of(s, p["region_code"]) for p in persons}


def view(s, row: Settlement) -> dict:
    """The API answer (API.md names), the events' `data.settlement` and the dashboard's settlement page;
    persons masked only, from their stored masked columns (the encrypted ones are never read here)."""
    splits = s.execute(sa.select(SP.c.binding_id, SP.c.grantor_id, SP.c.amount_fen)
                       .where(SP.c.settlement_id == row.id).order_by(SP.c.position)).all()
    refs = person_refs(s, {row.beneficiary_id, *(x.grantor_id for x in splits)})
    return {"id": row.id, "reference": row.reference, "status": row.status,
            "beneficiary": refs[row.beneficiary_id], "category": row.category,
            "institution_code": row.institution_code, "amount_fen": row.amount_fen, "acct_pay": row.acct_pay,
            "acct_mulaid_pay": row.acct_mulaid_pay, "psn_cash_pay": row.psn_cash_pay,
            "splits": [{"binding_id": x.binding_id, "grantor": refs[x.grantor_id], "amount_fen": x.amount_fen}
                       for x in splits],
            "balc": row.balc, "created_at": row.created_at.isoformat(),
            "reversed_at": row.reversed_at.isoformat() if row.reversed_at else None,
            "reversal_reason": row.reversal_reason}


_REFS = sa.select(P.c.id, P.c.id_number_masked, P.c.name_masked, P.c.region_code)  # `views.person_ref`'s fields


def person_refs(s, person_ids) -> dict[str, dict]:
    """person id → {id, id_number_masked, name_masked, region_code} (`views.person_ref`), masked columns only."""
    return {r.id: dict(r._mapping) for r in s.execute(_REFS.where(P.c.id.in_(sorted(person_ids))))}


def of_binding(s, binding_id: str, *, limit: int = 50) -> dict:
    """For the dashboard's binding page: what its authorization has used (its splits in settlements not
    reversed) and its latest payments, newest first."""
    st = Settlement.__table__
    rows_ = s.execute(sa.select(st.c.id, st.c.reference, st.c.created_at, st.c.category, st.c.institution_code,
                                st.c.status, SP.c.amount_fen, SP.c.binding_version)
                      .join(SP, SP.c.settlement_id == st.c.id).where(SP.c.binding_id == binding_id)
                      .order_by(st.c.created_at.desc(), st.c.id.desc()).limit(limit)).all()
    used_fen = used(s, [binding_id]).get(binding_id, 0)
    return {"used_fen": used_fen, "items": [r._asdict() for r in rows_]}
