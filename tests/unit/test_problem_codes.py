"""`web/api/codes.py`: the problem codes each API operation declares, as its OpenAPI operation lists them,
and the check that an operation answers only those."""
from __future__ import annotations

import pytest

from web.api import codes
from web.api.openapi import document


def test_an_operation_lists_its_own_codes_and_those_of_its_kind_not_every_code_of_a_status():
    """Given the OpenAPI document, Then the invitation's 422 lists its rules (self_binding, member_limit) and
    the Idempotency-Key's code, not a settlement's reference_reused; a read of one binding answers only
    not_found besides the key's and the kind's codes; each list is machine-readable (x-problem-codes)."""
    paths = document()["paths"]
    invite = paths["/api/v1/bindings"]["post"]["responses"]
    assert {"self_binding", "member_limit", "idempotency_key_reused"} <= set(invite["422"]["x-problem-codes"])
    assert "reference_reused" not in invite["422"]["x-problem-codes"]
    assert invite["429"]["x-problem-codes"] == ["too_frequent"] and "Retry-After" in invite["429"]["headers"]
    assert invite["413"]["x-problem-codes"] == ["too_large"]  # a body over the limit
    read = paths["/api/v1/bindings/{binding_id}"]["get"]["responses"]
    assert {k: v["x-problem-codes"] for k, v in read.items() if "x-problem-codes" in v} == {
        "401": ["unauthorized"], "403": ["platform_not_allowed"], "404": ["not_found"], "409": ["conflict"],
        "422": ["validation_failed"], "503": ["unavailable"]}  # a lock timeout; a value the database cannot
    assert "Retry-After" in read["503"]["headers"]  # store; the database restarting


def test_a_declared_code_must_exist():
    """Given a declaration naming a code workflows/errors.py does not have, Then it is refused at once."""
    with pytest.raises(ValueError, match="no_such_code"):
        codes.declare("api.test_unknown", method="GET", has_body=False, restricted=False, codes=("no_such_code",))


def test_an_undeclared_code_is_answered_as_is_unless_strict(monkeypatch):
    """Given an operation declaring not_found only
    When it answers not_found, Then it passes; When it answers self_binding, Then in production it passes as
    it is (logged), and under GONGJI_PROBLEM_CODES=strict it becomes an internal_error naming it; a problem
    answered outside any API operation (an unknown route) is never touched."""
    codes.declare("api.test_check", method="GET", has_body=False, restricted=False, codes=("not_found",))
    monkeypatch.delenv(codes.STRICT_ENV, raising=False)
    assert codes.answer_for("api.test_check", "not_found", "x") == ("not_found", "x")
    assert codes.answer_for("api.test_check", "self_binding", "x") == ("self_binding", "x")
    monkeypatch.setenv(codes.STRICT_ENV, "strict")
    swapped, detail = codes.answer_for("api.test_check", "self_binding", "x")
    assert swapped == "internal_error" and "self_binding" in detail
    assert codes.answer_for(None, "self_binding", "x") == ("self_binding", "x")


@pytest.mark.parametrize("raw, names", [
    (b'{"reason": "x"', True),  # a JSON object gone wrong
    (b"reason=x", True), (b"Reason=x", True), (b"a=1&reversal_reason=y", True),  # forms, any case, the alias
    ('{"reason": "x"'.encode("utf-16"), True),  # another of JSON's encodings
    (b'"no reason given"', False), (b'["reason"]', False), (b"refund: reason unknown", False),  # the word only
    (b'{"remark": "reasonable"', False), (b"refund", False)])
def test_a_reversal_body_that_is_no_json_object_is_refused_only_when_it_carries_the_reason_as_a_key(raw, names):
    """Given a reversal body that is not a JSON object (such bodies were ignored before `reason` existed)
    Then it is taken for a reason gone wrong (400, nothing reversed) only when it carries `reason` (or its
    alias) as a key; the word in a text is not one."""
    from web.api import names_a_field
    from web.api.settlements import ReversalIn
    assert names_a_field(ReversalIn, raw) is names
