"""Stateful property test of the stored history on PostgreSQL (DESIGN §2): random commands through the real
command functions (each one transaction) on one binding; after every step the stored history replays
through the shared machine to the stored state, seq is 1..version with one outbox event per version, and a
refused command changed nothing. tests/unit/test_history_stateful.py checks the machine alone; this one
checks what the commands write, registry moves (a binding following its persons, `relocate`) included."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from workflows import commands, in_person, machine, persons, platforms, policy, policy_admin, verification
from workflows.actors import Actor
from workflows.errors import DomainError

from .support import T0, assert_history_consistent, binding, invite, person, table_snapshot
from .test_commands_pg import replay
from .test_person_events import registry

OPERATOR = Actor("operator", "op-hypothesis")
SYSTEM = Actor("system", "hypothesis")


def _machine(db, family, checked_in_person: list):
    class StoredHistory(RuleBasedStateMachine):
        """One family, one binding (face path, or guardian path for a child), driven by any command."""

        @initialize(guardian=st.booleans())
        def invite(self, guardian):
            self.now = T0
            born = date(2016, 5, 5) if guardian else date(1985, 2, 2)
            self.fam = family(db, beneficiary_born=born, now=T0)
            self.bid = invite(db, self.fam, relationship="child" if guardian else "spouse", now=T0)["id"]
            self.attempt = None
            self.regions = {"grantor": "320100", "beneficiary": "320100"}

        def _do(self, command):
            """Run one command; a refusal must leave every table as it was."""
            self.now += timedelta(seconds=1)
            before = table_snapshot(db)
            try:
                return command()
            except DomainError:
                assert table_snapshot(db) == before, "a refused command wrote something"
                return None

        @rule()
        def start_verification(self):
            started = self._do(lambda: verification.start_verification(
                db, self.bid, person(self.fam.beneficiary), now=self.now))
            if started is not None:
                self.attempt = started["verification_id"]

        @rule(result=st.sampled_from(["passed", "failed"]))
        def verifier_calls_back(self, result):
            if self.attempt is not None:
                self._do(lambda: verification.record_verification_result(
                    db, verification_id=self.attempt, binding_id=self.bid, result=result, verifier_id="facecheck",
                    now=self.now))

        # only while invited (refused elsewhere like any illegal pair: the machine's table tests those), so that
        # the derandomized runs reach it whatever their seed; both Jiangsu regions allow it (the test publishes that)
        @precondition(lambda self: binding(db, self.bid).state == "invited")
        @rule()
        def hall_checks_in_person(self):
            done = self._do(lambda: in_person.verify_in_person(
                db, self.bid, staff_id="0042", reason="身份证原件核验", platform=platforms.get(db, "jiangsu"),
                now=self.now))
            if done is not None:
                checked_in_person.append(self.bid)

        @rule()
        def accept(self):
            self._do(lambda: commands.accept(db, self.bid, person(self.fam.beneficiary), now=self.now))

        @rule(amount=st.one_of(st.none(), st.integers(min_value=1, max_value=10_000_000)))
        def authorize(self, amount):
            self._do(lambda: commands.authorize(db, self.bid, person(self.fam.grantor), amount, now=self.now))

        @rule(who=st.sampled_from(["grantor", "beneficiary"]))
        def unbind(self, who):
            self._do(lambda: commands.unbind(db, self.bid, person(getattr(self.fam, who)), now=self.now))

        @rule()
        def decline(self):
            self._do(lambda: commands.decline(db, self.bid, person(self.fam.beneficiary), now=self.now))

        @rule()
        def cancel(self):
            self._do(lambda: commands.cancel(db, self.bid, person(self.fam.grantor), now=self.now))

        @rule()
        def operator_expires(self):
            self._do(lambda: commands.expire(db, self.bid, OPERATOR, reason="hypothesis", now=self.now))

        @rule()
        def system_rejects(self):
            self._do(lambda: commands.reject(db, self.bid, SYSTEM, reason="hypothesis", now=self.now))

        @rule(side=st.sampled_from(["grantor", "beneficiary"]), region=st.sampled_from(["320100", "320500"]))
        def registry_moves_a_person(self, side, region):
            """Within Jiangsu (allowed, never refused): a standing binding follows (`relocate`), an ended one
            does not."""
            self.now += timedelta(seconds=1)
            persons.upsert(db, registry(self.fam, side, region_code=region), platform=None, now=self.now)
            self.regions[side] = region

        @invariant()
        def a_binding_holds_its_persons_regions_while_it_stands_and_its_last_ones_once_ended(self):
            row = binding(db, self.bid)
            held = (row.grantor_region, row.beneficiary_region)
            if row.state in machine.ACTIVE:
                assert held == (self.regions["grantor"], self.regions["beneficiary"])
            else:
                self.ended_with = getattr(self, "ended_with", None) or held
                assert held == self.ended_with

        @invariant()
        def history_replays_to_the_stored_state(self):
            rows = assert_history_consistent(db, self.bid)  # seq 1..version, chained, one event per version
            assert replay(rows) == binding(db, self.bid).state

    return StoredHistory


@pytest.mark.pg
def test_stored_history_always_replays_to_the_stored_state(pg_db, family):
    # the service halls of both pooling regions the families live in check identity in person
    policy_admin.publish(pg_db, ["320100", "320500"], {"in_person_verification": True}, who="test",
                         reason="halls open", effective_from=T0 - timedelta(hours=1), now=T0 - timedelta(days=1))
    policy.clear_cache()
    checked: list = []
    run_state_machine_as_test(
        _machine(pg_db, family, checked),
        settings=settings(max_examples=60, stateful_step_count=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
    assert checked, "no run reached a successful check in person: the rule is not exercised"
