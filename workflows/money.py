"""How a settlement's amount is split (DESIGN §4): pure functions over integers in fen, no I/O.

The beneficiary's own personal account pays first, up to its balance; then each grantor in the
beneficiary's deduction order, up to min(what the binding's authorization has left, the grantor's
balance); the rest is cash. Nothing here can make a balance or an authorization negative: each part is a
min() of what is left. The command (`workflows/settlements.py`) reads the figures under row locks, so
the plan it computes is the one it writes.

The deduction order is the beneficiary's region policy (`deduction_order_policy`):
- `user_order`: the beneficiary's ranks (`PUT /persons/{id}/deduction-order`) first, in rank order, then
  unranked bindings newest first;
- `latest_bound_first`: newest binding first (ranks are ignored: the region fixes the order);
- `single_grantor`: only the newest binding pays; the rest is cash.
"Newest" is the binding whose grantor's account was bound most recently: its first authorization
(`Binding.authorized_at`; the guides bind the account at "绑定账户,授权金额"), not its invitation."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ORDERS = ("user_order", "latest_bound_first", "single_grantor")


@dataclass(frozen=True)
class Source:
    """One authorized binding that may pay: `left_fen` is what its authorization has left (None: the
    grantor authorized the whole balance), `balance_fen` the grantor's balance."""
    binding_id: str
    grantor_id: str
    left_fen: int | None
    balance_fen: int
    rank: int | None = None
    bound_at: datetime | None = None  # the binding's first authorization (`newest_first`)


@dataclass(frozen=True)
class Split:
    binding_id: str
    grantor_id: str
    amount_fen: int


@dataclass(frozen=True)
class Plan:
    acct_pay: int  # from the beneficiary's own account
    splits: tuple[Split, ...]  # from grantors, in deduction order
    psn_cash_pay: int  # the rest, paid in cash

    @property
    def acct_mulaid_pay(self) -> int:
        return sum(s.amount_fen for s in self.splits)


def ordered(sources: list[Source], policy: str) -> list[Source]:
    """The sources in the order they pay under the region's `deduction_order_policy`."""
    if policy not in ORDERS:
        raise ValueError(f"unknown deduction order policy {policy!r}")
    newest = newest_first(sources, lambda s: (s.bound_at, s.binding_id))
    if policy == "latest_bound_first":
        return newest
    if policy == "single_grantor":
        return newest[:1]
    ranked = sorted((s for s in newest if s.rank is not None), key=lambda s: s.rank)
    return ranked + [s for s in newest if s.rank is None]


def newest_first(items: list, key) -> list:
    """`items` by the time their account was bound, newest first; `key(item)` is (bound_at, binding id).
    One not bound yet (a live binding not authorized: `PUT deduction-order` lists those too) comes before
    every bound one: when it is bound, it will be the newest."""
    def at(item):
        bound_at, binding_id = key(item)
        return (bound_at is None, bound_at or datetime.min, binding_id)
    return sorted(items, key=at, reverse=True)


def plan(amount_fen: int, own_balance_fen: int, sources: list[Source]) -> Plan:
    """Split `amount_fen` (> 0) over the beneficiary's own balance, then `sources` in the given order."""
    if amount_fen <= 0 or own_balance_fen < 0:
        raise ValueError("the amount is positive and a balance is never negative")
    left = amount_fen
    own = min(left, own_balance_fen)
    left -= own
    splits = []
    for s in sources:
        if not left:
            break
        room = s.balance_fen if s.left_fen is None else min(s.left_fen, s.balance_fen)
        part = min(left, max(room, 0))
        if part:
            splits.append(Split(s.binding_id, s.grantor_id, part))
            left -= part
    return Plan(own, tuple(splits), left)


def postings(plan_: Plan, *, beneficiary_id: str, institution_code: str) -> list[tuple[str, int]]:
    """The ledger lines of a settlement (account, signed fen), summing to zero: the accounts and the
    patient's cash pay the institution the whole amount."""
    lines = [(f"account:{beneficiary_id}", -plan_.acct_pay)] if plan_.acct_pay else []
    lines += [(f"account:{s.grantor_id}", -s.amount_fen) for s in plan_.splits]
    if plan_.psn_cash_pay:
        lines.append(("cash", -plan_.psn_cash_pay))
    lines.append((f"institution:{institution_code}", plan_.acct_pay + plan_.acct_mulaid_pay + plan_.psn_cash_pay))
    return lines
