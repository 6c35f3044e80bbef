"""The settlement split (DESIGN §4), pure: own account first, then grantors in deduction order, each up to
min(what the authorization has left, the grantor's balance), the rest cash; in fen, never negative."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.money import Source, newest_first, ordered, plan, postings

T = datetime(2026, 3, 2, tzinfo=timezone.utc)


def src(name: str, left, balance: int, *, rank=None, age_days: int = 0) -> Source:
    return Source(f"bnd_{name}", f"psn_{name}", left, balance, rank, T - timedelta(days=age_days))


def test_own_account_then_grantors_in_order_then_cash():
    """Given a beneficiary with 300 fen, a grantor authorizing 500 of 1,000 and one authorizing the whole of 200
    When 1,500 fen is settled
    Then 300 comes from the own account, 500 and 200 from the grantors in order, and 500 is cash."""
    p = plan(1_500, 300, [src("a", 500, 1_000), src("b", None, 200)])
    assert (p.acct_pay, p.acct_mulaid_pay, p.psn_cash_pay) == (300, 700, 500)
    assert [(s.binding_id, s.amount_fen) for s in p.splits] == [("bnd_a", 500), ("bnd_b", 200)]


def test_a_small_cost_stays_on_the_own_account():
    """Given a beneficiary whose own balance covers the cost
    When it is settled
    Then no grantor pays anything (no split at all) and there is no cash part."""
    p = plan(100, 300, [src("a", None, 1_000)])
    assert (p.acct_pay, p.splits, p.psn_cash_pay) == (100, (), 0)


def test_a_used_up_authorization_or_an_empty_account_is_skipped():
    """Given one grantor whose authorization has nothing left and one with an empty account
    When a cost beyond the own balance is settled
    Then the next grantor pays and neither of the two appears as a split."""
    p = plan(1_000, 0, [src("used", 0, 5_000), src("empty", None, 0), src("c", 400, 5_000)])
    assert [(s.binding_id, s.amount_fen) for s in p.splits] == [("bnd_c", 400)]
    assert p.psn_cash_pay == 600


def test_deduction_orders():
    """Given three bindings, one ranked 1 by the beneficiary, bound at different times
    When they are ordered under each region policy
    Then user_order puts the ranked first then the newest; latest_bound_first ignores ranks; single_grantor
    keeps only the newest."""
    old_ranked, newest, middle = src("old", None, 1, rank=1, age_days=30), src("new", None, 1), src("mid", None, 1,
                                                                                                   age_days=5)
    sources = [middle, old_ranked, newest]
    assert ordered(sources, "user_order") == [old_ranked, newest, middle]
    assert ordered(sources, "latest_bound_first") == [newest, middle, old_ranked]
    assert ordered(sources, "single_grantor") == [newest]
    with pytest.raises(ValueError):
        ordered(sources, "alphabetical")


@given(amount=st.integers(1, 10**9), own=st.integers(0, 10**9),
       sources=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 10**9)), st.integers(0, 10**9)), max_size=6))
def test_split_invariants(amount, own, sources):
    """For any amount, balances and authorizations: every part is non-negative, the parts add up to the amount,
    no grantor pays more than min(left, balance), grantors pay in order (one pays only when those before
    it gave all they could), cash is only what no one could pay, and the ledger lines sum to zero."""
    given_sources = [src(str(i), left, bal) for i, (left, bal) in enumerate(sources)]
    p = plan(amount, own, given_sources)
    assert p.acct_pay >= 0 and p.psn_cash_pay >= 0 and all(s.amount_fen > 0 for s in p.splits)
    assert p.acct_pay + p.acct_mulaid_pay + p.psn_cash_pay == amount
    assert p.acct_pay == min(amount, own)
    room = {s.binding_id: (s.balance_fen if s.left_fen is None else min(s.left_fen, s.balance_fen))
            for s in given_sources}
    paid = {s.binding_id: s.amount_fen for s in p.splits}
    assert all(paid[b] <= room[b] for b in paid)
    order = [s.binding_id for s in given_sources]
    assert [s.binding_id for s in p.splits] == [b for b in order if b in paid]
    last = max((order.index(b) for b in paid), default=0)
    assert all(paid.get(b, 0) == room[b] for b in order[:last])  # everyone before the last payer gave all
    if p.psn_cash_pay:
        assert p.acct_pay == own and all(paid.get(b, 0) == room[b] for b in order)
    lines = postings(p, beneficiary_id="psn_b", institution_code="H1")
    assert sum(f for _, f in lines) == 0
    assert dict(lines)[("institution:H1")] == amount


def test_a_non_positive_amount_is_refused():
    with pytest.raises(ValueError):
        plan(0, 100, [])


def test_a_binding_not_bound_yet_comes_before_the_bound_ones():
    """Given three live bindings, one not authorized yet (no bound time) and two bound on different days
    When they are ordered newest first (the unranked part of a deduction order), Then the unbound one comes
    first (bound later, it will be the newest), then the bound ones, the later bound first."""
    items = [("bnd_old", T - timedelta(days=9)), ("bnd_none", None), ("bnd_new", T)]
    assert [i[0] for i in newest_first(items, lambda i: (i[1], i[0]))] == ["bnd_none", "bnd_new", "bnd_old"]
