"""Settlements on PostgreSQL (and one on SQLite): the split written with its ledger and balances, the
authorization used up and given back, idempotency on the reference, reversal, and the races the database
decides (two settlements draining one grantor, a settlement against an unbind, one reference twice)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Binding, Delivery, LedgerEntry, OutboxMessage, Person, Settlement, SettlementSplit, Transition
from workflows import commands, platforms, policy, policy_admin, policy_fields, queries, routing, settlements
from workflows.errors import DomainError

from .support import T0, accepted, person, race
from .test_dashboard_web import app, signed_in  # noqa: F401  (the app fixture)


def _person(db, number) -> Person:
    with db() as s:
        return s.scalar(sa.select(Person).where(Person.id_number_hash == _hash(number)))


def _hash(number):
    from models.crypto import lookup_hash
    return lookup_hash(number)


def _balances(db, *numbers) -> list[int]:
    return [_person(db, n).balance_fen for n in numbers]


def _authorized(db, family, new_person, *, cap, grantor_balance=100_000, beneficiary_balance=0, grantor=None,
                beneficiary=None, at=T0):
    """An authorized binding (cap in fen, None = whole balance); the family."""
    g = grantor or new_person(db, insurance_type="employee", balance_fen=grantor_balance, now=at)
    fam = family(db, grantor=g, now=at)
    if beneficiary is None:
        new_person(db, id_number=fam.beneficiary, name=fam.beneficiary_name, balance_fen=beneficiary_balance, now=at)
    bid = accepted(db, fam, now=at)
    commands.authorize(db, bid, person(fam.grantor), cap, now=at + timedelta(seconds=4))
    return fam, bid


def _settle(db, fam, amount, ref, *, platform="jiangsu", category="outpatient", at=T0 + timedelta(minutes=1)):
    return settlements.settle(db, platform=platforms.get(db, platform), reference=ref,
                              beneficiary_id_number=fam.beneficiary, amount_fen=amount, category=category,
                              institution_code="H320100001", now=at)


def _ledger_sums(db) -> dict[str, int]:
    with db() as s:
        return dict(s.execute(sa.select(LedgerEntry.settlement_id, sa.func.sum(LedgerEntry.amount_fen))
                              .group_by(LedgerEntry.settlement_id)).all())


def test_own_account_then_the_authorization_then_cash(pg_db, family, new_person, receivers):
    """Given a beneficiary with 100.00 yuan and a grantor with 1,000.00 yuan who authorized 500.00
    When 800.00 yuan of outpatient cost is settled, then 300.00 more
    Then the first pays 100.00 + 500.00 from the accounts and 200.00 cash; the second is all cash (the
    authorization is used up); balances, ledger (each settlement sums to zero) and the event agree."""
    fam, bid = _authorized(pg_db, family, new_person, cap=50_000, beneficiary_balance=10_000)

    first, created = _settle(pg_db, fam, 80_000, "JS-1")
    second, _ = _settle(pg_db, fam, 30_000, "JS-2")

    assert created and first["status"] == "completed"
    assert (first["acct_pay"], first["acct_mulaid_pay"], first["psn_cash_pay"], first["balc"]) == (10_000, 50_000,
                                                                                                  20_000, 0)
    assert [(x["binding_id"], x["amount_fen"]) for x in first["splits"]] == [(bid, 50_000)]
    assert queries.binding(pg_db, bid)["authorization_used_fen"] == 50_000  # all of the 500.00 yuan
    assert "id_number" not in first["splits"][0]["grantor"] and first["splits"][0]["grantor"]["id_number_masked"]
    assert (second["acct_pay"], second["acct_mulaid_pay"], second["psn_cash_pay"]) == (0, 0, 30_000)
    assert _balances(pg_db, fam.beneficiary, fam.grantor) == [0, 50_000]
    assert set(_ledger_sums(pg_db).values()) == {0}
    with pg_db() as s:
        events = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.topic == "settlement.completed")
                           .order_by(OutboxMessage.id)).all()
    assert [e.payload["data"]["settlement"]["id"] for e in events] == [first["id"], second["id"]]
    concerned = {p.id for p in routing.concerned(pg_db(), events[0].payload)}
    assert {"national", "jiangsu"} <= concerned and "xinjiang" not in concerned


def test_the_same_reference_answers_the_same_settlement_and_other_facts_are_refused(pg_db, family, new_person):
    """Given a settled reference
    When it is sent again with the same facts, and again with another amount
    Then the first answers the stored settlement (not created, nothing paid twice); the second is refused
    with reference_reused and writes nothing."""
    fam, _ = _authorized(pg_db, family, new_person, cap=None)
    made, _ = _settle(pg_db, fam, 1_000, "JS-R")

    again, created = _settle(pg_db, fam, 1_000, "JS-R")
    with pytest.raises(DomainError) as refused:
        _settle(pg_db, fam, 2_000, "JS-R")

    assert not created and again == made
    assert refused.value.code == "reference_reused"
    assert _balances(pg_db, fam.grantor) == [99_000]
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Settlement)) == 1


def test_reversal_puts_every_fen_back_once_and_frees_the_authorization(pg_db, family, new_person):
    """Given a settlement that used an authorization of 500.00 yuan entirely
    When it is reversed, twice
    Then balances are as before, the second reversal answers the same without moving money, every account's
    ledger nets to zero, and the authorization pays again."""
    fam, bid = _authorized(pg_db, family, new_person, cap=50_000, beneficiary_balance=5_000)
    made, _ = _settle(pg_db, fam, 60_000, "JS-V")
    jiangsu = platforms.get(pg_db, "jiangsu")

    undone = settlements.reverse(pg_db, platform=jiangsu, settlement_id=made["id"], now=T0 + timedelta(minutes=2))
    again = settlements.reverse(pg_db, platform=jiangsu, settlement_id=made["id"], now=T0 + timedelta(minutes=3))

    assert undone["status"] == "reversed" and again == undone
    assert _balances(pg_db, fam.beneficiary, fam.grantor) == [5_000, 100_000]
    with pg_db() as s:
        nets = s.execute(sa.select(LedgerEntry.account, sa.func.sum(LedgerEntry.amount_fen))
                         .group_by(LedgerEntry.account)).all()
        topics = s.scalars(sa.select(OutboxMessage.topic).where(OutboxMessage.topic.like("settlement.%"))).all()
    assert nets and all(net == 0 for _, net in nets)
    assert topics.count("settlement.reversed") == 1
    paid_again, _ = _settle(pg_db, fam, 60_000, "JS-V2", at=T0 + timedelta(minutes=4))
    assert paid_again["acct_mulaid_pay"] == 50_000


def test_a_reversal_keeps_its_reason_masked_and_a_second_one_keeps_the_first_reason(pg_db, family, new_person):
    """Given a settlement paid partly from a grantor's authorization
    When Jiangsu reverses it with a reason naming the beneficiary and her ID number, then again with another
    Then the answer carries the reason with the name and the number masked, the `settlement.reversed`
    event carries the same, and the second reversal answers the first's reason (nothing moved again)."""
    fam, _ = _authorized(pg_db, family, new_person, cap=50_000, beneficiary_balance=5_000)
    made, _ = _settle(pg_db, fam, 60_000, "JS-R")
    jiangsu = platforms.get(pg_db, "jiangsu")
    why = f"处方作废，{fam.beneficiary_name}（{fam.beneficiary}）申请退费"

    undone = settlements.reverse(pg_db, platform=jiangsu, settlement_id=made["id"], reason=why,
                                 now=T0 + timedelta(minutes=2))
    again = settlements.reverse(pg_db, platform=jiangsu, settlement_id=made["id"], reason="另一个原因",
                                now=T0 + timedelta(minutes=3))

    said = undone["reversal_reason"]
    assert said.startswith("处方作废，") and said.endswith("申请退费")
    assert fam.beneficiary not in said and fam.beneficiary_name not in said and "*" in said
    assert again == undone
    with pg_db() as s:
        event = s.scalar(sa.select(OutboxMessage.payload).where(OutboxMessage.topic == "settlement.reversed"))
    assert event["data"]["settlement"]["reversal_reason"] == said
    assert made["reversal_reason"] is None


def test_a_reversal_reason_naming_a_grantor_who_did_not_pay_is_masked_too(pg_db, family, new_person):
    """Given a settlement the beneficiary's own account paid alone (no split: the grantor paid nothing)
    When Jiangsu reverses it with a reason naming the grantor, Then the grantor's name is masked as well."""
    fam, _ = _authorized(pg_db, family, new_person, cap=50_000, beneficiary_balance=90_000)
    made, _ = _settle(pg_db, fam, 60_000, "JS-R2")
    assert made["splits"] == []
    undone = settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"],
                                 reason=f"家属{fam.grantor_name}代办退费", now=T0 + timedelta(minutes=2))
    said = undone["reversal_reason"]
    assert said.startswith("家属") and said.endswith("代办退费") and fam.grantor_name not in said and "*" in said


def test_the_cap_is_on_the_total_authorizing_again_changes_the_cap_not_what_was_used(pg_db, family, new_person):
    """Given an authorization of 100.00 yuan used up
    When the grantor authorizes 100.00 again (a retried PUT), then raises it to 150.00
    Then the first pays nothing more (all cash); after the raise exactly 50.00 more."""
    fam, bid = _authorized(pg_db, family, new_person, cap=10_000)
    _settle(pg_db, fam, 10_000, "JS-A1")
    commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=T0 + timedelta(minutes=2))
    same, _ = _settle(pg_db, fam, 5_000, "JS-A2", at=T0 + timedelta(minutes=3))
    commands.authorize(pg_db, bid, person(fam.grantor), 15_000, now=T0 + timedelta(minutes=4))

    raised, _ = _settle(pg_db, fam, 8_000, "JS-A3", at=T0 + timedelta(minutes=5))

    assert (same["acct_mulaid_pay"], same["psn_cash_pay"]) == (0, 5_000)
    assert (raised["acct_mulaid_pay"], raised["psn_cash_pay"]) == (5_000, 3_000)


def test_a_registry_balance_from_before_a_settlement_keeps_its_deduction(pg_db, family, new_person):
    """Given a grantor whose whole 500.00 yuan was paid out by a settlement at T0+1 min
    When the province's registry snapshot of 500.00 as of T0+30 s arrives afterwards (person.updated)
    Then the balance is the snapshot plus what settled after it: 0, not 500.00; the money is not paid twice."""
    from workflows import person_events
    g_number, g_name = new_person(pg_db, insurance_type="employee", balance_fen=50_000, now=T0 - timedelta(hours=1))
    fam, _ = _authorized(pg_db, family, new_person, cap=None, grantor=(g_number, g_name), at=T0 - timedelta(hours=1))
    _settle(pg_db, fam, 50_000, "JS-B1")
    snapshot = {"id_number": g_number, "name": g_name, "insurance_type": "employee", "insurance_status": "active",
                "region_code": "320100", "real_name_verified": True, "balance_fen": 50_000,
                "updated_at": (T0 + timedelta(seconds=30)).isoformat()}

    person_events.HANDLERS["person.updated"](pg_db, snapshot, platform=platforms.get(pg_db, "jiangsu"),
                                             as_of=T0 + timedelta(seconds=30))
    again, _ = _settle(pg_db, fam, 50_000, "JS-B2", at=T0 + timedelta(minutes=2))

    assert _balances(pg_db, g_number) == [0]
    assert again["acct_mulaid_pay"] == 0


def test_refusals_write_nothing(pg_db, family, new_person):
    """Given a beneficiary insured in Jiangsu and one whose insurance ended
    When Xinjiang settles for the first, or Jiangsu for the second, or a bad category is sent, or a reference
    carrying an ID number
    Then not_found (Xinjiang does not see Jiangsu's insured), beneficiary_not_insured, validation_failed twice
    (a reference travels to every platform concerned and is shown on the dashboard); nothing is written."""
    fam, _ = _authorized(pg_db, family, new_person, cap=None)
    ended = family(pg_db, now=T0)
    new_person(pg_db, id_number=ended.beneficiary, name=ended.beneficiary_name, insurance_status="ended", now=T0)

    codes = []
    for call in (lambda: _settle(pg_db, fam, 100, "X-1", platform="xinjiang"),
                 lambda: _settle(pg_db, ended, 100, "JS-E"),
                 lambda: _settle(pg_db, fam, 100, "JS-C", category="cosmetics"),
                 lambda: _settle(pg_db, fam, 100, f"JS-{fam.beneficiary}")):
        with pytest.raises(DomainError) as refused:
            call()
        codes.append(refused.value.code)

    assert codes == ["not_found", "beneficiary_not_insured", "validation_failed", "validation_failed"]
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Settlement)) == 0


def test_user_order_pays_the_ranked_grantor_first(pg_db, family, new_person):
    """Given a beneficiary with two authorized grantors who ranked the older binding first
    When a cost larger than either authorization is settled
    Then the older binding pays first, then the newer one."""
    fam_old, older = _authorized(pg_db, family, new_person, cap=3_000)
    second_grantor = new_person(pg_db, insurance_type="employee", balance_fen=100_000, now=T0)
    fam_new = fam_old._replace(grantor=second_grantor[0], grantor_name=second_grantor[1])  # a Family
    newer = accepted(pg_db, fam_new, now=T0 + timedelta(seconds=10))
    commands.authorize(pg_db, newer, person(fam_new.grantor), 3_000, now=T0 + timedelta(seconds=20))
    queries.set_deduction_order(pg_db, _person(pg_db, fam_old.beneficiary).id, [older, newer])

    made, _ = _settle(pg_db, fam_old, 4_000, "JS-O")

    assert [(x["binding_id"], x["amount_fen"]) for x in made["splits"]] == [(older, 3_000), (newer, 1_000)]


def test_a_partial_order_ranks_only_the_listed_and_a_later_binding_pays_among_the_rest_by_age(
        pg_db, family, new_person):
    """Given a beneficiary with two authorized grantors A (older) and B, who ranked A alone
    When a third grantor C, newest, authorizes later and a cost larger than A and C together is settled
    Then A pays first (ranked), then C, then B (the unranked, newest first): B was never given a rank;
    and ranking nothing again leaves every binding unranked, newest first."""
    fam, a = _authorized(pg_db, family, new_person, cap=1_000)
    bound = []
    for k in (1, 2):
        other = new_person(pg_db, insurance_type="employee", balance_fen=100_000, now=T0)
        fam_k = fam._replace(grantor=other[0], grantor_name=other[1])
        bid = accepted(pg_db, fam_k, now=T0 + timedelta(seconds=10 * k))
        commands.authorize(pg_db, bid, person(fam_k.grantor), 1_000, now=T0 + timedelta(seconds=10 * k + 1))
        bound.append(bid)
        if k == 1:
            answer = queries.set_deduction_order(pg_db, _person(pg_db, fam.beneficiary).id, [a])
            assert answer["binding_ids"] == [a, bid]  # the order they pay in now
    b, c = bound
    with pg_db() as s:
        assert {x.id: x.deduction_rank for x in s.scalars(sa.select(Binding).where(Binding.id.in_([a, b, c])))} \
            == {a: 1, b: None, c: None}

    made, _ = _settle(pg_db, fam, 2_500, "JS-P", at=T0 + timedelta(minutes=2))

    assert [(x["binding_id"], x["amount_fen"]) for x in made["splits"]] == [(a, 1_000), (c, 1_000), (b, 500)]
    assert queries.set_deduction_order(pg_db, _person(pg_db, fam.beneficiary).id, [])["binding_ids"] == [c, b, a]


def _two_grantors(db, family, new_person, *, b_accepted_at=T0):
    """A beneficiary with an empty account and two accepted bindings, A (at T0) and B: (fam, fam_b, a, b)."""
    fam = family(db, grantor=new_person(db, insurance_type="employee", balance_fen=100_000, now=T0), now=T0)
    new_person(db, id_number=fam.beneficiary, name=fam.beneficiary_name, balance_fen=0, now=T0)
    g_b = new_person(db, insurance_type="employee", balance_fen=100_000, now=T0)
    fam_b = fam._replace(grantor=g_b[0], grantor_name=g_b[1])
    return fam, fam_b, accepted(db, fam, now=T0), accepted(db, fam_b, now=b_accepted_at)


def test_the_newest_is_the_binding_whose_account_was_bound_last_not_the_one_invited_last(pg_db, family, new_person):
    """Given a beneficiary (Jiangsu: user_order, nothing ranked) with binding A, invited on day 0 but whose
    grantor authorized only on day 5, and binding B, invited and authorized on day 1
    When a cost larger than either authorization is settled on day 6
    Then A pays first: the account is bound at the authorization ("绑定账户,授权金额"), and A's was bound last
    (before, the invitation's time decided and B paid first); the deduction order's answer agrees; a new
    amount for B on day 7 does not make it newer."""
    day = timedelta(days=1)
    fam, fam_b, a, b = _two_grantors(pg_db, family, new_person, b_accepted_at=T0 + day)
    commands.authorize(pg_db, b, person(fam_b.grantor), 1_000, now=T0 + day + timedelta(seconds=10))
    commands.authorize(pg_db, a, person(fam.grantor), 1_000, now=T0 + 5 * day)

    made, _ = _settle(pg_db, fam, 1_500, "JS-BOUND", at=T0 + 6 * day)

    assert [(x["binding_id"], x["amount_fen"]) for x in made["splits"]] == [(a, 1_000), (b, 500)]
    commands.authorize(pg_db, b, person(fam_b.grantor), 2_000, now=T0 + 7 * day)
    with pg_db() as s:
        assert s.get(Binding, b).authorized_at == T0 + day + timedelta(seconds=10)
    assert queries.set_deduction_order(pg_db, _person(pg_db, fam.beneficiary).id, [])["binding_ids"] == [a, b]
    # platforms see the clock the order goes by (GET /bindings/{id}, and every event's data.binding)
    assert [queries.binding(pg_db, x)["authorized_at"] for x in (a, b)] == [
        (T0 + 5 * day).isoformat(), (T0 + day + timedelta(seconds=10)).isoformat()]


def test_a_region_that_fixes_the_order_refuses_a_persons_order(pg_db, new_person):
    """Given a Xinjiang person (乌鲁木齐: user_order, as the Xinjiang guide lets members set it, "设置扣款顺序")
    When the region publishes latest_bound_first and the person then puts an order
    Then before it the order is theirs (200), after it 422 deduction_order_fixed: the region decides."""
    number, _ = new_person(pg_db, region_code="650100", now=T0)
    pid = _person(pg_db, number).id
    assert queries.set_deduction_order(pg_db, pid, []) == {"person_id": pid, "binding_ids": []}
    policy_admin.publish(pg_db, ["650100"], policy_fields.parse_changes(["deduction_order_policy=latest_bound_first"]),
                         effective_from=T0, who="tester", reason="自治区医保局通知", now=T0)
    policy.clear_cache()
    with pytest.raises(DomainError) as err:
        queries.set_deduction_order(pg_db, pid, [])
    assert (err.value.code, err.value.status) == ("deduction_order_fixed", 422)


def test_a_grantor_whose_real_name_verification_is_withdrawn_keeps_the_binding_and_pays_once_restored(
        pg_db, family, new_person):
    """Given an authorized binding (cap 5,000 fen, the beneficiary's own account empty)
    When the registry says the grantor is no longer real-name verified, a cost is settled, the registry
    restores the verification, and another cost is settled
    Then the binding stays authorized throughout (DESIGN §3 does not list this fact among those that end a
    binding), the first cost is paid in cash, the second from the grantor's account (README, Settlements)."""
    fam, bid = _authorized(pg_db, family, new_person, cap=5_000)
    g = dict(id_number=fam.grantor, name=fam.grantor_name, insurance_type="employee")
    new_person(pg_db, **g, real_name_verified=False, now=T0 + timedelta(minutes=1))
    assert queries.binding(pg_db, bid)["state"] == "authorized"
    cash, _ = _settle(pg_db, fam, 1_000, "JS-RN1", at=T0 + timedelta(minutes=2))
    new_person(pg_db, **g, real_name_verified=True, now=T0 + timedelta(minutes=3))
    paid, _ = _settle(pg_db, fam, 1_000, "JS-RN2", at=T0 + timedelta(minutes=4))

    assert (cash["acct_mulaid_pay"], cash["psn_cash_pay"]) == (0, 1_000)
    assert (paid["acct_mulaid_pay"], paid["psn_cash_pay"]) == (1_000, 0)
    assert queries.binding(pg_db, bid)["state"] == "authorized"


def test_two_settlements_never_take_more_than_the_grantor_has(pg_db, family, new_person):
    """Given one grantor with 1,000 fen who authorized the whole balance to two beneficiaries
    When both beneficiaries settle 800 fen at the same moment
    Then together they take exactly 1,000 fen from the grantor (one 800 and one 200, the rest cash): the
    second waited for the first's lock and saw its balance; the grantor's balance is 0, never negative."""
    g = new_person(pg_db, insurance_type="employee", balance_fen=1_000, now=T0)
    fam_a, _ = _authorized(pg_db, family, new_person, cap=None, grantor=g)
    fam_b, _ = _authorized(pg_db, family, new_person, cap=None, grantor=g)

    outcomes = race(lambda: _settle(pg_db, fam_a, 800, "JS-RA"), lambda: _settle(pg_db, fam_b, 800, "JS-RB"))

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert sorted(o.value[0]["acct_mulaid_pay"] for o in outcomes) == [200, 800]
    assert _balances(pg_db, g[0]) == [0]
    assert set(_ledger_sums(pg_db).values()) == {0}


def test_a_settlement_racing_an_unbind_pays_only_through_a_live_binding(pg_db, family, new_person):
    """Given an authorized binding
    When a settlement and the grantor's unbind run at the same moment
    Then both succeed, and either the settlement came first (the grantor paid) or the unbind did (all from
    the beneficiary's own account and cash): never a split through an unbound binding after it ended."""
    fam, bid = _authorized(pg_db, family, new_person, cap=None, beneficiary_balance=0)
    outcomes = race(lambda: _settle(pg_db, fam, 5_000, "JS-U"),
                    lambda: commands.unbind(pg_db, bid, person(fam.grantor), reason="家庭成员变动",
                                            now=T0 + timedelta(minutes=1)))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    made = outcomes[0].value[0]
    paid_by_grantor = 100_000 - _balances(pg_db, fam.grantor)[0]
    assert paid_by_grantor == made["acct_mulaid_pay"] and made["acct_mulaid_pay"] in (0, 5_000)
    with pg_db() as s:  # a split records the version it paid through: one in which the binding was authorized
        paid_at = s.execute(sa.select(Transition.to_state).join(
            SettlementSplit, sa.and_(SettlementSplit.binding_id == Transition.binding_id,
                                     SettlementSplit.binding_version == Transition.seq))).scalars().all()
    assert paid_at == (["authorized"] if made["acct_mulaid_pay"] else []), paid_at


def test_one_reference_sent_twice_at_once_settles_once(pg_db, family, new_person):
    """Given an authorized binding
    When the same settlement (same reference, same facts) arrives twice at the same moment
    Then one settlement is written and both answers are it."""
    fam, _ = _authorized(pg_db, family, new_person, cap=None)
    outcomes = race(lambda: _settle(pg_db, fam, 700, "JS-T"), lambda: _settle(pg_db, fam, 700, "JS-T"))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert outcomes[0].value[0] == outcomes[1].value[0]
    assert sorted(o.value[1] for o in outcomes) == [False, True]
    assert _balances(pg_db, fam.grantor) == [99_300]


def test_settlement_on_sqlite(sqlite_db, family, new_person):
    """Given the embedded default's SQLite
    When a settlement is made and reversed
    Then it splits and restores balances as on PostgreSQL."""
    fam, _ = _authorized(sqlite_db, family, new_person, cap=2_000, beneficiary_balance=500)
    made, _ = _settle(sqlite_db, fam, 3_000, "JS-S")
    assert (made["acct_pay"], made["acct_mulaid_pay"], made["psn_cash_pay"]) == (500, 2_000, 500)
    settlements.reverse(sqlite_db, platform=platforms.get(sqlite_db, "jiangsu"), settlement_id=made["id"],
                        now=T0 + timedelta(minutes=2))
    assert _balances(sqlite_db, fam.beneficiary, fam.grantor) == [500, 100_000]


def test_settlement_events_reach_the_platforms_it_concerns(pg_db, family, new_person, receivers):
    """Given a Jiangsu family with an authorization and the three fake platforms
    When a settlement is made and reversed, and the worker's fan-out and delivery run
    Then the national platform and Jiangsu each receive settlement.completed and settlement.reversed (not
    ordered with each other), signed (the fakes verify), with the settlement masked; Xinjiang nothing."""
    from .support import drain
    fam, _ = _authorized(pg_db, family, new_person, cap=None)
    made, _ = _settle(pg_db, fam, 2_000, "JS-D")
    settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"],
                        now=T0 + timedelta(minutes=2))
    now = T0 + timedelta(minutes=3)
    with pg_db() as s:
        ids = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.topic.like("settlement.%"))
                        .order_by(OutboxMessage.id)).all()

    ready = [d for i in ids for d in routing.fan_out(pg_db, i, now=now).ready]
    drain(pg_db, now, ready)

    for pid in ("national", "jiangsu"):
        got = sorted((e.type, e.payload["data"]["settlement"]["id"]) for e in receivers[pid].events)
        assert got == [("settlement.completed", made["id"]), ("settlement.reversed", made["id"])], pid
        assert fam.beneficiary not in str(receivers[pid].events[0].payload)
    assert receivers["xinjiang"].events == []


def test_the_binding_page_shows_what_was_paid_through_it(app, sqlite_db, family, new_person):  # noqa: F811
    """Given an authorization of 100.00 yuan that paid 60.00 in one settlement and 10.00 in a reversed one
    When a viewer opens the binding on the dashboard
    Then the page lists both payments (the reversed one marked 已冲正) and says 60.00 of 100.00 is used."""
    fam, bid = _authorized(sqlite_db, family, new_person, cap=10_000)
    kept, _ = _settle(sqlite_db, fam, 6_000, "JS-P1")
    undone, _ = _settle(sqlite_db, fam, 1_000, "JS-P2", at=T0 + timedelta(minutes=2))
    settlements.reverse(sqlite_db, platform=platforms.get(sqlite_db, "jiangsu"), settlement_id=undone["id"],
                        now=T0 + timedelta(minutes=3))
    client, _ = signed_in(app, "viewer")

    page = client.get(f"/dashboard/bindings/{bid}").get_data(as_text=True)

    box = page[page.index('id="binding-payments"'):page.index("</table>", page.index('id="binding-payments"'))]
    assert kept["id"] in box and undone["id"] in box and "已冲正" in box
    used = page[page.index('id="authorization-used"'):page.index("</p>", page.index('id="authorization-used"'))]
    assert "¥60.00" in used and "¥100.00" in used


def test_a_deduction_order_holds_the_bindings_it_ranks_until_it_commits(pg_db, family, new_person):
    """Given a beneficiary's authorized binding
    When the beneficiary's PUT of a deduction order is about to write the ranks
    Then the binding's row is already locked (after the person, as every writer locks), so a transition
    cannot commit in between and make the rank's version-checked write match nothing (that was a 500)."""
    import threading

    from sqlalchemy import event

    fam, bid = _authorized(pg_db, family, new_person, cap=3_000)
    pid = _person(pg_db, fam.beneficiary).id
    engine, reached, release, me, out = pg_db.kw["bind"], threading.Event(), threading.Event(), {}, {}

    def hold(conn, cursor, statement, *_):
        if threading.get_ident() == me.get("t") and statement.lstrip().upper().startswith("UPDATE BINDINGS SET"):
            reached.set()
            release.wait(30)

    def put():
        me["t"] = threading.get_ident()
        out["put"] = queries.set_deduction_order(pg_db, pid, [bid])

    event.listen(engine, "before_cursor_execute", hold)
    try:
        worker = threading.Thread(target=put)
        worker.start()
        assert reached.wait(30)
        with engine.connect() as c, pytest.raises(sa.exc.OperationalError) as locked:
            c.execute(sa.text("SELECT id FROM bindings WHERE id = :b FOR UPDATE NOWAIT"), {"b": bid})
        assert locked.value.orig.sqlstate == "55P03"  # lock_not_available
    finally:
        release.set()
        worker.join(30)
        event.remove(engine, "before_cursor_execute", hold)
    assert out["put"]["binding_ids"] == [bid]


def test_an_orm_write_that_lost_its_version_check_is_a_conflict_not_a_500(sqlite_db):
    """A command whose ORM flush finds the row's version changed answers 409 `conflict`."""
    from sqlalchemy.orm.exc import StaleDataError

    from workflows.unit import command

    with pytest.raises(DomainError) as refused:
        with command(sqlite_db):
            raise StaleDataError("UPDATE statement on table 'bindings' expected to update 1 row(s); 0 were matched.")
    assert refused.value.code == "conflict"


def _snapshot(db, number: str, balance_fen: int, as_of, platform="jiangsu"):
    """The province's registry reports the person's balance as of `as_of` (POST /persons with updated_at)."""
    from workflows import persons
    with db() as s:
        p = s.scalar(sa.select(Person).where(Person.id_number_hash == _hash(number)))
        fields = dict(id_number=number, name=p.name, insurance_type=p.insurance_type,
                      insurance_status=p.insurance_status, region_code=p.region_code,
                      real_name_verified=p.real_name_verified, balance_fen=balance_fen)
    persons.upsert(db, fields, platform=platforms.get(db, platform), now=as_of + timedelta(seconds=1), as_of=as_of)


def test_a_registry_balance_taken_before_the_province_heard_of_a_settlement_keeps_its_deduction(
        pg_db, family, new_person, receivers):
    """Given a grantor with 1,000.00 yuan whose authorization paid 300.00 yuan of a settlement
    When the province reports 1,000.00 yuan as of a moment after the settlement but before its
    settlement.completed reached it, Then the grantor keeps 700.00 yuan (the snapshot does not hold the
    deduction); When the event is then delivered and the province reports 700.00 yuan as of after that,
    Then 700.00 it is (the snapshot holds it: nothing is taken twice)."""
    from .support import drain, fan_out_all

    fam, bid = _authorized(pg_db, family, new_person, cap=30_000)
    made, _ = _settle(pg_db, fam, 30_000, "JS-SNAP")
    paid_at = T0 + timedelta(minutes=1)
    assert _balances(pg_db, fam.grantor) == [70_000]

    _snapshot(pg_db, fam.grantor, 100_000, paid_at + timedelta(seconds=1))
    assert _balances(pg_db, fam.grantor) == [70_000]

    told = paid_at + timedelta(seconds=5)
    drain(pg_db, told, fan_out_all(pg_db, told) + _settlement_fan_out(pg_db, told))
    with pg_db() as s:
        assert s.scalar(sa.select(Delivery.status).where(Delivery.platform_id == "jiangsu",
                                                         Delivery.topic == "settlement.completed")) == "delivered"
    _snapshot(pg_db, fam.grantor, 70_000, told + timedelta(seconds=1))
    assert _balances(pg_db, fam.grantor) == [70_000]


def _settlement_fan_out(db, now) -> list[int]:
    with db() as s:
        ids = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.topic.like("settlement.%"))
                        .order_by(OutboxMessage.id)).all()
    return [d for i in ids for d in routing.fan_out(db, i, now=now).ready]


def test_a_registry_balance_that_missed_a_settlement_and_its_reversal_gives_nothing_twice(
        pg_db, family, new_person, receivers):
    """Given a settlement of 300.00 yuan from the grantor's authorization, reversed two minutes later, neither
    event yet at the province, When the province reports 1,000.00 yuan as of between the two, Then the
    grantor has 1,000.00 yuan: the snapshot held neither posting (it was 1,300.00 by the time rule)."""
    fam, bid = _authorized(pg_db, family, new_person, cap=30_000)
    made, _ = _settle(pg_db, fam, 30_000, "JS-REV")
    settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"],
                        now=T0 + timedelta(minutes=3))
    _snapshot(pg_db, fam.grantor, 100_000, T0 + timedelta(minutes=2))
    assert _balances(pg_db, fam.grantor) == [100_000]


def test_a_reversal_the_province_may_have_applied_is_not_credited_twice(pg_db, family, new_person, receivers):
    """Given a settlement of 300.00 yuan told to the province, then reversed, the reversal's delivery tried
    once and answered 503 (the province may have applied it before failing to answer)
    When the province reports 1,000.00 yuan as of 10 s before that try's answer was recorded (a try lasts
    up to TRY_S: it may have begun, and been applied, before the snapshot)
    Then the grantor has 1,000.00 yuan: a credit counts as held from its first try, so it is not added on
    top (1,300.00 yuan, spendable twice); a debit still counts only once acknowledged."""
    from .support import drain

    fam, bid = _authorized(pg_db, family, new_person, cap=30_000)
    made, _ = _settle(pg_db, fam, 30_000, "JS-TRY")
    told = T0 + timedelta(minutes=2)
    drain(pg_db, told, _settlement_fan_out(pg_db, told))
    settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"],
                        now=T0 + timedelta(minutes=3))
    receivers["jiangsu"].set_mode("fail")
    tried = T0 + timedelta(minutes=4)
    drain(pg_db, tried, _settlement_fan_out(pg_db, tried))
    with pg_db() as s:
        assert s.scalar(sa.select(Delivery.status).where(Delivery.platform_id == "jiangsu",
                                                         Delivery.topic == "settlement.reversed")) != "delivered"
    _snapshot(pg_db, fam.grantor, 100_000, tried - timedelta(seconds=10))
    assert _balances(pg_db, fam.grantor) == [100_000]


def test_a_reversal_after_the_beneficiary_moved_still_reaches_the_platform_that_settled(
        pg_db, family, new_person, receivers):
    """Given a settlement Jiangsu made for a Jiangsu beneficiary (her own account pays: no grantor), who then
    moves to Xinjiang, When the settlement is reversed, Then Jiangsu, whose institution was paid, gets the
    settlement.reversed too (the event names it, data.platform_id), beside the national platform and Xinjiang."""
    from .support import drain

    number, name = new_person(pg_db, balance_fen=50_000, now=T0)
    made = settlements.settle(pg_db, platform=platforms.get(pg_db, "jiangsu"), reference="JS-MOVE",
                              beneficiary_id_number=number, amount_fen=10_000, category="outpatient",
                              institution_code="H320100001", now=T0 + timedelta(minutes=1))[0]
    new_person(pg_db, id_number=number, name=name, region_code="650100", balance_fen=40_000,
               now=T0 + timedelta(minutes=2))
    settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"],
                        now=T0 + timedelta(minutes=3))
    later = T0 + timedelta(minutes=4)
    drain(pg_db, later, _settlement_fan_out(pg_db, later))
    with pg_db() as s:
        told = set(s.scalars(sa.select(Delivery.platform_id).where(Delivery.topic == "settlement.reversed")))
    assert told == {"national", "jiangsu", "xinjiang"}


def test_a_binding_authorized_by_code_from_before_its_bound_time_pays_by_its_last_change(pg_db, family, new_person):
    """Given two authorized bindings of one beneficiary, B authorized on day 1 and A on day 2, and B's bound
    time missing (authorized by a process of the code before migration 0018 during a rolling deploy)
    When a settlement larger than either authorization is made on day 3
    Then A pays first: B is dated by its last change (day 1), not taken for the newest of all."""
    day = timedelta(days=1)
    fam, fam_b, a, b = _two_grantors(pg_db, family, new_person)
    commands.authorize(pg_db, b, person(fam_b.grantor), 1_000, now=T0 + day)
    commands.authorize(pg_db, a, person(fam.grantor), 1_000, now=T0 + 2 * day)
    with pg_db.begin() as s:
        s.execute(sa.update(Binding).where(Binding.id == b).values(authorized_at=None))

    made, _ = _settle(pg_db, fam, 1_500, "JS-OLDCODE", at=T0 + 3 * day)

    assert [(x["binding_id"], x["amount_fen"]) for x in made["splits"]] == [(a, 1_000), (b, 500)]


def test_a_new_amount_keeps_the_bound_time_and_never_writes_a_missing_one_back(pg_db, family, new_person, monkeypatch):
    """Given an authorized binding whose bound time is missing (authorized by the older code) and a new amount
    When migration 0018's fill writes the time from the history between the command's read and its write
    Then the command keeps the filled time (it never writes back the NULL it read), and a new amount on a
    binding that has its time never moves it."""
    from workflows import rows
    fam, _ = _authorized(pg_db, family, new_person, cap=1_000)

    with pg_db() as s:
        bid = s.scalar(sa.select(Binding.id).where(Binding.state == "authorized"))
        first = s.get(Binding, bid).authorized_at
    with pg_db.begin() as s:
        s.execute(sa.update(Binding).where(Binding.id == bid).values(authorized_at=None))
    real = rows.get

    def read_then_filled(conn, binding_id):
        row = real(conn, binding_id)
        with pg_db.begin() as s:  # the fill commits meanwhile; it changes no version
            s.execute(sa.update(Binding).where(Binding.id == binding_id).values(authorized_at=first))
        return row
    monkeypatch.setattr(rows, "get", read_then_filled)
    commands.authorize(pg_db, bid, person(fam.grantor), 2_000, now=T0 + timedelta(hours=1))
    monkeypatch.setattr(rows, "get", real)
    with pg_db() as s:
        assert s.get(Binding, bid).authorized_at == first
    commands.authorize(pg_db, bid, person(fam.grantor), 3_000, now=T0 + timedelta(hours=2))
    with pg_db() as s:
        assert s.get(Binding, bid).authorized_at == first


def test_every_platform_a_settlement_concerns_can_read_it_back_and_only_its_maker_reverse_it(pg_db, family, new_person):
    """Given a Jiangsu grantor's authorization for a beneficiary insured in 乌鲁木齐 (cross-province allowed there)
    When Xinjiang settles a cost the grantor's account pays part of
    Then Jiangsu (the grantor's province, sent settlement.completed) and the national platform can read it
    (one that lost the event can read it back), a platform it does not concern cannot (not_found), and only
    Xinjiang may reverse it."""
    policy_admin.publish(pg_db, ["650100"], policy_fields.parse_changes(["cross_province=true"]),
                         effective_from=T0 - timedelta(minutes=2), who="tester", reason="通知",
                         now=T0 - timedelta(minutes=2))
    policy.clear_cache()
    g = new_person(pg_db, insurance_type="employee", balance_fen=100_000, now=T0)
    fam = family(pg_db, grantor=g, beneficiary_region="650100", now=T0)
    new_person(pg_db, id_number=fam.beneficiary, name=fam.beneficiary_name, region_code="650100", balance_fen=0, now=T0)
    bid = accepted(pg_db, fam, now=T0)
    commands.authorize(pg_db, bid, person(fam.grantor), 1_000, now=T0 + timedelta(seconds=5))
    made, _ = _settle(pg_db, fam, 1_500, "XJ-CROSS", platform="xinjiang")

    for reader in ("jiangsu", "national", "xinjiang"):
        assert settlements.get(pg_db, platform=platforms.get(pg_db, reader), settlement_id=made["id"]) == made
    with pytest.raises(DomainError) as unseen:
        settlements.get(pg_db, platform=platforms.get(pg_db, "facecheck"), settlement_id=made["id"])
    assert unseen.value.code == "not_found"
    with pytest.raises(DomainError) as not_its_own:
        settlements.reverse(pg_db, platform=platforms.get(pg_db, "jiangsu"), settlement_id=made["id"])
    assert not_its_own.value.code == "not_found"
