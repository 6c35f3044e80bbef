"""How the dashboard sorts inbound webhooks (no I/O): which outcomes are problems (the index predicate of
migration 0012 and the model's, held to the error codes), each webhook's kind, and the binding its data names."""
from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from models import messaging
from workflows import errors, inbound, webhooks

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
MIGRATION = Path(__file__).resolve().parents[2] / "models" / "migrations" / "versions" / \
    "0012_received_webhooks_binding_and_problems.py"


def test_no_error_code_is_an_ordinary_outcome():
    """Given the outcomes the problem index leaves out (those of a webhook that did its work),
    When they are compared with the error codes and the binding states,
    Then no error code but `stale` is among them (a refusal is always a problem, a new code included), and
    every state a binding may be left in is (an unbind requested, a relationship ended)."""
    from workflows import machine
    assert set(messaging.SETTLED) & set(errors.CODES) == {"stale"}
    assert set(machine.STATES) - {machine.NEW} <= set(messaging.SETTLED)
    assert set(inbound.REFUSALS) == set(errors.CODES) - {"stale", "conflict"}


def test_the_migration_builds_the_models_problem_predicate():
    """Given migration 0012 and the model, When their problem predicates are read, Then they are the same text
    (the schema-drift test does not compare partial-index predicates)."""
    spec = importlib.util.spec_from_file_location("m0012", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PROBLEM == messaging.PROBLEM_SQL
    assert dict((n, w) for n, _c, w in module.INDEXES) == {
        "ix_received_webhooks_binding": messaging.NAMED_SQL, "ix_received_webhooks_problems": messaging.PROBLEM_SQL}


@pytest.mark.parametrize("processed, outcome, attempts, kind", [
    (None, None, 0, "pending"), (None, None, 3, "retrying"),
    (NOW, "failed:DataError", 25, "failed"), (NOW, "conflict", 25, "failed"),
    (NOW, "not_found", 1, "refused"), (NOW, "region_not_served", 1, "refused"),
    (NOW, "validation_failed", 1, "refused"),
    (NOW, "applied", 1, "processed"), (NOW, "stale", 1, "processed"), (NOW, "passed", 1, "processed"),
    (NOW, "failed", 1, "processed"),  # a face verification that failed: the webhook did its work
    (NOW, "ignored_passed", 2, "processed"), (NOW, "unbound", 1, "processed"), (NOW, "no_binding", 1, "processed"),
])
def test_a_webhooks_kind(processed, outcome, attempts, kind):
    """Given a stored webhook's processed time, outcome and runs, When it is sorted, Then its kind is as listed;
    only a gave-up or pending one may be retried."""
    assert inbound.kind_of(processed, outcome, attempts) == kind
    assert (kind in inbound.RETRYABLE) == (kind in ("pending", "retrying", "failed"))


def _row(data) -> SimpleNamespace:
    return SimpleNamespace(body=json.dumps({"type": "x", "data": data}))


@pytest.mark.parametrize("data, named", [
    ({"binding_id": "bnd_01jabc", "verification_id": "ver_1", "result": "passed"}, "bnd_01jabc"),
    ({"binding_id": "bnd_\x00x"}, None),  # PostgreSQL's text cannot hold it: the outcome's statement would fail
    ({"binding_id": "b" * 33}, None), ({"binding_id": 12}, None), ({"binding_id": ""}, None),
    ({"id_number": "320102198001011238"}, None), (["not", "an", "object"], None), (None, None),
])
def test_the_binding_a_webhook_names(data, named):
    """Given a stored webhook's data, When the binding it names is read, Then it is `data.binding_id` when that
    could be a binding id, else none."""
    assert webhooks.named_binding(_row(data)) == named
