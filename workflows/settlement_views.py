"""Settlements as an operator sees them: the list (filters, keyset pages), a person's settlements by ID
number, one settlement with its splits, ledger lines and who reversed it, and today's counts.

Why: a platform that asks a bureau about a payment names its own reference or the patient; the operator
must find the settlement, see where each fen came from and went, and reverse a wrong one when the platform
cannot (`settlement_repair`). What is shown:
- the list, newest first by (created_at DESC, id DESC) in keyset pages whose cursor is the finder's
  (`sync._cursor` / `sync._parse_cursor`); filters: reference (exact), platform, status, category, created in
  [since, until). A reference without a platform names every registered platform, so PostgreSQL walks
  uq_settlements_reference (platform_id, reference) instead of the table; the order, the days and today's
  counts read ix_settlements_created (created_at, id), so a page stops after `limit` + 1 rows.
- a person's settlements (as beneficiary) by ID number: validated and looked up through the keyed hash
  (`persons.id_by_number`), then ix_settlements_beneficiary_id; all on one page (the number is never
  put into a cursor or a URL), at most PERSON_MAX, `more` when there are others.
- one settlement: `settlements.view` (the API's answer) with its platform, its ledger lines (a personal
  account named by its masked person) and, once reversed, by whom: an operator (the audit row
  `settlement_reverse` written in the reversal's own transaction, at its `reversed_at`) or else its platform
  through the API (only the platform that made it may reverse it there).
Persons appear masked only, from their stored masked columns; the encrypted ones are never read."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import AuditEntry, Delivery, LedgerEntry, Person, Settlement
from models.money import CATEGORIES, SETTLEMENT_STATUSES
from models.types import utcnow

from . import free_text, id_in_text, idnumbers, platforms, settlements, sync
from .errors import DomainError
from .persons import id_by_number

MAX_LIMIT = 200
PERSON_MAX = 1000  # a person's settlements on one page (the ID number cannot travel in a next-page link)
REVERSE_ACTION = "settlement_reverse"  # the audit action of an operator's reversal (`settlement_repair`)
ST, L, P, A = Settlement.__table__, LedgerEntry.__table__, Person.__table__, AuditEntry.__table__
D = Delivery.__table__
# the settlement's events as delivered to each platform: the outbox rows its ledger postings were told by
_DELIVERIES = (sa.select(D.c.id, D.c.platform_id, D.c.topic, D.c.status, D.c.attempts, D.c.last_status_code,
                         D.c.last_error, D.c.delivered_at, D.c.dead_at, D.c.next_attempt_at)
               .where(D.c.outbox_id.in_(sa.select(L.c.outbox_id).where(L.c.settlement_id == sa.bindparam("sid"),
                                                                      L.c.outbox_id.is_not(None))))
               .order_by(D.c.id))
_ORDER = (ST.c.created_at.desc(), ST.c.id.desc())
_COLUMNS = (ST.c.id, ST.c.reference, ST.c.platform_id, ST.c.category, ST.c.institution_code, ST.c.amount_fen,
            ST.c.acct_pay, ST.c.acct_mulaid_pay, ST.c.psn_cash_pay, ST.c.balc, ST.c.status, ST.c.created_at,
            ST.c.reversed_at, P.c.id.label("beneficiary_id"), P.c.id_number_masked, P.c.name_masked)
_REVERSED_BY = sa.select(A.c.operator, A.c.reason, A.c.detail).where(
    A.c.at == sa.bindparam("at", type_=A.c.at.type), A.c.action == REVERSE_ACTION, A.c.outcome == "ok")


def _conditions(s, *, reference=None, platform=None, status=None, category=None, since=None,
                until=None) -> list:
    conds = []
    if reference:
        if not isinstance(reference, str) or len(reference) > 64 or id_in_text.holds_id_number(reference):
            raise DomainError("validation_failed", "reference is 1 to 64 characters, without an ID number")
        conds.append(ST.c.reference == reference)
        if not platform:  # (platform_id, reference) is the unique index: name every platform
            conds.append(ST.c.platform_id.in_([p.id for p in platforms.all_platforms(s)]))
    if platform:
        conds.append(ST.c.platform_id == platforms.get_in(s, platform).id)  # not_found: nobody registered it
    if status:
        if status not in SETTLEMENT_STATUSES:
            raise DomainError("validation_failed", f"status is one of {', '.join(SETTLEMENT_STATUSES)}")
        conds.append(ST.c.status == status)
    if category:
        if category not in CATEGORIES:
            raise DomainError("validation_failed", f"category is one of {', '.join(CATEGORIES)}")
        conds.append(ST.c.category == category)
    if since is not None:
        conds.append(ST.c.created_at >= _aware(since))
    if until is not None:
        conds.append(ST.c.created_at < _aware(until))
    return conds


def _aware(value) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DomainError("validation_failed", "since and until are aware datetimes")
    return value


def _select(conds: list, n: int) -> sa.Select:
    return (sa.select(*_COLUMNS).select_from(ST.join(P, P.c.id == ST.c.beneficiary_id))
            .where(*conds).order_by(*_ORDER).limit(n))


def _item(r) -> dict:
    out = {k: r[k] for k in r.keys() if k not in ("beneficiary_id", "id_number_masked", "name_masked")}
    out["beneficiary"] = {"id": r["beneficiary_id"], "id_number_masked": r["id_number_masked"],
                          "name_masked": r["name_masked"]}
    return out


def find(db, *, reference=None, platform=None, status=None, category=None, since: datetime | None = None,
         until: datetime | None = None, after: str | None = None, limit: int = 50) -> dict:
    """One page, newest first: {"items": [item...], "next": a cursor for `after`, or None on the last page}.
    An item: the settlement's columns (amounts in fen, times aware), `beneficiary` {id, masked number, name}."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    with db() as s:
        conds = _conditions(s, reference=reference, platform=platform, status=status, category=category,
                            since=since, until=until)
        if after:
            at, sid = sync._parse_cursor(after)
            conds.append(sa.tuple_(ST.c.created_at, ST.c.id) < sa.tuple_(sa.literal(at, ST.c.created_at.type),
                                                                         sa.literal(sid)))
        found = s.execute(_select(conds, limit + 1)).mappings().all()
    last = found[limit - 1] if len(found) > limit else None
    return {"items": [_item(r) for r in found[:limit]],
            "next": sync._cursor(last["created_at"], last["id"]) if last is not None else None}


def of_beneficiary(db, id_number: str, *, limit: int = PERSON_MAX, now: datetime | None = None) -> dict:
    """The settlements of the person with this ID number (as beneficiary), newest first, all on one page:
    {"items", "next": None, "more": whether PERSON_MAX cut it short}. invalid_id_number for a bad number;
    no items for a number nobody holds. The number is hashed, never kept or returned."""
    number = idnumbers.validate(id_number if isinstance(id_number, str) else "",
                                today=idnumbers.today_in_china(now or utcnow()))
    with db() as s:
        person_id = id_by_number(s, number)
        if person_id is None:
            return {"items": [], "next": None, "more": False}
        found = s.execute(_select([ST.c.beneficiary_id == person_id], limit + 1)).mappings().all()
    return {"items": [_item(r) for r in found[:limit]], "next": None, "more": len(found) > limit}


def detail(db, settlement_id: str) -> dict:
    """One settlement for its page: `settlements.view` with platform_id, `ledger` (lines in order: posting,
    account, amount_fen, at, and `person` for a personal account), `reversed_by` (None while completed;
    {"kind": "operator", "operator", "reason"} or {"kind": "platform", "platform_id", "reason"}) and `deliveries` (its
    events to each platform: status, tries, last answer masked), so that an event that never reached a
    platform shows where the money was moved."""
    with db() as s:
        row = s.get(Settlement, settlement_id)
        if row is None:
            raise DomainError("not_found", f"no settlement {settlement_id}")
        out = settlements.view(s, row)
        lines = s.execute(sa.select(L.c.posting, L.c.account, L.c.amount_fen, L.c.at)
                          .where(L.c.settlement_id == row.id).order_by(L.c.id)).mappings().all()
        holders = {a.split(":", 1)[1] for a in (x["account"] for x in lines) if a.startswith("account:")}
        refs = settlements.person_refs(s, holders)
        by = None
        if row.reversed_at is not None:
            by = next(({"kind": "operator", "operator": a.operator, "reason": row.reversal_reason or a.reason}
                       for a in s.execute(_REVERSED_BY, {"at": row.reversed_at})
                       if (a.detail or {}).get("settlement_id") == row.id),
                      {"kind": "platform", "platform_id": row.platform_id, "reason": row.reversal_reason})
        sent = [{**d, "last_error": free_text.clean(d["last_error"], limit=2000)}
                for d in s.execute(_DELIVERIES, {"sid": row.id}).mappings()]
    ledger = [{**x, "person": refs.get(x["account"].split(":", 1)[1]) if x["account"].startswith("account:")
               else None} for x in lines]
    return {**out, "platform_id": row.platform_id, "ledger": ledger, "reversed_by": by, "deliveries": sent}


def counts(db, *, since: datetime) -> dict[str, int]:
    """Settlements created since `since`, per status (every status, 0 when none)."""
    with db() as s:
        found = dict(s.execute(sa.select(ST.c.status, sa.func.count()).where(ST.c.created_at >= since)
                               .group_by(ST.c.status)).all())
    return {st: int(found.get(st, 0)) for st in SETTLEMENT_STATUSES}
